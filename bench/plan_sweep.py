#!/usr/bin/env python
"""Planning cost: `snakemake -n` of a generated N-run sweep vs a bare Snakefile of the same shape.

The baseline of the goal (SHAPE below) is ledsweep's DAG written by hand: the same rules, jobs, output,
log and benchmark files, directives and workflow profile, with plain `expand`s and wildcard patterns
where ledsweep has sweep expansion, validation and input functions. The difference is what ledsweep
adds to planning; the goal is at most 1.15x, and time per run flat from 1,000 to 20,000 runs (linear).
MINIMAL is the older, smaller baseline (4 jobs per run, no log:/benchmark:/script:), shown to say what
Snakemake's own per-job bookkeeping for those directives costs. Each case runs in a fresh process on
the same machine, in the same invocation, the two sides interleaved; wall time, CPU time (user + system)
and peak RSS of the snakemake process, each the best of the repeats.

    python bench/plan_sweep.py --runs 1000 --repeat 5 --minimal
    python bench/plan_sweep.py --runs 5000 --repeat 3
    python bench/plan_sweep.py --runs 20000 --repeat 1
    python bench/plan_sweep.py --runs 1000 5000 --halving   # checkpoints: ledsweep alone, ms per run
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
FULL = {"runs": [1000, 5000, 20000], "repeat": 2}
DRY = {"runs": [10], "repeat": 1}  # --dry-run

# the old baseline (before prepare_data, link_checkpoint, track and the per-sweep plots existed): kept
# for comparison with the figures of 2026-11-27; it has neither log:, benchmark: nor script: jobs
MINIMAL = """
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

# The baseline of the goal: ledsweep's DAG written by hand. Same rules, jobs, output/log/benchmark files,
# directives (report(), localrule, threads, conda, script:/run:) and workflow profile (profiles/default's
# per-rule resources); what it lacks is what ledsweep adds: config validation, sweep expansion, input
# functions (patterns instead), params computed per run (one constant config instead).
SHAPE = """
import yaml
N = int(config["nruns"])
RUNS = [f"demo_lr{i // 10}_seed{i % 10}" for i in range(N)]
CONFIG = yaml.safe_load(open("base.yaml"))
R = dict(category="Runs", subcategory="{run}")
S = dict(category="Sweep {sweep}", subcategory="Plots")

wildcard_constraints:
    run=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    sweep=r"[A-Za-z0-9][A-Za-z0-9-]*",
    data_key=r"[0-9a-f]{16}",

rule all:
    input:
        expand("results/{run}/plots/loss.png", run=RUNS),
        "results/sweeps/demo/comparison.csv",
        "results/sweeps/demo/loss_vs_training.learning_rate.png",
        "results/sweeps/demo/loss_curves.png",
        "results/sweeps/demo/mlflow.json",

rule run_config:
    output: report("results/{run}/config.yaml", caption="report/run_config.rst", labels={"run": "{run}"}, **R)
    log: "results/{run}/logs/run_config.log"
    localrule: True
    params: config=CONFIG
    run: open(output[0], "w").write("x")

rule prepare_data:
    input: "data/demo/train.jsonl"
    output: directory("results/prepared/{data_key}")
    log: "results/prepared/logs/{data_key}.log"
    benchmark: "benchmarks/prepare_data/{data_key}.tsv"
    conda: "../environment.yaml"
    threads: 8
    params: spec=CONFIG
    script: "noop.py"

rule train:
    input: prepared="results/prepared/0123456789abcdef"
    output:
        checkpoint=directory("results/{run}/trained/checkpoint"),
        meta="results/{run}/trained/meta.json",
    log: "results/{run}/logs/train.log"
    benchmark: "benchmarks/train/{run}.tsv"
    conda: "../environment.yaml"
    threads: 2
    params: config=CONFIG
    script: "noop.py"

rule link_checkpoint:
    input: checkpoint="results/{run}/trained/checkpoint", meta="results/{run}/trained/meta.json"
    output: checkpoint=directory("results/{run}/checkpoint"), meta="results/{run}/meta.json"
    log: "results/{run}/logs/link_checkpoint.log"
    localrule: True
    params: config=CONFIG
    run: open(output[1], "w").write("x")

rule evaluate:
    input:
        config="results/{run}/config.yaml",
        prepared="results/prepared/0123456789abcdef",
        checkpoint="results/{run}/checkpoint",
        meta="results/{run}/meta.json",
    output:
        summary=report("results/{run}/summary.json", caption="report/summary.rst", labels={"run": "{run}"}, **R),
        predictions="results/{run}/predictions.jsonl",
    log: "results/{run}/logs/evaluate.log"
    benchmark: "benchmarks/evaluate/{run}.tsv"
    conda: "../environment.yaml"
    threads: 2
    script: "noop.py"

rule plot_loss:
    input: meta="results/{run}/meta.json"
    output: report("results/{run}/plots/loss.png", caption="report/loss.rst", labels={"run": "{run}"}, **R)
    log: "results/{run}/logs/plot_loss.log"
    localrule: True
    conda: "../environment.yaml"
    script: "noop.py"

rule aggregate:
    input: summaries=expand("results/{run}/summary.json", run=RUNS)
    output:
        comparison=report("results/sweeps/{sweep}/comparison.csv", caption="report/comparison_csv.rst", **S),
        by_config=report("results/sweeps/{sweep}/comparison_by_config.csv", caption="report/c.rst", **S),
    log: "results/sweeps/{sweep}/logs/aggregate.log"
    localrule: True
    conda: "../environment.yaml"
    script: "noop.py"

rule plot_metric:
    input:
        comparison="results/sweeps/{sweep}/comparison.csv",
        by_config="results/sweeps/{sweep}/comparison_by_config.csv",
    output: report("results/sweeps/{sweep}/{metric}_vs_{key}.png", caption="report/m.rst", **S)
    log: "results/sweeps/{sweep}/logs/plot_{metric}_vs_{key}.log"
    wildcard_constraints: metric="loss|rouge1", key=r"[A-Za-z0-9_][A-Za-z0-9_.]*"
    localrule: True
    conda: "../environment.yaml"
    params: results="results"
    script: "noop.py"

rule plot_loss_curves:
    input: comparison="results/sweeps/{sweep}/comparison.csv", meta=expand("results/{run}/meta.json", run=RUNS)
    output:
        curves=report("results/sweeps/{sweep}/loss_curves.png", caption="report/l.rst", **S),
        table=report("results/sweeps/{sweep}/comparison.html", caption="report/h.rst", **S),
    log: "results/sweeps/{sweep}/logs/plot_loss_curves.log"
    localrule: True
    conda: "../environment.yaml"
    script: "noop.py"

rule track:
    input: summaries=expand("results/{run}/summary.json", run=RUNS)
    output: mlflow="results/sweeps/{sweep}/mlflow.json", hparams=directory("results/sweeps/{sweep}/tensorboard")
    log: "results/sweeps/{sweep}/logs/track.log"
    localrule: True
    conda: "../environment.yaml"
    script: "noop.py"
"""


def run_child(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of a child, measured by a wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time; t=time.perf_counter();"
        "r=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True);"
        "w=time.perf_counter()-t; sys.stderr.write(r.stderr[-2000:] if r.returncode else '');"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(w, u.ru_utime+u.ru_stime, u.ru_maxrss/1024); sys.exit(r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    wall, cpu, rss = map(float, out.stdout.split())
    return wall, cpu, rss


def ledsweep_dir(tmp: Path, n: int, halving: bool = False) -> Path:
    wd = tmp / f"ledsweep_{n}{'_halving' if halving else ''}"
    (wd / "config").mkdir(parents=True)
    for name in ("workflow", "profiles", "data"):
        (wd / name).symlink_to(REPO / name)
    (wd / "config" / "base.yaml").write_text((REPO / "config" / "led_baseline.yaml").read_text())
    if halving:  # the case: n sampled points, rungs [4, 8, 12]
        (wd / "config" / "config.yaml").write_text(HALVING.format(n=n))
        return wd
    lrs = ", ".join(f"{(i + 1) * 1.0e-5:.6e}" for i in range(n // 10))  # YAML floats need the dot
    (wd / "config" / "config.yaml").write_text(
        f"sweeps:\n  demo:\n    base: config/base.yaml\n    grid:\n"
        f"      training.learning_rate: [{lrs}]\n      seed: [{', '.join(map(str, range(10)))}]\n"
    )
    return wd


HALVING = """sweeps:
  demo:
    base: config/base.yaml
    sample: {{n: {n}, seed: 0, space: {{training.learning_rate: {{loguniform: [1.0e-5, 1.0e-3]}}}}}}
    halving: {{rungs: [4, 8, 12], keep: 0.5, metric: loss}}
"""


def halving_rows(smk: list[str], runs: list[int], tmp: Path) -> None:
    """--halving: ledsweep alone (no bare Snakefile has checkpoints): time per run, for linearity."""
    print("| runs (halving [4, 8, 12]) | s | CPU s | ms/run | MiB |\n|---:|---:|---:|---:|---:|")
    for n in runs:
        wall, cpu, rss = run_child(smk, ledsweep_dir(tmp, n, halving=True))
        print(f"| {n:,} | {wall:.2f} | {cpu:.2f} | {1000 * wall / n:.2f} | {rss:.0f} |", flush=True)


def bare_dir(tmp: Path, n: int, kind: str) -> Path:
    """A baseline's work folder: `shape` (the goal's: ledsweep's DAG by hand) or `minimal` (the old one)."""
    wd = tmp / f"{kind}_{n}"
    (wd / "workflow").mkdir(parents=True)
    (wd / "workflow" / "Snakefile").write_text(SHAPE if kind == "shape" else MINIMAL)
    (wd / "workflow" / "noop.py").write_text("")
    (wd / "base.yaml").write_text((REPO / "config" / "led_baseline.yaml").read_text())
    for name in ("profiles", "data", "environment.yaml"):  # the same workflow profile, data file, conda env
        (wd / name).symlink_to(REPO / name)
    return wd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="+", help=f"runs per sweep (default {FULL['runs']})")
    ap.add_argument("--repeat", type=int, help=f"timings per case; the minimum is reported (default {FULL['repeat']})")
    ap.add_argument("--minimal", action="store_true", help="also time the MINIMAL baseline once")
    ap.add_argument("--halving", action="store_true", help="instead: sampled sweeps with halving (HALVING), once each")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (DRY in this file): a quick check that it works")
    args = ap.parse_args()
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)
    smk = [sys.executable, "-m", "snakemake", "-n", "--quiet", "all", "--cores", "1"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.halving:
        with tempfile.TemporaryDirectory() as tmp:
            return halving_rows(smk, args.runs, Path(tmp))
    print(
        "| runs | jobs | ledsweep s | same-shape bare s | time ratio | ledsweep CPU s | bare CPU s | CPU ratio "
        "| ledsweep ms/run | ledsweep MiB | bare MiB | memory ratio | minimal bare s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.runs:
            lw, sw = ledsweep_dir(tmp, n), bare_dir(tmp, n, "shape")
            bare = [*smk, "--config", f"nruns={n}"]
            led, shape = [], []
            for _ in range(args.repeat):  # interleaved: a slow spell of the machine hits both sides
                led.append(run_child(smk, lw))
                shape.append(run_child(bare, sw))
            (lw_, lc, lm), (sw_, sc, sm) = (tuple(map(min, zip(*side))) for side in (led, shape))
            minimal = f"{run_child(bare, bare_dir(tmp, n, 'minimal'))[0]:.2f}" if args.minimal else "-"
            jobs = 5 * n + 6  # per run: run_config, train, link_checkpoint, evaluate, plot_loss; 6 per sweep
            print(
                f"| {n:,} | {jobs:,} | {lw_:.2f} | {sw_:.2f} | {lw_ / sw_:.2f} | {lc:.2f} | {sc:.2f} | {lc / sc:.2f} "
                f"| {1000 * lw_ / n:.2f} | {lm:.0f} | {sm:.0f} | {lm / sm:.2f} | {minimal} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
