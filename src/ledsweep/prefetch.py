"""Download what a sweep names from the Hugging Face hub into the local cache, before any job runs.

Cluster compute nodes often have no internet: rule `prefetch` runs this where Snakemake runs,
then `train`/`evaluate` run with HF_HUB_OFFLINE=1. Local folders and packaged models need nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .config import SCRATCH
from .metric_sources import cached_metric_module, evaluate_modules_cache, import_evaluate, metric_source
from .schema import is_local_path

log = logging.getLogger("ledsweep")


def hub_names(configs: Iterable[dict]) -> dict[str, list]:
    """Hub models and datasets named by resolved run configs (sorted, de-duplicated)."""
    models, datasets, metrics = set(), set(), set()
    for cfg in configs:
        metrics.update(m for m in cfg["evaluation"].get("extra_metrics") or () if metric_source(m)[0] == "hub")
        name = cfg["model"]["name"]
        if name != SCRATCH and not is_local_path(name):
            models.add(name)
        bert = cfg["evaluation"]["bertscore_model"]
        if bert and not bert.startswith("package:") and not is_local_path(bert):
            models.add(bert)
        d = cfg["data"]
        if d["dataset_name"] and not all(d[f"{s}_file"] for s in ("train", "test")):
            datasets.add((d["dataset_name"], d["dataset_config_name"]))
    out = {"models": sorted(models), "datasets": [list(x) for x in sorted(datasets, key=str)]}
    if metrics:  # only then: prefetch.json params of sweeps without extra metrics stay as they were
        out["metrics"] = sorted(metrics)
    return out


def prefetch(hub: dict[str, list]) -> dict:
    """Fill the HF cache; return what was fetched (written to prefetch.json)."""
    fetched = {"models": [], "datasets": []}
    if hub["models"]:
        from huggingface_hub import snapshot_download

        for name in hub["models"]:
            path = snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt"])
            log.info("prefetched model %s -> %s", name, path)
            fetched["models"].append({"name": name, "path": path})
    for name, config_name in hub["datasets"]:
        import datasets

        datasets.load_dataset(name, config_name)
        log.info("prefetched dataset %s (%s)", name, config_name)
        fetched["datasets"].append({"name": name, "config": config_name})
    if hub.get("metrics"):
        evaluate = import_evaluate()
        for name in hub["metrics"]:
            evaluate.load(name)  # the module into HF_MODULES_CACHE, and what it downloads (e.g. nltk data)
            path = cached_metric_module(name)
            if path is None:
                raise RuntimeError(f"prefetched metric {name}, but it is not in {evaluate_modules_cache()}")
            log.info("prefetched metric %s -> %s", name, path)
            fetched.setdefault("metrics", []).append({"name": name, "path": str(path)})
    if not any(hub.values()):
        log.info("nothing to prefetch: the sweep names only local paths and packaged models")
    return fetched
