#!/usr/bin/env python
"""Aggregation cost: N synthetic run folders -> comparison.csv + comparison_by_config.csv.

    python bench/aggregate_bench.py --runs 10000 [--repeat 3] [--keep] [--template RUN_DIR]
    python bench/aggregate_bench.py --dry-run     # a check, not a figure: DRY's sizes, a synthetic template

Synthetic sweep `demo`: training.learning_rate x seed (10 seeds), run names as ledsweep makes them
(`demo_lr1e-05_seed0`), on config/led_baseline.yaml. Each run folder holds config.yaml, meta.json and
summary.json copied from the template run results/led_baseline_run_001 (or --template; its config.yaml
must be what the current code resolves config/led_baseline.yaml to, else every run reads as `modified`)
(same keys, same sizes), with run_name, seed, learning_rate, config_sha256, config_yaml_sha256 and
metrics varied, so every run is `completed`; data/ is a symlink to the repository's (the sweep's data
files must exist when it is expanded).

Timed, each in a fresh Python process (wall time including interpreter start and imports), best of
--repeat, in the same invocation:

* ledsweep: what the workflow's `aggregate` rule runs (workflow/scripts/aggregate.py): the workflow
  config YAML is loaded (Snakemake does that before the rule), the sweep is expanded with
  `load_sweeps`, then `collect` + `write_tables`. Its in-process time (everything after the
  imports) is reported too, as is `scripts/aggregate.py --write --format csv` (the CLI, which also
  prints the table).
* bare: the loop a user would write: for each run of the grid they launched (run names built from
  their own lists of learning rates and seeds), `json.load` summary.json (metrics, runtime) and
  meta.json (provenance columns), `csv.writer` the rows sorted by rougeL; then mean/std over seeds
  per learning rate (`statistics`) into a second CSV. Config columns come from the grid, as the
  issue's "bare json.load + csv.writer loop" implies. A second baseline, bare+yaml, reads the config
  columns from each run's config.yaml instead (yaml.load with yaml.CSafeLoader), for reference.

The page cache is not controlled: the folders were just written, so reads are warm (the common case
right after a sweep); a cold cache (or a network file system) is slower for every contender.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "results" / "led_baseline_run_001"
SEEDS = 10
FULL = {"runs": [10000], "repeat": 3}
DRY = {"runs": [10], "repeat": 1}  # --dry-run, with dry_template() in place of TEMPLATE

LEDSWEEP = """
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {src!r})
from pathlib import Path
from ledsweep.aggregate import collect, write_table_files
from ledsweep.config import load_yaml
from ledsweep.sweep import load_sweeps
t1 = time.perf_counter()
config = load_yaml("config/config.yaml")  # Snakemake loads the workflow config before the rule runs
sweep = load_sweeps(config, only=["demo"])["demo"]
t2 = time.perf_counter()
rows = collect("results", sweep)
out = Path("results/sweeps/demo")
paths = write_table_files(rows, sweep, out / "comparison.csv", out / "comparison_by_config.csv", sweep.primary_metric)
for row in rows:
    if row["status"] == "modified":
        print(f"WARNING: run {{row['run_name']}} is modified: {{row['reason']}}", file=sys.stderr)
t3 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "sweep": t2 - t1, "collect_write": t3 - t2, "in_process": t3 - t1}}))
"""

BARE = """
import csv, json, os, statistics, sys
LRS = {lrs!r}
SEEDS = {seeds!r}
METRICS = ("loss", "rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore", "bertscore_precision",
           "bertscore_recall", "exact_match")
PROV = ("device", "git_commit", "config_sha256", "slurm_job_ids", "resumes")
USE_YAML = {use_yaml!r}
if USE_YAML:
    import yaml
rows = []
for lr in LRS:
    for seed in SEEDS:
        run = f"results/demo_lr{{lr:.4g}}_seed{{seed}}"
        with open(f"{{run}}/summary.json") as f:
            s = json.load(f)
        with open(f"{{run}}/meta.json") as f:
            m = json.load(f)
        if USE_YAML:
            with open(f"{{run}}/config.yaml") as f:
                c = yaml.load(f, Loader=yaml.CSafeLoader)
            lr_, seed_ = c["training"]["learning_rate"], c["seed"]
        else:
            lr_, seed_ = lr, seed
        rows.append([os.path.basename(run), lr_, seed_, *(s["metrics"].get(k) for k in METRICS),
                     s.get("runtime_seconds"), *(m.get(k) for k in PROV)])
rows.sort(key=lambda r: -r[6])  # rougeL, best first
os.makedirs("bare", exist_ok=True)
with open("bare/comparison.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["run_name", "training.learning_rate", "seed", *METRICS, "runtime_seconds", *PROV])
    w.writerows(rows)
groups = {{}}
for r in rows:
    groups.setdefault(r[1], []).append(r)
with open("bare/comparison_by_config.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["training.learning_rate", "n", *(f"{{k}}_{{s}}" for k in METRICS for s in ("mean", "std"))])
    for lr, rs in groups.items():
        out = [lr, len(rs)]
        for i in range(3, 3 + len(METRICS)):
            v = [r[i] for r in rs if r[i] is not None]
            out += [statistics.fmean(v) if v else None, statistics.stdev(v) if len(v) > 1 else None]
        w.writerow(out)
"""


def grid(n: int) -> tuple[list[float], list[int]]:
    seeds = min(SEEDS, n)
    if n % seeds:
        raise SystemExit(f"--runs {n}: must be a multiple of {SEEDS}")
    return [float(f"{(i + 1) * 1.0e-5:.6e}") for i in range(n // seeds)], list(range(seeds))


def generate(wd: Path, n: int, template: Path = TEMPLATE) -> None:
    """A work folder: config/ (workflow config + base run config), data -> the repo's data, results/<run>/."""
    lrs, seeds = grid(n)
    (wd / "config").mkdir(parents=True)
    (wd / "data").symlink_to(REPO / "data")
    shutil.copy(REPO / "config" / "led_baseline.yaml", wd / "config" / "base.yaml")
    (wd / "config" / "config.yaml").write_text(
        "sweeps:\n  demo:\n    base: config/base.yaml\n    grid:\n"
        f"      training.learning_rate: [{', '.join(f'{lr:.6e}' for lr in lrs)}]\n"  # YAML floats need the dot
        f"      seed: [{', '.join(map(str, seeds))}]\n"
    )
    sys.path.insert(0, str(REPO / "src"))
    import yaml

    from ledsweep.config import config_sha256, load_yaml
    from ledsweep.sweep import load_sweeps

    cwd = os.getcwd()
    os.chdir(wd)
    try:
        sweep = load_sweeps(load_yaml("config/config.yaml"), only=["demo"])["demo"]
    finally:
        os.chdir(cwd)
    config_lines = (template / "config.yaml").read_text().splitlines(keepends=True)
    meta0 = json.loads((template / "meta.json").read_text())
    summary0 = json.loads((template / "summary.json").read_text())
    start = dt.datetime.fromisoformat(meta0["start_time"])
    rng = random.Random(0)
    for i, (name, run) in enumerate(sweep.runs.items()):
        lr, seed = run.overrides["training.learning_rate"], run.overrides["seed"]
        folder = wd / "results" / name
        folder.mkdir(parents=True)
        values = {"run_name": name, "seed": seed, "  learning_rate": lr}
        lines = list(config_lines)
        for j, line in enumerate(lines):
            key = line.split(":", 1)[0]
            if key in values:
                lines[j] = f"{key}: {yaml.safe_dump(values.pop(key)).splitlines()[0]}\n"
        assert not values, f"template config.yaml lacks {values}"
        text = "".join(lines)
        (folder / "config.yaml").write_text(text)
        t = start + dt.timedelta(minutes=3 * i)
        meta = {
            **meta0,
            "run_name": name,
            "start_time": t.isoformat(),
            "config_sha256": config_sha256(run.config),
            "config_yaml_sha256": hashlib.sha256(text.encode()).hexdigest(),  # as the writers record it
            "final_train_loss": round(rng.uniform(0.2, 0.6), 6),
            "train_runtime_seconds": round(rng.uniform(140, 160), 3),
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        metrics = {k: rng.uniform(0.5 * v, min(1.0, 1.5 * v)) for k, v in summary0["metrics"].items()}
        summary = {
            **summary0,
            "run_name": name,
            "metrics": metrics,
            "runtime_seconds": round(rng.uniform(140, 165), 3),
            "end_time": (t + dt.timedelta(seconds=155)).isoformat(),
        }
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def dry_template(folder: Path) -> Path:
    """--dry-run's stand-in for a finished run (nothing trained): config.yaml as ledsweep writes the resolved
    config/led_baseline.yaml, meta.json and summary.json with the keys this benchmark reads."""
    sys.path.insert(0, str(REPO / "src"))
    from ledsweep import metrics_registry
    from ledsweep.config import dump_yaml, load_config

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(dump_yaml(load_config(REPO / "config" / "led_baseline.yaml").to_dict()))
    meta = {"start_time": "2026-01-01T00:00:00+00:00", "device": "cpu", "git_commit": "0" * 40, "resumes": 0}
    (folder / "meta.json").write_text(json.dumps(meta))
    metrics = dict.fromkeys(metrics_registry.names(), 0.5)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "metrics": metrics}))
    return folder


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{out.stderr[-3000:]}")
    return wall, out.stdout


def check(wd: Path, n: int) -> None:
    """Every run completed (consistent synthetic data), both tables written, bare table as long."""
    with open(wd / "results" / "sweeps" / "demo" / "comparison.csv", newline="") as f:
        statuses = [r["status"] for r in csv.DictReader(f)]
    with open(wd / "bare" / "comparison.csv", newline="") as f:
        bare_rows = sum(1 for _ in f) - 1
    if statuses.count("completed") != n or bare_rows != n:
        raise SystemExit(
            f"expected {n} completed runs, got {len(statuses)} rows "
            f"({ {s: statuses.count(s) for s in set(statuses)} }), bare {bare_rows}"
        )
    if not (wd / "results" / "sweeps" / "demo" / "comparison_by_config.csv").is_file():
        raise SystemExit("comparison_by_config.csv not written")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--runs", type=int, nargs="+", help=f"run folders per sweep (multiple of 10; default {FULL['runs']})"
    )
    p.add_argument("--repeat", type=int, help=f"best of this many timings (default: {FULL['repeat']})")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny sizes (DRY in this file) and a synthetic template: a quick check that the script works",
    )
    p.add_argument("--keep", action="store_true", help="keep the work folders (their paths are printed)")
    p.add_argument(
        "--template",
        type=Path,
        help="finished run folder whose config.yaml/meta.json/summary.json are copied (default: "
        f"{TEMPLATE.relative_to(REPO)}; with --dry-run a synthetic one)",
    )
    args = p.parse_args()
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)
    py = sys.executable
    table = []
    for n in args.runs:
        wd = Path(tempfile.mkdtemp(prefix=f"ledsweep_agg_{n}_"))
        try:
            t = time.perf_counter()
            template = args.template or (dry_template(wd / "template") if args.dry_run else TEMPLATE)
            generate(wd, n, template)
            print(f"{n} run folders in {wd} ({time.perf_counter() - t:.1f} s)", file=sys.stderr)
            lrs, seeds = grid(n)
            led_cmd = [py, "-c", LEDSWEEP.format(src=str(REPO / "src"))]
            cli_cmd = [
                py,
                str(REPO / "scripts" / "aggregate.py"),
                "--sweep",
                "demo",
                "--write",
                "results/sweeps/cli",
                "--format",
                "csv",
            ]
            bare_cmd = [py, "-c", BARE.format(lrs=lrs, seeds=seeds, use_yaml=False)]
            yaml_cmd = [py, "-c", BARE.format(lrs=lrs, seeds=seeds, use_yaml=True)]
            best: dict[str, float] = {}
            inproc: dict[str, float] = {}
            for _ in range(args.repeat):  # interleaved, so drift in machine load hits all alike
                for key, cmd in (("ledsweep", led_cmd), ("cli", cli_cmd), ("bare", bare_cmd), ("bare_yaml", yaml_cmd)):
                    wall, out = timed(cmd, wd)
                    best[key] = min(best.get(key, wall), wall)
                    if key == "ledsweep":
                        for k, v in json.loads(out.splitlines()[-1]).items():
                            inproc[k] = min(inproc.get(k, v), v)
            check(wd, n)
            print(
                f"{n} runs: ledsweep {best['ledsweep']:.3f} s (in-process {inproc['in_process']:.3f} s: "
                f"sweep {inproc['sweep']:.3f}, collect+write {inproc['collect_write']:.3f}; imports "
                f"{inproc['imports']:.3f}), CLI {best['cli']:.3f} s, bare {best['bare']:.3f} s, "
                f"bare+yaml {best['bare_yaml']:.3f} s",
                file=sys.stderr,
            )
            table.append(
                f"| {dt.date.today()} | {n} | {best['ledsweep']:.2f} | {inproc['in_process']:.2f} | "
                f"{best['cli']:.2f} | {best['bare']:.2f} | {best['ledsweep'] / best['bare']:.2f} | "
                f"{best['bare_yaml']:.2f} |"
            )
        finally:
            if args.keep:
                print(f"kept {wd}", file=sys.stderr)
            else:
                shutil.rmtree(wd, ignore_errors=True)
    print("| date | runs | ledsweep s | in-process s | CLI s | bare s | ratio | bare+yaml s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
