"""Download what a sweep names from the Hugging Face hub into the local cache, before any job runs.

Cluster compute nodes often have no internet: rule `prefetch` runs this where Snakemake runs,
then `train`/`evaluate` run with HF_HUB_OFFLINE=1. Local folders and packaged models need nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .config import SCRATCH, is_local_path

log = logging.getLogger("ledsweep")


def hub_names(configs: Iterable[dict]) -> dict[str, list]:
    """Hub models and datasets named by resolved run configs (sorted, de-duplicated)."""
    models, datasets = set(), set()
    for cfg in configs:
        name = cfg["model"]["name"]
        if name != SCRATCH and not is_local_path(name):
            models.add(name)
        bert = cfg["evaluation"]["bertscore_model"]
        if bert and not bert.startswith("package:") and not is_local_path(bert):
            models.add(bert)
        d = cfg["data"]
        if d["dataset_name"] and not all(d[f"{s}_file"] for s in ("train", "test")):
            datasets.add((d["dataset_name"], d["dataset_config_name"]))
    return {"models": sorted(models), "datasets": [list(x) for x in sorted(datasets, key=str)]}


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
    if not (hub["models"] or hub["datasets"]):
        log.info("nothing to prefetch: the sweep names only local paths and packaged models")
    return fetched
