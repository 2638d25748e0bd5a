"""Download what a sweep names from the Hugging Face hub into the local cache, before any job runs.

Cluster compute nodes often have no internet: rule `prefetch` runs this where Snakemake runs,
then `train`/`evaluate` run with HF_HUB_OFFLINE=1. Local folders and packaged models need nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .config import SCRATCH
from .schema import is_local_path

log = logging.getLogger("ledsweep")
_TRUE = {"1", "ON", "YES", "TRUE"}


def import_evaluate():
    """`evaluate`, offline when the hub is (jobs set HF_HUB_OFFLINE=1): cached modules load without any
    network attempt (evaluate reads only its own HF_EVALUATE_OFFLINE)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    if offline:
        os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    import evaluate

    if offline:
        evaluate.config.HF_EVALUATE_OFFLINE = True
    return evaluate


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


# ----------------------------------------------------------------------------- evaluate metric modules
# A cheap filesystem check (no `import evaluate`: 5-10 s), run by `snakemake -n` for every sweep with
# extra metrics. It follows evaluate 0.4.6's evaluate.loading.evaluation_module_factory: a local script
# or folder first; else a name with at most one '/' is a hub module, which offline loads from
# <HF_MODULES_CACHE>/evaluate_modules/metrics/<evaluate-{metric,comparison,measurement}--name or
# org--name>/<64-character hash>/<name>.py (CachedEvaluationModuleFactory).
_HUB_TYPES = ("metric", "comparison", "measurement")


def evaluate_modules_cache() -> Path:
    """Where evaluate keeps hub metric modules (evaluate.config.HF_MODULES_CACHE / 'evaluate_modules' /
    'metrics', from the same environment variables)."""
    home = os.getenv("HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "huggingface"))
    modules = os.getenv("HF_MODULES_CACHE", os.path.join(os.path.expanduser(home), "modules"))
    return Path(modules).expanduser() / "evaluate_modules" / "metrics"


def metric_source(spec: str) -> tuple[str, str | None]:
    """How evaluate.load(spec) finds an `evaluation.extra_metrics` entry: ('local', script path),
    ('hub', cached script path or None when not cached) or ('missing', the path looked for)."""
    path = os.path.expanduser(spec)
    parts = [p for p in path.split("/") if p]
    filename = (parts[-1] if parts else path).removesuffix(".py") + ".py"
    if path.endswith(".py"):
        return ("local", path) if os.path.isfile(path) else ("missing", path)
    if os.path.isfile(os.path.join(path, filename)):
        return "local", os.path.join(path, filename)
    if not os.path.isabs(path) and not spec.startswith(("~", ".")) and path.count("/") <= 1:
        cached = cached_metric_module(spec)
        return "hub", str(cached) if cached else None
    return "missing", os.path.join(path, filename)


def cached_metric_module(name: str) -> Path | None:
    """The newest cached script of hub metric `name` ('meteor' or 'org/metric'), or None."""
    root = evaluate_modules_cache()
    script = name.split("/")[-1] + ".py"
    folders = [f"evaluate-{t}--{name}" for t in _HUB_TYPES] if "/" not in name else [name.replace("/", "--")]
    for folder in folders:
        try:
            hashes = [h for h in os.listdir(root / folder) if len(h) == 64]
        except OSError:
            continue
        found = [root / folder / h / script for h in hashes if (root / folder / h / script).is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    return None


def missing_metrics(configs: Iterable[dict]) -> dict[str, str]:
    """Extra metrics of resolved run configs that an offline job could not load: entry -> why."""
    out = {}
    for cfg in configs:
        for spec in cfg["evaluation"].get("extra_metrics") or ():
            if spec in out:
                continue
            kind, where = metric_source(spec)
            if kind == "missing":
                out[spec] = f"no metric module at {where} (expected a .py file or a folder <name>/<name>.py)"
            elif kind == "hub" and where is None:
                out[spec] = not_cached(spec)
    return out


def not_cached(spec: str) -> str:
    """Why a hub metric cannot load offline (a name with a '/' may also have been meant as a local folder)."""
    local = spec.rstrip("/").split("/")[-1]
    also = f"; nor is there a local module {spec.rstrip('/')}/{local}.py" if "/" in spec else ""
    return f"not in the evaluate module cache ({evaluate_modules_cache()}){also}"
