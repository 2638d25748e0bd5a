#!/usr/bin/env python
"""Per-run overhead: one tiny run through Snakemake (local and Slurm profiles) vs train_baseline.py.

The same run (tests/configs/tiny_run.yaml, 12 steps, BERTScore on) is timed, in fresh folders, as
  direct      python scripts/train_baseline.py --config <run>.yaml --output-dir <tmp>
  local       snakemake --profile profiles/local results/<run>/summary.json
  slurm-ci    snakemake --profile profiles/slurm --profile profiles/slurm-ci results/<run>/summary.json
  slurm-ci-grouped  the same with --groups train=run evaluate=run: train and evaluate in one Slurm
              job (prepare_data stays its own job, as with the profile's commented `groups:` line)
  slurm       snakemake --profile profiles/slurm results/<run>/summary.json   (--with-default-polling)
Each Snakemake case runs the run's four jobs (run_config, prepare_data, train, evaluate); `direct`
prepares the same data inside its one process (into <output dir>/prepared). The difference to
`direct` is what the workflow adds: parsing, the extra Python start per job, and for Slurm:
sbatch, the job re-parsing the workflow on the node, srun, and status polling. prepare_data runs
once per data setting, not per run: in a sweep whose runs share their data, its job start is paid
once, so this one-run figure is an upper bound per run. The Slurm cases need the cluster of
tests/slurm/start-cluster.sh. Wall times, best of --repeat.

    python bench/run_overhead.py [--repeat 2] [--with-default-polling] [--no-slurm]
    python bench/run_overhead.py --dry-run      # a check, not a figure: DRY (one round, no Slurm, 2 steps)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RUN = "one_seed1"
SWEEP = "sweeps:\n  one:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1]\n"
CASES = {
    "local": ["--profile", "profiles/local"],
    "slurm-ci": ["--profile", "profiles/slurm", "--profile", "profiles/slurm-ci"],
    "slurm-ci-grouped": [
        "--profile",
        "profiles/slurm",
        "--profile",
        "profiles/slurm-ci",
        "--groups",
        "train=run",
        "evaluate=run",
    ],
    "slurm": ["--profile", "profiles/slurm"],
}
FULL = {"repeat": 2, "run": {}}
DRY = {  # --dry-run: one round, no Slurm, tiny_run.yaml with these keys changed (a run of seconds)
    "repeat": 1,
    "run": {
        "num_threads": 1,
        "data": {"max_train_samples": 16, "max_eval_samples": 4, "max_predict_samples": 4},
        "training": {"max_steps": 2, "logging_steps": 1, "eval_steps": 2, "save_steps": 2},
        "generation": {"max_new_tokens": 4},
    },
}


def workdir(root: Path, run: dict) -> Path:
    """A fresh folder that looks like a checkout (as the tests make them); `run`: changes to tiny_run.yaml."""
    wd = Path(tempfile.mkdtemp(dir=root))
    for name in ("workflow", "profiles", "data", "scripts", "src"):
        (wd / name).symlink_to(REPO / name)
    (wd / "config").mkdir()
    shutil.copy(REPO / "tests/configs/tiny_run.yaml", wd / "config/tiny_run.yaml")
    if run:
        cfg = yaml.safe_load((wd / "config/tiny_run.yaml").read_text())
        for key, value in run.items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
        (wd / "config/tiny_run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (wd / "config/config.yaml").write_text(SWEEP)
    return wd


def timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-4000:]}")
    return wall


def direct(root: Path, run: dict) -> float:
    wd = workdir(root, run)
    cfg = (wd / "config/tiny_run.yaml").read_text().replace("run_name: tiny_run", f"run_name: {RUN}")
    (wd / "run.yaml").write_text(cfg)
    return timed([sys.executable, "scripts/train_baseline.py", "--config", "run.yaml", "--threads", "2"], wd)


def snakemake(root: Path, case: str, run: dict) -> float:
    wd = workdir(root, run)
    return timed([sys.executable, "-m", "snakemake", f"results/{RUN}/summary.json", *CASES[case]], wd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--repeat", type=int, help=f"timings per case, interleaved; the minimum is reported (default {FULL['repeat']})"
    )
    ap.add_argument("--no-slurm", action="store_true", help="skip the Slurm cases")
    ap.add_argument(
        "--with-default-polling",
        action="store_true",
        help="also time profiles/slurm alone (the plugin's 40 s status polling)",
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="DRY in this file: a 2-step run, once, no Slurm: a check that it works"
    )
    args = ap.parse_args()
    size = DRY if args.dry_run else FULL
    repeat = args.repeat or size["repeat"]
    slurm = not (args.no_slurm or args.dry_run)
    cases = ["direct", "local"] + (["slurm-ci", "slurm-ci-grouped"] if slurm else [])
    cases += ["slurm"] if args.with_default_polling and slurm else []
    times: dict[str, list[float]] = {c: [] for c in cases}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            for case in cases:
                wall = direct(Path(tmp), size["run"]) if case == "direct" else snakemake(Path(tmp), case, size["run"])
                times[case].append(wall)
                print(f"  round {i + 1}: {case:16s} {wall:6.1f} s", flush=True)
    base = min(times["direct"])
    print("\n| case | wall s (best) | all rounds | overhead vs direct s |")
    print("|---|---:|---|---:|")
    for case in cases:
        best = min(times[case])
        print(f"| {case} | {best:.1f} | {', '.join(f'{t:.1f}' for t in times[case])} | {best - base:+.1f} |")


if __name__ == "__main__":
    main()
