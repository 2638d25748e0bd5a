"""Successive halving against the full grid of the same sampled points, on the demo task.

    python bench/halving_bench.py --n 8 --rungs 100 400 --keep 0.5 --metric loss

Runs two sweeps of the same `sample:` points through the real workflow (profiles/local) in a scratch
folder: `grid` (every point trained to the full budget) and `halving` (rungs, keep). Prints, and writes to
bench/out/halving.json: optimizer steps trained by each, wall time, the best configuration each picks (by
the halving metric on the test split), and whether the halving sweep's survivors have bitwise the same
weights as the grid's runs of the same point.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def sweep_config(args, halving: bool) -> dict:
    spec = {
        "base": "config/led_baseline.yaml",
        "set": {"training.eval_steps": 10_000, "training.save_steps": 100, "training.max_steps": args.rungs[-1]},
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


def run(work: Path, name: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            f"results/sweeps/{name}/comparison.csv",
            "--profile",
            "profiles/local",
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
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rungs", type=int, nargs="+", default=[100, 400])
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--metric", default="loss")
    p.add_argument("--workdir", default="/tmp/ledsweep-halving-bench")
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "profiles", "data"):
        if not (work / name).exists():
            (work / name).symlink_to(REPO / name)
    (work / "config").mkdir(exist_ok=True)
    (work / "config" / "led_baseline.yaml").write_text((REPO / "config" / "led_baseline.yaml").read_text())
    sweeps = {"grid": sweep_config(args, False), "halving": sweep_config(args, True)}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump({"sweeps": sweeps}, sort_keys=False))
    os.environ.setdefault("PYTHONHASHSEED", "0")
    out = {"args": vars(args)}
    for name in sweeps:
        seconds = run(work, name)
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
    dest = REPO / "bench" / "out" / "halving.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
