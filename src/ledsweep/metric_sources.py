"""Where an `evaluation.extra_metrics` module lives (a local script or folder, or a hub module in evaluate's
cache) and how to import evaluate offline: what rule prefetch fills and what a job loads from.

A cheap filesystem check (no `import evaluate`: 5-10 s), run by `snakemake -n` for every sweep with extra
metrics. It follows evaluate 0.4.6's evaluate.loading.evaluation_module_factory: a local script or folder
first; else a name with at most one '/' is a hub module, which offline loads from
<HF_MODULES_CACHE>/evaluate_modules/metrics/<evaluate-{metric,comparison,measurement}--name or
org--name>/<64-character hash>/<name>.py (CachedEvaluationModuleFactory).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TRUE = {"1", "ON", "YES", "TRUE"}  # how HF reads a boolean environment variable

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


def prefetch_hint(sweep: str = "<sweep>") -> str:
    return f"snakemake --profile <profile> -f results/sweeps/{sweep}/prefetch.json"
