#!/usr/bin/env python
"""Planning cost: `snakemake -n` of a generated N-run sweep vs a bare Snakefile baseline.

The baseline is what a user would otherwise write: a Snakefile with the same jobs per run and
the same DAG shape (config -> train -> evaluate, train -> loss plot; one aggregate over all
summaries, one loss-curve plot over all runs), built with a plain `expand`, no validation.
Both are timed in fresh processes on the same machine, in the same invocation; wall time and
peak RSS (of the snakemake process) are reported, as ratios ledsweep / baseline.

    python bench/plan_sweep.py --runs 1000 10000 [--repeat 3]
    python bench/plan_sweep.py --dry-run       # a check, not a figure: DRY's tiny sizes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = {"runs": [1000, 10000], "repeat": 3}
DRY = {"runs": [10], "repeat": 1}  # --dry-run

BARE = """
N = int(config["nruns"])
RUNS = [f"demo_lr{i // 10}_seed{i % 10}" for i in range(N)]

rule all:
    input:
        "results/sweeps/demo/comparison.csv",
        "results/sweeps/demo/loss_curves.png",
        expand("results/{run}/plots/loss.png", run=RUNS),

rule aggregate:
    input: expand("results/{run}/summary.json", run=RUNS)
    output: "results/sweeps/demo/comparison.csv"
    shell: "touch {output}"

rule loss_curves:
    input: "results/sweeps/demo/comparison.csv", expand("results/{run}/meta.json", run=RUNS)
    output: "results/sweeps/demo/loss_curves.png"
    shell: "touch {output}"

rule run_config:
    output: "results/{run}/config.yaml"
    shell: "touch {output}"

rule train:
    input: "results/{run}/config.yaml"
    output: "results/{run}/meta.json"
    shell: "touch {output}"

rule evaluate:
    input: "results/{run}/config.yaml", "results/{run}/meta.json"
    output: "results/{run}/summary.json"
    shell: "touch {output}"

rule plot_loss:
    input: "results/{run}/meta.json"
    output: "results/{run}/plots/loss.png"
    shell: "touch {output}"
"""


def run_child(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) measured by a wrapper process (getrusage of its child)."""
    wrapper = (
        "import resource, subprocess, sys, time; t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True);"
        "w=time.perf_counter()-t; sys.stderr.write(r.stderr[-2000:] if r.returncode else '');"
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024); sys.exit(r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    wall, rss = map(float, out.stdout.split())
    return wall, rss


def ledsweep_dir(tmp: Path, n: int) -> Path:
    wd = tmp / f"ledsweep_{n}"
    (wd / "config").mkdir(parents=True)
    for name in ("workflow", "profiles", "data"):
        (wd / name).symlink_to(REPO / name)
    (wd / "config" / "base.yaml").write_text((REPO / "config" / "led_baseline.yaml").read_text())
    lrs = ", ".join(f"{(i + 1) * 1.0e-5:.6e}" for i in range(n // 10))  # YAML floats need the dot
    (wd / "config" / "config.yaml").write_text(
        f"sweeps:\n  demo:\n    base: config/base.yaml\n    grid:\n"
        f"      training.learning_rate: [{lrs}]\n      seed: [{', '.join(map(str, range(10)))}]\n"
    )
    return wd


def bare_dir(tmp: Path, n: int) -> Path:
    wd = tmp / f"bare_{n}"
    wd.mkdir()
    (wd / "Snakefile").write_text(BARE)
    return wd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="+", help=f"runs per sweep (default {FULL['runs']})")
    ap.add_argument("--repeat", type=int, help=f"timings per case; the minimum is reported (default {FULL['repeat']})")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (DRY in this file): a quick check that it works")
    args = ap.parse_args()
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)
    smk = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "1"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| runs | ledsweep s | bare s | time ratio | ledsweep MiB | bare MiB | memory ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.runs:
            lw, bw = ledsweep_dir(tmp, n), bare_dir(tmp, n)
            led = min(run_child(smk, lw) for _ in range(args.repeat))
            bare = min(run_child([*smk, "--config", f"nruns={n}"], bw) for _ in range(args.repeat))
            print(
                f"| {n} | {led[0]:.2f} | {bare[0]:.2f} | {led[0] / bare[0]:.2f} | {led[1]:.0f} | {bare[1]:.0f} "
                f"| {led[1] / bare[1]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
