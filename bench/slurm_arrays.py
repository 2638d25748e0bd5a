#!/usr/bin/env python
"""Slurm job arrays against one job per run: job ids and time to submit a sweep (needs a Slurm cluster).

An N-run sweep (tests/configs/tiny_run.yaml, grid seed 1..N, steps cut to a few, ROUGE only) runs
through `profiles/slurm` + `profiles/slurm-ci` twice, in fresh folders:
  arrays      as shipped: train, train_rung and evaluate go as job arrays (slurm-array-jobs)
  per-job     the same with --slurm-array-jobs none: one sbatch per job, as before issue 26
Reported from Slurm's accounting of the run's jobs (sacct --name <the plugin's SLURM run ID>): the
Slurm job ids (an array is one id), the sbatch calls, the seconds from the start of `snakemake`
to the last submission and to its exit. Jobs ask for 1 CPU (--set-threads, --set-resources) so
that the test cluster's 2-CPU node runs two at a time; the submission pattern does not depend on it.

    bash tests/slurm/start-cluster.sh
    python bench/slurm_arrays.py --runs 6 50
    python bench/slurm_arrays.py --dry-run   # a check, not a figure: 2 runs, arrays (needs the cluster too)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = {"runs": [6, 50], "modes": ["arrays", "per-job"]}
DRY = {"runs": [2], "modes": ["arrays"]}  # --dry-run
STEPS = {  # a run of seconds: the figures are about submission, not training
    "training.max_steps": 2,
    "training.logging_steps": 1,
    "training.eval_steps": 2,
    "training.save_steps": 2,
    "data.max_train_samples": 16,
    "data.max_predict_samples": 4,
    "evaluation.bertscore_model": None,
}
ONE_CPU = [  # the CLI's --set-resources replaces a rule's whole set: all of the workflow profile's keys
    "--set-threads", "train=1", "evaluate=1", "prepare_data=2",  # replaces the profiles' set-threads
    "--set-resources", *(f"{rule}:{k}={v}" for rule in ("train", "evaluate")
                         for k, v in (("gpu", 1), ("cpus_per_gpu", 1), ("mem_mb", 2000), ("runtime", 30))),
]  # fmt: skip
MODES = {"arrays": [], "per-job": ["--slurm-array-jobs", "none"]}


def workdir(tmp: Path, n: int, mode: str) -> Path:
    import yaml

    wd = tmp / f"{mode}_{n}"
    (wd / "config").mkdir(parents=True)
    for name in ("workflow", "profiles", "data", "scripts", "src"):
        (wd / name).symlink_to(REPO / name)
    (wd / "config" / "tiny_run.yaml").write_text((REPO / "tests/configs/tiny_run.yaml").read_text())
    sweep = {"base": "config/tiny_run.yaml", "set": STEPS, "grid": {"seed": list(range(1, n + 1))}}
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump({"sweeps": {"arr": sweep}}))
    return wd


def sacct_jobs(name: str) -> list[tuple[str, dt.datetime]]:
    """(job id, submit time) of every job (array task) named `name`."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--name", name, "-S", "now-1days", "--format", "JobID,Submit"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [(job, dt.datetime.fromisoformat(submit)) for job, submit in rows]


def one_case(tmp: Path, n: int, mode: str) -> dict:
    wd = workdir(tmp, n, mode)
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--profile", "profiles/slurm-ci"]
    start = dt.datetime.now().replace(microsecond=0)
    t0 = time.perf_counter()
    proc = subprocess.run([*cmd, *ONE_CPU, *MODES[mode]], cwd=wd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{mode}, {n} runs: snakemake failed:\n{proc.stderr[-4000:]}")
    uuid = re.search(r"SLURM run ID: (\S+)", proc.stderr + proc.stdout).group(1)
    for _ in range(30):  # accounting lags the jobs by a few seconds
        jobs = sacct_jobs(uuid)
        if len(jobs) >= 2 * n + 1:
            break
        time.sleep(2)
    ids = {job.split("_")[0] for job, _ in jobs}
    last = max(submit for _, submit in jobs)
    return {"jobs": len(jobs), "ids": len(ids), "submitted": (last - start).total_seconds(), "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="+", help=f"runs per sweep (default {FULL['runs']})")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), help=f"default {FULL['modes']}")
    ap.add_argument("--dry-run", action="store_true", help="DRY in this file: a check that the script works")
    args = ap.parse_args()
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)
    print(f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    print("| runs | submission | Slurm jobs (tasks) | Slurm job ids | start to last submission s | sweep s |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.runs:
            for mode in args.modes:
                r = one_case(Path(tmp), n, mode)
                print(
                    f"| {n} | {mode} | {r['jobs']} | {r['ids']} | {r['submitted']:.0f} | {r['wall']:.0f} |", flush=True
                )


if __name__ == "__main__":
    main()
