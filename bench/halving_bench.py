"""Successive halving against the full grid of the same sampled points, on the demo task.

    python bench/halving_bench.py --n 8 --rungs 100 400 --keep 0.5 --metric loss
    python bench/halving_bench.py --dry-run    # a check, not a figure: DRY (2 points of tiny_run.yaml, rungs 2 4)

Runs two sweeps of the same `sample:` points through the real workflow (profiles/local) in a scratch
folder: `grid` (every point trained to the full budget) and `halving` (rungs, keep). Prints, and writes to
bench/out/halving.json (or --out): optimizer steps trained by each, wall time, the best configuration each picks
(by the halving metric on the test split), and whether the halving sweep's survivors have bitwise the same
weights as the grid's runs of the same point. A dry run works in a temporary folder and writes its JSON there
unless --out is given.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FULL = {"n": 8, "rungs": [100, 400], "base": "config/led_baseline.yaml", "set": {}, "snakemake": []}
DRY = {  # --dry-run: 2 points of the tests' tiny run, 4 test examples, two 1-thread jobs at a time
    "n": 2,
    "rungs": [2, 4],
    "base": "tests/configs/tiny_run.yaml",
    "snakemake": ["--set-threads", "train_rung=1", "train=1", "evaluate=1", "prepare_data=1"],
    "set": {
        "num_threads": 1,
        "data.max_eval_samples": 4,
        "data.max_predict_samples": 4,
        "generation.max_new_tokens": 4,
        "evaluation.bertscore_model": None,
    },
}


def sweep_config(args, halving: bool, size: dict) -> dict:
    spec = {
        "base": f"config/{Path(size['base']).name}",
        "set": {
            "training.eval_steps": 10_000,
            "training.save_steps": 100,
            "training.max_steps": args.rungs[-1],
            **size["set"],
        },
        "sample": {
            "method": "sobol",
            "n": args.n,
            "seed": args.seed,
            "space": {
                "training.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]},
                "training.warmup_steps": {"int": [0, 100]},
            },
        },
        "primary_metric": args.metric,
    }
    if halving:
        del spec["set"]["training.max_steps"]
        spec["halving"] = {"rungs": args.rungs, "keep": args.keep, "metric": args.metric}
    return spec


def run(work: Path, name: str, options: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            f"results/sweeps/{name}/comparison.csv",
            "--profile",
            "profiles/local",
            *options,
            "--config",
            f"run_sweeps=[{name}]",
        ],
        cwd=work,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def table(work: Path, name: str) -> list[dict]:
    with open(work / "results" / "sweeps" / name / "comparison.csv", newline="") as f:
        return list(csv.DictReader(f))


def steps(work: Path, runs: list[str]) -> int:
    return sum(json.loads((work / "results" / r / "meta.json").read_text())["global_step"] for r in runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, help=f"sampled points (default {FULL['n']})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rungs", type=int, nargs="+", help=f"rung steps, the last the full budget (default {FULL['rungs']})"
    )
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--metric", default="loss")
    p.add_argument("--workdir", help="scratch folder (default /tmp/ledsweep-halving-bench; dry run: a temporary one)")
    p.add_argument("--out", help="JSON results file (default bench/out/halving.json; dry run: in the scratch folder)")
    p.add_argument(
        "--dry-run", action="store_true", help="DRY in this file: 2 tiny runs per sweep: a check that the script works"
    )
    args = p.parse_args()
    size = DRY if args.dry_run else FULL
    for key in ("n", "rungs"):  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, size[key])
    dry_tmp = args.dry_run and not args.workdir
    scratch = tempfile.TemporaryDirectory(prefix="ledsweep-halving-dry-") if dry_tmp else None  # removed at exit
    work = Path(args.workdir or (scratch.name if scratch else "/tmp/ledsweep-halving-bench"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "profiles", "data"):
        if not (work / name).exists():
            (work / name).symlink_to(REPO / name)
    (work / "config").mkdir(exist_ok=True)
    (work / "config" / Path(size["base"]).name).write_text((REPO / size["base"]).read_text())
    sweeps = {"grid": sweep_config(args, False, size), "halving": sweep_config(args, True, size)}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump({"sweeps": sweeps}, sort_keys=False))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    out = {"args": vars(args)}
    for name in sweeps:
        seconds = run(work, name, size["snakemake"])
        rows = table(work, name)
        higher = args.metric != "loss"
        done = [r for r in rows if r["status"] == "completed"]
        best = sorted(done, key=lambda r: (-float(r[args.metric]) if higher else float(r[args.metric]), r["run_name"]))
        out[name] = {
            "seconds": round(seconds, 1),
            "steps": steps(work, [r["run_name"] for r in rows]),
            "completed": len(done),
            "stopped": sum(r["status"] == "stopped" for r in rows),
            "best": best[0]["run_name"].split("_", 1)[1],
            "best_" + args.metric: float(best[0][args.metric]),
        }
    same = []
    for r in table(work, "halving"):
        if r["status"] == "completed":
            point = r["run_name"].split("_", 1)[1]
            a = json.loads((work / "results" / f"halving_{point}" / "meta.json").read_text())["weights_sha256"]
            b = json.loads((work / "results" / f"grid_{point}" / "meta.json").read_text())["weights_sha256"]
            same.append(a == b)
    out["survivors_bitwise_equal_to_grid"] = f"{sum(same)}/{len(same)}"
    out["same_best"] = out["grid"]["best"] == out["halving"]["best"]
    out["steps_ratio"] = round(out["halving"]["steps"] / out["grid"]["steps"], 3)
    print(json.dumps(out, indent=2))
    dest = Path(args.out) if args.out else work / "halving.json" if args.dry_run else REPO / "bench/out/halving.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
