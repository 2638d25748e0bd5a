"""bench/ does not rot: every benchmark script's --dry-run (the same code path at tiny sizes, on the CPU) runs in
a fresh process from a scratch folder, exits 0, prints its figures or writes its file, and leaves bench/ alone."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import PY, REPO

pytestmark = pytest.mark.slow

NUMBER = r"[\d.,]+"


def _aggregate(proc, out: Path) -> None:
    assert re.search(rf"^\| [\d-]+ \| 10 \| {NUMBER} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout
    assert "10 runs: ledsweep" in proc.stderr


def _cpu_led_shape(proc, out: Path) -> None:
    result = json.loads((out / "cpu.json").read_text())
    assert result["dry_run"] and result["prepare"]["vocab"] == 1000  # the tokenizer reached the asked size
    train = [c for c in result["cases"] if c["kind"] == "train" and not c["probe"]]
    assert [c["status"] for c in train] == ["ok"] * 2  # (off, fp32) and (on, bf16): each path once
    for c in train:
        assert len(c["step_seconds"]) == 2 and c["tokens_per_s"] > 0 and c["peak_rss"] >= c["model_rss"] > 0
        assert set(c["estimate"]) == {"runtime", "weights", "activations", "transient"}
    [probe] = [c for c in result["cases"] if c.get("probe")]
    assert probe["status"] == "out of memory" and probe["peak_rss"] > 0  # recorded, the next case still ran
    [gen] = [c for c in result["cases"] if c["kind"] == "generate"]
    assert gen["status"] == "ok" and gen["new_tokens"] == 16  # min_new_tokens: the full length, never cut short
    assert re.search(rf"^\| train \| 256 \| on \| bf16 \| {NUMBER} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout


def _eval(proc, out: Path) -> None:
    for side in ("ledsweep", "baseline"):
        assert re.search(rf"^{side} +4 examples: generation_and_loss {NUMBER} s", proc.stdout, re.M), proc.stdout
    assert "ratio baseline/ledsweep: generation_and_loss" in proc.stdout


def _gpu_led(proc, out: Path) -> None:
    result = json.loads((out / "gpu.json").read_text())
    assert result["dry_run"] and result["device"] == "cpu"
    assert result["smoke"]["ok"], result["smoke"]
    assert [c["status"] for c in result["cases"]] == ["ok"] * 8  # fp32/bf16 x checkpointing x 2 lengths
    assert f"wrote {out / 'gpu.json'}" in proc.stdout


def _halving(proc, out: Path) -> None:
    result = json.loads((out / "halving.json").read_text())
    assert (result["grid"]["completed"], result["grid"]["steps"]) == (2, 8)  # 2 points x 4 steps
    assert (result["halving"]["completed"], result["halving"]["stopped"], result["halving"]["steps"]) == (1, 1, 6)
    assert result["survivors_bitwise_equal_to_grid"] == "1/1"


def _plan(proc, out: Path) -> None:
    assert re.search(rf"^\| 10 \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout


def _prepare(proc, out: Path) -> None:
    assert re.search(rf"^\| 3 MB \| {NUMBER} \| {NUMBER} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout
    (result,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bare"]["rows"] == result["ledsweep"]["rows"] > 100
    assert result["second"]["reused"]  # the second run read the prepared data
    assert (out / "prepare" / "led_local" / "config.json").is_file()  # under --out, not bench/out


def _rouge(proc, out: Path) -> None:
    assert re.search(rf"^speedup {NUMBER}x \(best rounds\); per-pair scores identical: yes", proc.stdout, re.M)


def _run_overhead(proc, out: Path) -> None:
    for case in ("direct", "local"):
        assert re.search(rf"^\| {case} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout


def _train_throughput(proc, out: Path) -> None:
    result = json.loads((out / "throughput.json").read_text())
    assert [len(result[side]) for side in ("bare", "default")] == [1, 1]
    assert result["default"][0]["steps"] == 3 and result["default"][0]["input_tokens_seen"] > 0
    for side in ("bare", "default"):
        assert re.search(rf"^\| {side} \| {NUMBER} \|", proc.stdout, re.M), proc.stdout


# script -> (extra arguments, given the scratch folder; check of its output; timeout in seconds)
CASES = {
    "aggregate_bench.py": (lambda out: [], _aggregate, 120),
    "cpu_led_shape.py": (lambda out: ["--out", out / "cpu.json"], _cpu_led_shape, 400),
    "eval_bench.py": (lambda out: [], _eval, 300),
    "gpu_led.py": (lambda out: ["--out", out / "gpu.json"], _gpu_led, 300),
    "halving_bench.py": (lambda out: ["--out", out / "halving.json"], _halving, 600),
    "plan_sweep.py": (lambda out: [], _plan, 120),
    "prepare_bench.py": (lambda out: ["--out", out / "prepare"], _prepare, 300),
    "rouge_bench.py": (lambda out: [], _rouge, 120),
    "run_overhead.py": (lambda out: [], _run_overhead, 300),
    "train_throughput.py": (lambda out: ["--json", out / "throughput.json"], _train_throughput, 300),
}


def _bench_files() -> dict[str, int]:
    """bench/'s files (RESULTS.md, bench/out/...) and their modification times."""
    files = (p for p in (REPO / "bench").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return {str(p.relative_to(REPO)): p.stat().st_mtime_ns for p in files}


# scripts that need the Slurm test cluster: their dry run is a Slurm test (one node: those take turns)
ON_SLURM = {"slurm_arrays.py": "tests/test_slurm.py::test_slurm_arrays_bench_dry_run"}


def test_every_script_has_a_case():
    assert sorted([*CASES, *ON_SLURM]) == sorted(p.name for p in (REPO / "bench").glob("*.py"))


@pytest.mark.parametrize("script", sorted(CASES))
def test_dry_run(script, tmp_path):
    extra, check, timeout = CASES[script]
    before = _bench_files()
    proc = subprocess.run(
        [PY, str(REPO / "bench" / script), "--dry-run", *map(str, extra(tmp_path))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    check(proc, tmp_path)
    assert _bench_files() == before  # nothing written into bench/ (RESULTS.md, bench/out/)
