"""Collect a sweep's run folders into comparison tables; works while the sweep is still running.

    rows = collect("results", sweep)            # one row per run of the sweep, whatever its state
    groups = by_config(rows, sweep)             # mean / std / 95% CI over seeds
    write_tables("results", sweep, "results/sweeps/demo")   # comparison.csv, comparison_by_config.csv

A run is `completed` (valid summary.json), `stale` (completed, but a data file it was trained or
evaluated on has changed since: its sha256 differs from meta.json; kept out of by-config stats), `corrupt` (a file that should parse does not), `failed`
(failure.json), `running` (meta.json), `pending` (folder only) or `missing` (no folder). Each file is
read once, with no exists()-then-open() gap: a file that vanishes mid-read is simply the state we see.
No torch, no pandas: the Snakefile may import this module; 10,000 folders take about 0.5 s (warm cache).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .runfolder import atomic_write_text
from .sweep import Sweep

STATUSES = ("completed", "stale", "corrupt", "failed", "running", "pending", "missing")
REQUIRED_METRICS = ("loss", "rouge1", "rouge2", "rougeL", "rougeLsum")
METRICS = (*REQUIRED_METRICS, "bertscore", "bertscore_precision", "bertscore_recall", "exact_match")
LOWER_IS_BETTER = ("loss",)
PROVENANCE = ("runtime_seconds", "device", "git_commit", "config_sha256", "slurm_job_ids", "resumes")
# Student t 0.975 quantiles for 1..30 degrees of freedom (equal to scipy.stats.t.ppf(0.975, dof))
T975 = (12.706204736174694, 4.302652729749462, 3.1824463052837078, 2.7764451051977934, 2.5705818356363146,
        2.4469118511449786, 2.364624251592784, 2.306004135204166, 2.262157162798205, 2.228138851986274,
        2.200985160091639, 2.1788128296672284, 2.1603686564627913, 2.144786687917804, 2.131449545559776,
        2.1199052992212546, 2.1098155778333156, 2.1009220402410382, 2.0930240544083087, 2.085963447265864,
        2.0796138447276795, 2.0738730679040254, 2.0686576104190486, 2.0638985616280245, 2.0595385527532972,
        2.0555294386428735, 2.0518305164802846, 2.0484071417952454, 2.045229642132703, 2.0422724563012378)

_MISSING = object()  # a file that is not there (as opposed to one that does not parse)


class _Bad(Exception):
    """A file that exists but cannot be used; the message says which and why."""


def _read(path: str) -> bytes:
    """The whole file; os.open + os.read cost half of open().read() on small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load(path: str) -> Any:
    """One read + json.loads; `_MISSING` when absent, `_Bad` when empty, truncated or not an object."""
    try:
        raw = _read(path)
    except (FileNotFoundError, NotADirectoryError):
        return _MISSING
    except OSError as e:
        raise _Bad(f"{os.path.basename(path)}: cannot read ({e.strerror})") from None
    try:
        data = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        why = "empty file" if not raw.strip() else f"not valid JSON (truncated?): {e}"
        raise _Bad(f"{os.path.basename(path)}: {why}") from None
    if not isinstance(data, dict):
        raise _Bad(f"{os.path.basename(path)}: expected a JSON object, got {type(data).__name__}")
    return data


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_summary(summary: dict) -> None:
    m = summary.get("metrics")
    if not isinstance(m, dict):
        raise _Bad("summary.json: no 'metrics' object")
    for k in METRICS:
        v = m.get(k)
        if k in REQUIRED_METRICS and v is None:
            raise _Bad(f"summary.json: metrics.{k} is missing")
        if v is not None and not _is_number(v):
            raise _Bad(f"summary.json: metrics.{k} is not a number: {v!r}")


def _inspect(run_dir: str) -> tuple[str, str | None, dict | None, dict | None]:
    """(status, reason, summary, meta) from at most one read of each file; summary only if valid."""
    try:
        summary = _load(os.path.join(run_dir, "summary.json"))
        if summary is not _MISSING:
            _check_summary(summary)
            meta = _load(os.path.join(run_dir, "meta.json"))
            if meta is _MISSING:
                return "completed", "meta.json missing (no provenance)", summary, None
            return "completed", None, summary, meta
        failure = _load(os.path.join(run_dir, "failure.json"))
        meta = _load(os.path.join(run_dir, "meta.json"))
        meta = None if meta is _MISSING else meta
        if failure is not _MISSING:
            reason = str(failure.get("reason") or "no reason recorded")
            reason = f"{failure['stage']}: {reason}" if failure.get("stage") else reason
            if meta is not None and _newer(run_dir, "meta.json", "failure.json"):
                return "running", f"retrying after: {reason}", None, meta  # a new attempt rewrote meta.json
            return "failed", reason, None, meta
        if meta is not None:
            return "running", None, None, meta
    except _Bad as e:
        return "corrupt", str(e), None, None  # no metrics: only completed runs are compared
    if os.path.isdir(run_dir):
        return "pending", None, None, None
    return "missing", None, None, None


def _newer(run_dir: str, a: str, b: str) -> bool:
    try:
        return os.stat(os.path.join(run_dir, a)).st_mtime_ns > os.stat(os.path.join(run_dir, b)).st_mtime_ns
    except OSError:
        return False


def _inspect_all(dirs: list[str], probe: int = 256, slow_s: float = 150e-6) -> list[tuple]:
    """_inspect over many folders: serially while files come from the page cache (fastest), on 8 threads
    once the first `probe` folders show slow I/O (cold cache, NFS/Lustre), where waits overlap."""
    t0 = time.perf_counter()
    out = [_inspect(d) for d in dirs[:probe]]
    if len(dirs) > probe and (time.perf_counter() - t0) / probe > slow_s:
        with ThreadPoolExecutor(8) as pool:
            return out + list(pool.map(_inspect, dirs[probe:], chunksize=32))
    return out + [_inspect(d) for d in dirs[probe:]]


def run_status(run_dir: str | Path) -> tuple[str, str | None]:
    """(status, reason) of one run folder; status is one of STATUSES, reason None or a short text."""
    status, reason, _, _ = _inspect(os.fspath(run_dir))
    return status, reason


def columns(sweep: Sweep) -> list[str]:
    """Header of comparison.csv: fixed, whatever the statuses."""
    return ["run_name", "status", "reason", *sweep.keys, *METRICS, *PROVENANCE]


def collect(results_dir: str | Path, sweep: Sweep) -> list[dict]:
    """One row per run of `sweep` (in sweep order, none dropped), read from `<results_dir>/<run_name>/`."""
    results_dir = os.fspath(results_dir)
    states = _inspect_all([os.path.join(results_dir, name) for name in sweep.runs])
    rows, hashes, unchanged = [], {}, None  # unchanged: the last data_sha256 found current (runs share it)
    for (name, run), (status, reason, summary, meta) in zip(sweep.runs.items(), states):
        summary, meta = summary or {}, meta or {}
        row = {"run_name": name, "status": status, "reason": reason}
        row.update(zip(sweep.keys, map(run.overrides.get, sweep.keys)))
        row.update(zip(METRICS, map((summary.get("metrics") or {}).get, METRICS)))
        jobs = meta.get("slurm_job_ids")
        row.update(runtime_seconds=summary.get("runtime_seconds"), device=meta.get("device"),
                   git_commit=meta.get("git_commit"), config_sha256=meta.get("config_sha256"),
                   slurm_job_ids=";".join(map(str, jobs)) if isinstance(jobs, list) else jobs,
                   resumes=meta.get("resumes"))
        rows.append(row)
        recorded = meta.get("data_sha256") or {}
        if status == "completed" and recorded != unchanged:
            changed = _changed_data(recorded, hashes)
            if changed:
                row.update(status="stale", reason="data changed since the run: " + ", ".join(changed))
            else:
                unchanged = recorded
    return rows


def _changed_data(recorded: dict[str, str], cache: dict[str, str | None]) -> list[str]:
    """Data files whose sha256 now differs from the recorded one (each file hashed once per table)."""
    from .runfolder import sha256_file

    changed = []
    for path, sha in recorded.items():
        if path not in cache:
            try:
                cache[path] = sha256_file(path)
            except OSError:
                cache[path] = None
        if cache[path] != sha:
            changed.append(path if cache[path] else f"{path} (missing)")
    return changed


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
    """Rows for json.dumps: NaN (not JSON) becomes null."""
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]


def _t975(dof: int) -> float:
    if dof <= len(T975):
        return T975[dof - 1]
    try:
        from scipy.stats import t  # imported only here: it costs ~0.7 s
    except ImportError:
        return 1.96
    return float(t.ppf(0.975, dof))


def mean_std_ci95(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean, sample std (ddof=1) and 95% CI half-width (Student t); std/ci are None when n < 2."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None, None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, _t975(n - 1) * std / math.sqrt(n)


def group_keys(sweep: Sweep) -> list[str]:
    """Swept keys that define a configuration: every key but `seed`."""
    return [k for k in sweep.keys if k != "seed"]


def by_config(rows: list[dict], sweep: Sweep) -> list[dict]:
    """One row per configuration (seeds pooled), in sweep order: n (completed runs), n_expected,
    and <m>_mean / <m>_std / <m>_ci95 for every metric (None where fewer than 1 / 2 values)."""
    keys, by_name = group_keys(sweep), {r["run_name"]: r for r in rows}
    groups: dict[tuple, list] = {}
    for name, run in sweep.runs.items():
        groups.setdefault(tuple(repr(run.overrides[k]) for k in keys), []).append(run)
    out = []
    for runs in groups.values():
        done = [by_name[r.name] for r in runs if by_name.get(r.name, {}).get("status") == "completed"]
        row = {k: runs[0].overrides[k] for k in keys}
        row.update(n=len(done), n_expected=len(runs))
        for m in METRICS:
            mean, std, ci = mean_std_ci95([r[m] for r in done if r.get(m) is not None])
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_ci95": ci})
        out.append(row)
    return out


def by_config_columns(sweep: Sweep) -> list[str]:
    """Header of comparison_by_config.csv."""
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "ci95")]
    return [*group_keys(sweep), "n", "n_expected", *stats]


def sort_rows(rows: list[dict], metric: str, key: str | None = None) -> list[dict]:
    """Best first by `metric` (column `key`, default the metric itself): ascending for loss, else
    descending; rows not completed or without a value (or NaN) go last; ties by run_name."""
    if metric not in METRICS:
        raise ValueError(f"unknown sort metric {metric!r}; expected one of {list(METRICS)}")
    col, sign = key or metric, 1 if metric in LOWER_IS_BETTER else -1

    def order(r: dict) -> tuple:
        v = r.get(col)
        ok = _is_number(v) and not math.isnan(v) and r.get("status", "completed") == "completed"
        return (not ok, sign * v if ok else 0.0, r.get("run_name", ""))

    return sorted(rows, key=order)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, float) else str(v)


def to_csv(rows: list[dict], header: list[str]) -> str:
    """CSV text (csv module); floats at full precision (repr), None as an empty cell: as the csv module
    writes them (`_cell`), but for booleans (true/false)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([_cell(v) if v is True or v is False else v for v in map(r.get, header)] for r in rows)
    return buf.getvalue()


def write_tables(results_dir: str | Path, sweep: Sweep, out_dir: str | Path, sort: str | None = None,
                 rows: list[dict] | None = None) -> tuple[Path, Path]:
    """Write `comparison.csv` and `comparison_by_config.csv` into `out_dir` atomically, best first by
    `sort` (default the sweep's primary metric); return their paths. `rows`: already collected rows."""
    rows = collect(results_dir, sweep) if rows is None else rows
    return _write(rows, sweep, Path(out_dir), sort or sweep.primary_metric)


def _write(rows: list[dict], sweep: Sweep, out_dir: Path, metric: str) -> tuple[Path, Path]:
    groups = sort_rows(by_config(rows, sweep), metric, key=f"{metric}_mean")
    runs_csv, groups_csv = out_dir / "comparison.csv", out_dir / "comparison_by_config.csv"
    atomic_write_text(runs_csv, to_csv(sort_rows(rows, metric), columns(sweep)))
    atomic_write_text(groups_csv, to_csv(groups, by_config_columns(sweep)))
    return runs_csv, groups_csv


# ---------------------------------------------------------------------------------------------------------------
# command line: scripts/aggregate.py

SHOWN = ("loss", "rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore", "runtime_seconds")


def _short(col: str, v: Any, width: int = 80) -> str:
    if isinstance(v, float) and (col in SHOWN or col.endswith(("_mean", "_std", "_ci95"))):
        return f"{v:.4f}"  # metrics; swept values keep full precision (1e-05 must not print as 0.0000)
    text = _cell(v).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def render(rows: list[dict], header: list[str], markdown: bool = False) -> str:
    """A readable text (or Markdown) table of `header` columns; floats to 4 decimals."""
    cells = [[_short(c, r.get(c)) for c in header] for r in rows]
    if markdown:
        lines = [header, ["---"] * len(header), *cells]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines)
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    fmt = lambda line: "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """--sweep/--config/--results/--sort/--format: shared by scripts/aggregate.py and scripts/compare.py."""
    p.add_argument("--sweep", required=True, help="sweep name (a key of `sweeps:` in the workflow config)")
    p.add_argument("--config", default="config/config.yaml", help="workflow config YAML (default: %(default)s)")
    p.add_argument("--results", default="results", help="folder holding the run folders (default: %(default)s)")
    p.add_argument("--sort", choices=METRICS, help="metric to rank by (default: the sweep's primary_metric)")
    p.add_argument("--format", choices=("table", "csv", "markdown", "json"), default="table")


def load_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep named by --sweep in --config (raises ConfigError naming the file or sweep)."""
    from .config import ConfigError, load_yaml
    from .sweep import load_sweeps

    config = load_yaml(args.config)
    if not isinstance(config, dict):
        raise ConfigError(f"{args.config}: expected a mapping with a 'sweeps' section")
    return load_sweeps(config, only=[args.sweep], results_dir=args.results)[args.sweep]


def main(argv: list[str] | None = None) -> int:
    """`aggregate.py --sweep NAME ...`: print (and optionally write) the sweep's comparison tables."""
    from .config import ConfigError

    p = argparse.ArgumentParser(prog="aggregate.py", description="Compare the runs of a sweep (works mid-sweep).")
    add_sweep_arguments(p)
    p.add_argument("--write", nargs="?", const="", metavar="DIR",
                   help="also write comparison.csv + comparison_by_config.csv to DIR "
                        "(default DIR: <results>/sweeps/<sweep>/)")
    args = p.parse_args(argv)
    try:
        sweep = load_sweep(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    metric = args.sort or sweep.primary_metric
    rows = sort_rows(collect(args.results, sweep), metric)
    counts = status_counts(rows)
    if args.write is not None:
        out_dir = args.write or os.path.join(args.results, "sweeps", sweep.name)
        try:
            paths = _write(rows, sweep, Path(out_dir), metric)
        except OSError as e:
            print(f"error: --write {out_dir}: {e.strerror or e}", file=sys.stderr)
            return 2
        print("wrote " + " and ".join(map(str, paths)), file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(to_csv(rows, columns(sweep)))
        print(counts_line(rows, counts), file=sys.stderr)
    elif args.format == "json":
        print(json.dumps({"sweep": sweep.name, "sort": metric, "counts": counts, "runs": json_rows(rows)}, indent=2))
    else:
        md = args.format == "markdown"
        print(f"sweep {sweep.name}: {len(rows)} runs, sorted by {metric}\n")
        print(render(rows, ["run_name", "status", *sweep.keys, *SHOWN, "reason"], md))
        if "seed" in sweep.keys:
            groups = sort_rows(by_config(rows, sweep), metric, key=f"{metric}_mean")
            stats = [f"{metric}_mean", f"{metric}_std", f"{metric}_ci95"]
            print("\nby config (seeds pooled; ci95 = Student t half-width):\n")
            print(render(groups, [*group_keys(sweep), "n", "n_expected", *stats], md))
        print(f"\n{counts_line(rows, counts)}")
    return 0
