"""Collect a sweep's run folders into comparison tables; works while the sweep is still running.

    rows = collect("results", sweep)            # one row per run of the sweep, whatever its state
    groups = by_config(rows, sweep)             # mean / std / 95% CI over seeds
    write_tables("results", sweep, "results/sweeps/demo")   # comparison.csv, comparison_by_config.csv

Each row has the run's status (ledsweep.status: completed, stopped, modified, failed, ...). Only
`completed` runs count in by-config statistics and for "best"; halving sweeps add `rung` and `steps`
columns (where a `stopped` run got to). The config columns of a run with a summary come from its own
config.yaml (what it recorded), not from the sweep as it is defined now. Data files are not hashed here:
they are inputs of the workflow's prepare_data rule, so a changed file re-prepares, retrains and
re-evaluates the runs that use it.

Metric names, directions and formats come from ledsweep.metrics_registry. No torch, no pandas, no scipy
until a confidence interval is computed: the Snakefile imports this module. The command line of
scripts/aggregate.py and scripts/compare.py is ledsweep.compare.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from . import metrics_registry as registry
from .config import config_sha256, get_dotted
from .runfolder import atomic_write_text
from .schema import is_number
from .status import (
    FINISHED,
    STATUSES,
    State,
    check_config,
    inspect_runs,
    mark_prepare_failures,
    parse_config,
)
from .sweep import Run, Sweep, load_sweeps

# a run's cost: Slurm's accounting of its jobs (summary.json "slurm", sacct when it was evaluated) and the
# peak memory of its processes (summary.json peak_rss_mb, or sacct's MaxRSS where larger)
COST = ("slurm_seconds", "cpu_hours", "gpu_hours", "peak_rss_mb")
PROVENANCE = ("runtime_seconds", *COST, "device", "git_commit", "config_sha256", "slurm_job_ids", "resumes")
STAT_SUFFIXES = ("mean", "std", "ci95")


def _extra_metrics(sweep: Sweep) -> list[str]:
    """Extra metrics the sweep's runs ask for (`evaluation.extra_metrics`, in first-seen order)."""
    out: dict[str, None] = {}
    for run in sweep.runs.values():
        specs = (run.config.get("evaluation") or {}).get("extra_metrics") or ()
        out.update(dict.fromkeys(map(registry.extra_metric_name, specs)))  # a module path -> its name
    return list(out)


def metric_names(sweep: Sweep) -> tuple[str, ...]:
    """The metrics of the sweep's tables: the registry's built-in metrics, then the sweep's extra ones."""
    return registry.names(_extra_metrics(sweep))


def halving_columns(sweep: Sweep) -> list[str]:
    """`rung` (1-based: the last is the full budget) and `steps` reached, in a sweep with successive halving."""
    return ["rung", "steps"] if sweep.halving else []


def columns(sweep: Sweep) -> list[str]:
    """Header of comparison.csv: fixed, whatever the statuses."""
    return ["run_name", "status", "reason", *sweep.keys, *metric_names(sweep), *halving_columns(sweep), *PROVENANCE]


def own_config(run: Run, state: State, keys: list[str]) -> tuple[dict, str | None]:
    """A finished run's config columns (swept key -> value in its own config.yaml, None where absent) and why
    it is `modified`, or None. No YAML parse when config.yaml is byte for byte what was written for the
    config meta.json records and that config is the sweep's for this run: the sweep's values are the file's."""
    meta = state.meta or {}
    if "config_sha256" in meta:
        modified, data = check_config(state.config, meta["config_sha256"], meta)
        if modified is None and data is None:  # the bytes as written: parse only if the sweep changed since
            if config_sha256(run.config) == meta["config_sha256"]:
                return {k: get_dotted(run.config, k, None) for k in keys}, None
            data = parse_config(state.config)[0]
    else:  # no record to check against (meta.json missing, or older than config_sha256): values only
        modified, data = None, parse_config(state.config)[0]
    return {k: get_dotted(data, k, None) for k in keys}, modified


def results_folder(run_files: list[str]) -> Path:
    """The folder holding the run folders of `run_files` (`<results>/<run>/<file>`: the workflow's declared
    inputs, e.g. every run's summary.json); ValueError unless they share one."""
    folders = {Path(p).parent.parent for p in run_files}
    if len(folders) != 1:
        raise ValueError(f"expected files of run folders in one results folder, got {sorted(map(str, folders))[:3]}")
    return folders.pop()


def collect(results_dir: str | Path, sweep: Sweep) -> list[dict]:
    """One row per run of `sweep` (in sweep order, none dropped), read from `<results_dir>/<run_name>/`.
    Config columns: from the run's own config.yaml where its summary exists, else the sweep's values."""
    results_dir, names = os.fspath(results_dir), metric_names(sweep)
    states = inspect_runs([os.path.join(results_dir, name) for name in sweep.runs], names)
    rows = []
    for (name, run), state in zip(sweep.runs.items(), states):
        summary, meta = state.summary or {}, state.meta or {}
        row = {"run_name": name, "status": state.status, "reason": state.reason}
        if state.status in FINISHED:
            values, modified = own_config(run, state, sweep.keys)
            row.update(values)
            if modified:
                row.update(status="modified", reason=modified)
            elif meta and "config_sha256" not in meta:
                row["reason"] = "meta.json has no config_sha256: config.yaml not checked"
        else:
            row.update(zip(sweep.keys, map(run.overrides.get, sweep.keys)))
        row.update(zip(names, map((summary.get("metrics") or {}).get, names)))
        if sweep.halving:
            reached = summary.get("halving") or meta.get("halving") or {}
            row.update(rung=reached.get("rung"), steps=reached.get("step"))
        jobs = meta.get("slurm_job_ids")
        slurm = summary.get("slurm") or {}
        row.update(
            runtime_seconds=summary.get("runtime_seconds"),
            slurm_seconds=slurm.get("elapsed_seconds"),
            cpu_hours=slurm.get("cpu_hours"),
            gpu_hours=slurm.get("gpu_hours"),
            peak_rss_mb=max(summary.get("peak_rss_mb") or 0, slurm.get("max_rss_mb") or 0) or None,
            device=meta.get("device"),
            git_commit=meta.get("git_commit"),
            config_sha256=meta.get("config_sha256"),
            slurm_job_ids=";".join(map(str, jobs)) if isinstance(jobs, list) else jobs,
            resumes=meta.get("resumes"),
        )
        rows.append(row)
    mark_prepare_failures(results_dir, sweep, rows)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# tables


def status_counts(rows: list[dict]) -> dict[str, int]:
    """Runs per status, in STATUSES order (zeros included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        counts[r["status"]] += 1
    return counts


def counts_line(rows: list[dict], counts: dict[str, int]) -> str:
    """'4 runs: 3 completed, 1 failed' (statuses with no runs left out)."""
    return f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def json_rows(rows: list[dict]) -> list[dict]:
    """Rows for json.dumps(..., allow_nan=False): NaN and infinity (not JSON) become null."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]


def dumps_json(data: Any) -> str:
    """Strict JSON (no NaN or Infinity, which strict parsers reject) for --format json."""
    return json.dumps(data, indent=2, allow_nan=False)


@functools.cache
def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` degrees of freedom: scipy.stats.t.ppf(0.975, dof).
    scipy.special.stdtrit is the function that t.ppf evaluates; it is imported here, once a confidence
    interval is needed, because scipy.stats costs about 1 s to import and scipy.special half of that."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975))


def mean_std_ci95(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean, sample std (ddof=1) and 95% CI half-width (Student t); std/ci are None when n < 2."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None, None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, t975(n - 1) * std / math.sqrt(n)


def group_keys(sweep: Sweep) -> list[str]:
    """Swept keys that define a configuration: every key but `seed`."""
    return [k for k in sweep.keys if k != "seed"]


def by_config(rows: list[dict], sweep: Sweep) -> list[dict]:
    """One row per configuration (seeds pooled): the sweep's configurations in sweep order, then any other
    that completed runs recorded (n_expected 0); n (completed runs, grouped by the values their own
    config.yaml holds), n_expected, and <m>_mean / <m>_std / <m>_ci95 for every metric (None where fewer
    than 1 / 2 values). Runs that are not `completed` (modified, failed, ...) are not counted."""
    keys, names = group_keys(sweep), metric_names(sweep)
    groups: dict[tuple, dict] = {}
    for run in sweep.runs.values():
        g = groups.setdefault(
            tuple(repr(run.overrides[k]) for k in keys),
            {"values": {k: run.overrides[k] for k in keys}, "n_expected": 0, "done": []},
        )
        g["n_expected"] += 1
    for r in rows:
        if r.get("status") == "completed":
            g = groups.setdefault(
                tuple(repr(r.get(k)) for k in keys),
                {"values": {k: r.get(k) for k in keys}, "n_expected": 0, "done": []},
            )
            g["done"].append(r)
    out = []
    for g in groups.values():
        row = dict(g["values"], n=len(g["done"]), n_expected=g["n_expected"])
        for m in names:
            mean, std, ci = mean_std_ci95([r[m] for r in g["done"] if r.get(m) is not None])
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_ci95": ci})
        out.append(row)
    return out


def by_config_columns(sweep: Sweep) -> list[str]:
    """Header of comparison_by_config.csv."""
    stats = [f"{m}_{s}" for m in metric_names(sweep) for s in STAT_SUFFIXES]
    return [*group_keys(sweep), "n", "n_expected", *stats]


def sort_rows(rows: list[dict], metric: str, key: str | None = None) -> list[dict]:
    """Best first by `metric` (column `key`, default the metric itself): ascending where lower is better
    (loss), else descending; rows not completed or without a finite value go last; ties by run_name."""
    registry.check_name(metric)
    col, sign = key or metric, -1 if registry.get(metric).higher_is_better else 1

    def order(r: dict) -> tuple:
        v = r.get(col)
        ok = is_number(v) and math.isfinite(v) and r.get("status", "completed") == "completed"
        return (not ok, sign * v if ok else 0.0, r.get("run_name", ""))

    return sorted(rows, key=order)


def best_run(ranked: list[dict]) -> str | None:
    """The best run's name in rows ranked by sort_rows: the first, if it is a clean result (completed)."""
    return ranked[0]["run_name"] if ranked and ranked[0].get("status") == "completed" else None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (dict, list)):  # a mapping key (model.factory_args) or a list: as the config writes it
        return json.dumps(v, sort_keys=True)
    return repr(v) if isinstance(v, float) else str(v)


def to_csv(rows: list[dict], header: list[str]) -> str:
    """CSV text (csv module); floats at full precision (repr), None as an empty cell: as the csv module
    writes them (`_cell`), but for booleans (true/false)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([_cell(v) if v is True or v is False else v for v in map(r.get, header)] for r in rows)
    return buf.getvalue()


def write_tables(
    results_dir: str | Path, sweep: Sweep, out_dir: str | Path, sort: str | None = None, rows: list[dict] | None = None
) -> tuple[Path, Path]:
    """Write `comparison.csv` and `comparison_by_config.csv` into `out_dir` atomically, best first by
    `sort` (default the sweep's primary metric); return their paths. `rows`: already collected rows."""
    rows = collect(results_dir, sweep) if rows is None else rows
    out_dir = Path(out_dir)
    return write_table_files(
        rows, sweep, out_dir / "comparison.csv", out_dir / "comparison_by_config.csv", sort or sweep.primary_metric
    )


def write_table_files(
    rows: list[dict], sweep: Sweep, runs_csv: str | Path, groups_csv: str | Path, metric: str
) -> tuple[Path, Path]:
    """The per-run table and the by-config table of collected `rows`, best first by `metric`, at the paths
    given (the workflow's aggregate rule names them), atomically."""
    groups = sort_rows(by_config(rows, sweep), metric, key=f"{metric}_mean")
    atomic_write_text(runs_csv, to_csv(sort_rows(rows, metric), columns(sweep)))
    atomic_write_text(groups_csv, to_csv(groups, by_config_columns(sweep)))
    return Path(runs_csv), Path(groups_csv)


# ---------------------------------------------------------------------------------------------------------------
# readable tables: terminal and Markdown (ledsweep.compare), comparison.html (ledsweep.plots)

NUMBER_FORMATS = {"runtime_seconds": ".4f"}  # number columns of the readable tables that are not metrics


def display_columns(sweep: Sweep) -> list[str]:
    """Columns of the readable tables (aggregate.py, compare.py, comparison.html): the CSV has them all."""
    shown = [m for m in metric_names(sweep) if registry.get(m).shown]
    return ["run_name", "status", *sweep.keys, *shown, *halving_columns(sweep), *NUMBER_FORMATS, "reason"]


def format_cell(col: str, v: Any, metrics: tuple[str, ...] = (), width: int = 80) -> str:
    """One cell of a readable table: a number in a metric column (or its _mean/_std/_ci95) in the metric's
    display format (metrics_registry; `metrics`: the sweep's extra metric names, shown with the defaults),
    runtime_seconds likewise; anything else, swept values included, at full precision (1e-05 must not print
    as 0.0000), cut to `width` characters."""
    if is_number(v):
        base = col.rsplit("_", 1)[0] if col.endswith(tuple(f"_{s}" for s in STAT_SUFFIXES)) else col
        for name in (col, base):
            if name in metrics or registry.is_known(name):
                return registry.get(name).format(v)
        if col in NUMBER_FORMATS:
            return format(v, NUMBER_FORMATS[col])
    text = _cell(v).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def render(rows: list[dict], header: list[str], markdown: bool = False, metrics: tuple[str, ...] = ()) -> str:
    """A readable text (or Markdown) table of `header` columns; numbers as `format_cell` writes them."""
    cells = [[format_cell(c, r.get(c), metrics) for c in header] for r in rows]
    if markdown:
        lines = [header, ["---"] * len(header), *cells]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines)
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    fmt = lambda line: "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def aggregate_job(config: dict, sweep_name: str, summaries: list[str], comparison: str, by_config: str) -> None:
    """rule aggregate: a sweep's two tables from its runs' folders (the parent of the summaries' run folders).
    A modified run is named loudly, on the terminal and in the rule's log (stderr): its metrics are not a clean
    result (kept out of by-config statistics and "best")."""
    sweep = load_sweeps(config, only=[sweep_name])[sweep_name]
    rows = collect(results_folder(summaries), sweep)
    paths = write_table_files(rows, sweep, comparison, by_config, sweep.primary_metric)
    for row in rows:
        if row["status"] == "modified":
            _say(f"WARNING: run {row['run_name']} is modified: {row['reason']}")
    _say(f"sweep {sweep.name}: comparison table -> {paths[0]}")
    if total := cost_total(rows):
        _say(total)


def cost_total(rows: list[dict]) -> str | None:
    """The sweep's Slurm cost, summed over the runs that recorded it (None when none did)."""
    costed = [r for r in rows if r.get("slurm_seconds") is not None]
    if not costed:
        return None
    add = lambda key: sum(r.get(key) or 0 for r in costed)  # noqa: E731
    return (
        f"Slurm cost of {len(costed)} run(s): {add('slurm_seconds') / 3600:.2f} job-hours, "
        f"{add('gpu_hours'):.2f} GPU-hours, {add('cpu_hours'):.2f} CPU-hours, "
        f"peak memory {max(r.get('peak_rss_mb') or 0 for r in costed):.0f} MB"
    )


def _say(message: str) -> None:
    print(message)
    print(message, file=sys.stderr)
