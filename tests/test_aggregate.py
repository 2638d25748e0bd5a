"""Aggregation of sweep run folders: statuses, tables, by-config statistics, sorting and the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ledsweep import aggregate as agg
from ledsweep.sweep import load_sweeps

ROOT = Path(__file__).resolve().parents[1]
BASE = "run_name: x\ndata: {train_file: train.jsonl, test_file: test.jsonl}\n"


def make_sweep(tmp_path: Path, grid: dict, name: str = "t", **spec):
    (tmp_path / "base.yaml").write_text(BASE)
    spec = {"base": str(tmp_path / "base.yaml"), "grid": grid, **spec}
    return load_sweeps({"sweeps": {name: spec}})[name]


def run_named(sweep, **overrides) -> str:
    return next(n for n, r in sweep.runs.items() if all(r.overrides[k] == v for k, v in overrides.items()))


def metrics(**values) -> dict:
    m = dict(loss=1.0, rouge1=0.3, rouge2=0.1, rougeL=0.2, rougeLsum=0.25, bertscore=None,
             bertscore_precision=None, bertscore_recall=None, exact_match=0.0)
    return {**m, **values}


META = {"device": "cuda", "git_commit": "abc123", "config_sha256": "f00", "slurm_job_ids": [11, 12], "resumes": 1}


def write_run(results: Path, name: str, status: str, **metric_values) -> Path:
    """A synthetic run folder in the given state."""
    d = results / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text("run_name: " + name + "\n")
    if status in ("running", "failed", "completed"):
        (d / "meta.json").write_text(json.dumps(META))
    if status == "failed":
        (d / "failure.json").write_text(json.dumps({"status": "failed", "stage": "train", "reason": "OOM: boom"}))
    if status == "completed":
        summary = {"status": "completed", "metrics": metrics(**metric_values), "runtime_seconds": 12.5}
        (d / "summary.json").write_text(json.dumps(summary))
    return d


# ---------------------------------------------------------------------------------------------- run_status


def test_run_status_every_state(tmp_path):
    r = tmp_path / "results"
    assert agg.run_status(write_run(r, "done", "completed")) == ("completed", None)
    assert agg.run_status(write_run(r, "run", "running")) == ("running", None)
    assert agg.run_status(write_run(r, "wait", "pending")) == ("pending", None)
    assert agg.run_status(r / "nothing") == ("missing", None)
    (r / "empty").mkdir()
    assert agg.run_status(r / "empty") == ("pending", None)

    status, reason = agg.run_status(write_run(r, "fail", "failed"))
    assert status == "failed" and reason == "train: OOM: boom"


def test_completed_allows_null_bertscore_and_missing_optional(tmp_path):
    d = write_run(tmp_path, "a", "completed", bertscore=None)
    summary = json.loads((d / "summary.json").read_text())
    del summary["metrics"]["exact_match"]
    (d / "summary.json").write_text(json.dumps(summary))
    assert agg.run_status(d) == ("completed", None)


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: (d / "summary.json").write_text('{"metrics": {"loss": 1.0, "rou'), "summary.json: not valid JSON"),
        (lambda d: (d / "summary.json").write_text(""), "summary.json: empty file"),
        (lambda d: (d / "summary.json").write_text("[1, 2]"), "summary.json: expected a JSON object"),
        (lambda d: (d / "summary.json").write_text('{"runtime_seconds": 1}'), "summary.json: no 'metrics' object"),
        (lambda d: (d / "summary.json").write_text(json.dumps({"metrics": {"loss": 1.0}})),
         "summary.json: metrics.rouge1 is missing"),
        (lambda d: (d / "summary.json").write_text(json.dumps({"metrics": metrics(rougeL="high")})),
         "summary.json: metrics.rougeL is not a number"),
        (lambda d: (d / "meta.json").write_text(""), "meta.json: empty file"),
        (lambda d: (d / "meta.json").write_text('{"device": "cu'), "meta.json: not valid JSON"),
    ],
)
def test_corrupt_reasons(tmp_path, mutate, expect):
    d = write_run(tmp_path, "a", "completed")
    mutate(d)
    status, reason = agg.run_status(d)
    assert status == "corrupt"
    assert reason.startswith(expect), reason


def test_retry_after_failure_is_running(tmp_path):
    d = write_run(tmp_path, "a", "failed")
    os.utime(d / "failure.json", ns=(1_000_000_000, 1_000_000_000))  # the new attempt rewrote meta.json later
    assert agg.run_status(d) == ("running", "retrying after: train: OOM: boom")


def test_never_crashes_while_runs_change(tmp_path):
    """Files appearing and vanishing under the reader give valid states, never exceptions or half rows."""
    sweep = make_sweep(tmp_path, {"seed": list(range(8))})
    results, stop = tmp_path / "results", threading.Event()

    def churn():
        from ledsweep.runfolder import write_json

        while not stop.is_set():
            for name in sweep.runs:
                d = results / name
                write_json(d / "meta.json", META)
                write_json(d / "summary.json", {"metrics": metrics()})
                (d / "summary.json").unlink()
                write_json(d / "failure.json", {"reason": "x"})
                (d / "failure.json").unlink()
                (d / "meta.json").unlink()

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(50):
            rows = agg.collect(results, sweep)
            assert len(rows) == 8
            for row in rows:
                assert row["status"] in ("completed", "failed", "running", "pending", "missing")
                assert (row["rougeL"] is not None) == (row["status"] == "completed")
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------------------------------------- collect


def test_collect_one_row_per_run_fixed_columns(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    done = run_named(sweep, **{"training.learning_rate": 1e-3, "seed": 1})
    write_run(results, done, "completed", rougeL=0.5)
    write_run(results, run_named(sweep, **{"training.learning_rate": 2e-3, "seed": 1}), "failed")

    rows = agg.collect(results, sweep)
    header = ["run_name", "status", "reason", "seed", "training.learning_rate", *agg.METRICS,
              "runtime_seconds", "device", "git_commit", "config_sha256", "slurm_job_ids", "resumes"]
    assert agg.columns(sweep) == header
    assert [list(r) for r in rows] == [header] * 4
    assert [r["run_name"] for r in rows] == list(sweep.runs)
    by_name = {r["run_name"]: r for r in rows}
    row = by_name[done]
    assert row["status"] == "completed" and row["rougeL"] == 0.5 and row["bertscore"] is None
    assert (row["seed"], row["training.learning_rate"]) == (1, 1e-3)
    assert (row["runtime_seconds"], row["device"], row["git_commit"]) == (12.5, "cuda", "abc123")
    assert (row["config_sha256"], row["slurm_job_ids"], row["resumes"]) == ("f00", "11;12", 1)
    assert agg.status_counts(rows) == {"completed": 1, "stale": 0, "corrupt": 0, "failed": 1, "running": 0,
                                       "pending": 0, "missing": 2}
    missing = [r for r in rows if r["status"] == "missing"][0]
    assert all(missing[m] is None for m in agg.METRICS) and missing["device"] is None


# ---------------------------------------------------------------------------------------------- by_config


def test_by_config_mean_std_ci95(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3, 3e-3], "seed": [1, 2, 3]})
    results, lr = tmp_path / "results", "training.learning_rate"
    for seed, value in zip([1, 2, 3], [0.1, 0.2, 0.3]):
        write_run(results, run_named(sweep, **{lr: 1e-3, "seed": seed}), "completed", rougeL=value)
    for seed, loss in zip([1, 2], [1.0, 3.0]):
        write_run(results, run_named(sweep, **{lr: 2e-3, "seed": seed}), "completed", loss=loss)
    write_run(results, run_named(sweep, **{lr: 2e-3, "seed": 3}), "failed")

    groups = agg.by_config(agg.collect(results, sweep), sweep)
    assert list(groups[0])[:3] == ["training.learning_rate", "n", "n_expected"]
    assert list(groups[0]) == agg.by_config_columns(sweep)
    g1, g2, g3 = groups
    assert (g1["training.learning_rate"], g1["n"], g1["n_expected"]) == (1e-3, 3, 3)
    # rougeL 0.1, 0.2, 0.3: mean 0.2, std sqrt((0.01 + 0 + 0.01) / 2) = 0.1, ci95 = t(0.975, 2) * 0.1 / sqrt(3)
    assert g1["rougeL_mean"] == pytest.approx(0.2)
    assert g1["rougeL_std"] == pytest.approx(0.1)
    assert g1["rougeL_ci95"] == pytest.approx(4.302652729749462 * 0.1 / math.sqrt(3))
    assert g1["rougeL_ci95"] == pytest.approx(0.248413, abs=1e-6)
    # loss 1.0, 3.0: mean 2, std sqrt(2), ci95 = t(0.975, 1) * sqrt(2) / sqrt(2) = 12.7062...
    assert (g2["n"], g2["n_expected"]) == (2, 3)
    assert g2["loss_mean"] == 2.0 and g2["loss_std"] == pytest.approx(math.sqrt(2))
    assert g2["loss_ci95"] == pytest.approx(12.706204736174694)
    assert g2["bertscore_mean"] is None  # null in every run
    assert (g3["n"], g3["n_expected"], g3["rougeL_mean"], g3["rougeL_std"]) == (0, 3, None, None)


def test_by_config_single_run_and_seed_only(tmp_path):
    sweep = make_sweep(tmp_path, {"seed": [1, 2]})
    results = tmp_path / "results"
    write_run(results, run_named(sweep, seed=1), "completed", rougeL=0.4)
    (group,) = agg.by_config(agg.collect(results, sweep), sweep)
    assert agg.by_config_columns(sweep)[:2] == ["n", "n_expected"]
    assert (group["n"], group["n_expected"], group["rougeL_mean"]) == (1, 2, 0.4)
    assert group["rougeL_std"] is None and group["rougeL_ci95"] is None


def test_t_quantiles():
    assert agg._t975(1) == 12.706204736174694 and agg._t975(30) == 2.0422724563012378
    scipy_stats = pytest.importorskip("scipy.stats")
    assert agg._t975(40) == pytest.approx(scipy_stats.t.ppf(0.975, 40))


# ---------------------------------------------------------------------------------------------- sorting


def test_sort_scores_desc_loss_asc_incomplete_last():
    rows = [
        {"run_name": "b", "rougeL": 0.2, "loss": 2.0},
        {"run_name": "pending", "rougeL": None, "loss": None},
        {"run_name": "a", "rougeL": 0.2, "loss": 3.0},
        {"run_name": "c", "rougeL": 0.5, "loss": 1.0},
        {"run_name": "nan", "rougeL": float("nan"), "loss": float("nan")},
        {"run_name": "0-not-done", "status": "corrupt", "rougeL": 0.9, "loss": 0.1},
    ]
    last = ["0-not-done", "nan", "pending"]
    assert [r["run_name"] for r in agg.sort_rows(rows, "rougeL")] == ["c", "a", "b", *last]
    assert [r["run_name"] for r in agg.sort_rows(rows, "loss")] == ["c", "b", "a", *last]
    with pytest.raises(ValueError, match="unknown sort metric"):
        agg.sort_rows(rows, "accuracy")


def test_write_tables_csv(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    lr1 = {"training.learning_rate": 1e-3}
    write_run(results, run_named(sweep, **lr1, seed=1), "completed", rougeL=0.1 + 0.2, loss=5.0)
    write_run(results, run_named(sweep, **lr1, seed=2), "completed", rougeL=0.1, loss=4.0)
    write_run(results, run_named(sweep, **{"training.learning_rate": 2e-3}, seed=1), "completed", rougeL=0.9, loss=9.0)

    runs_csv, groups_csv = agg.write_tables(results, sweep, tmp_path / "out", sort="loss")
    with open(runs_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == agg.columns(sweep)
    assert [r[1] for r in rows[1:]] == ["completed", "completed", "completed", "missing"]
    assert [float(r[rows[0].index("loss")]) for r in rows[1:4]] == [4.0, 5.0, 9.0]  # loss: ascending
    assert "0.30000000000000004" in rows[2]  # full precision
    with open(groups_csv, newline="") as f:
        groups = list(csv.DictReader(f))
    assert [g["training.learning_rate"] for g in groups] == ["0.001", "0.002"]
    assert float(groups[0]["loss_mean"]) == 4.5 and groups[1]["loss_std"] == ""  # n = 1: no std
    assert not list((tmp_path / "out").glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- CLI


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "aggregate.py"), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


def workflow_config(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    sweeps = {"demo": {"base": str(tmp_path / "base.yaml"), "grid": {"training.learning_rate": [1e-3, 2e-3],
                                                                     "seed": [1, 2, 3]}}}
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"sweeps": sweeps}))  # JSON is YAML
    return path


def test_cli_mixed_statuses(tmp_path):
    config, results = workflow_config(tmp_path), tmp_path / "results"
    sweep = load_sweeps({"sweeps": json.loads(config.read_text())["sweeps"]})["demo"]
    names = list(sweep.runs)
    write_run(results, names[0], "completed", rougeL=0.4)
    write_run(results, names[1], "failed")
    write_run(results, names[2], "running")
    write_run(results, names[3], "pending")
    (write_run(results, names[4], "completed") / "meta.json").write_text("")

    proc = cli(tmp_path, "--sweep", "demo", "--config", str(config), "--results", str(results))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name, status in zip(names, ["completed", "failed", "running", "pending", "corrupt", "missing"]):
        assert any(name in line and status in line for line in lines), (name, status, proc.stdout)
    assert "train: OOM: boom" in proc.stdout and "meta.json: empty file" in proc.stdout
    corrupt_line = next(line for line in lines if names[4] in line)
    assert "0.2000" not in corrupt_line  # no metrics for runs that are not completed
    assert "6 runs: 1 completed, 1 corrupt, 1 failed, 1 running, 1 pending, 1 missing" in proc.stdout
    assert "by config" in proc.stdout

    proc = cli(tmp_path, "--sweep", "demo", "--config", str(config), "--results", "results",
               "--format", "csv", "--sort", "loss", "--write")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert len(rows) == 6 and rows[0]["run_name"] == names[0]
    assert (tmp_path / "results" / "sweeps" / "demo" / "comparison.csv").is_file()
    assert (tmp_path / "results" / "sweeps" / "demo" / "comparison_by_config.csv").is_file()

    proc = cli(tmp_path, "--sweep", "demo", "--config", str(config), "--results", str(results), "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["counts"]["corrupt"] == 1


def test_cli_unknown_sweep_and_bad_config(tmp_path):
    config = workflow_config(tmp_path)
    proc = cli(tmp_path, "--sweep", "nosuch", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "nosuch" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(tmp_path, "--sweep", "demo", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "error: " in proc.stderr and "not found" in proc.stderr


def test_changed_data_file_marks_run_stale(tmp_path):
    """A finished run whose data file changed afterwards is `stale`, named, and left out of by-config stats."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"document": "a", "summary": "b"}\n')
    from ledsweep.runfolder import sha256_file

    recorded = {str(data): sha256_file(data)}
    base = tmp_path / "base.yaml"
    base.write_text(f"run_name: x\ndata:\n  train_file: {data}\n  test_file: {data}\n")
    sweep = load_sweeps({"sweeps": {"d": {"base": str(base), "grid": {"seed": [1, 2]}}}},
                        results_dir=str(tmp_path / "results"))["d"]
    for name in sweep.runs:
        run = tmp_path / "results" / name
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"metrics": dict.fromkeys(agg.REQUIRED_METRICS, 0.5)}))
        (run / "meta.json").write_text(json.dumps({"data_sha256": recorded}))
    assert {r["status"] for r in agg.collect(tmp_path / "results", sweep)} == {"completed"}
    data.write_text('{"document": "a changed", "summary": "b"}\n')
    rows = agg.collect(tmp_path / "results", sweep)
    assert {r["status"] for r in rows} == {"stale"}
    assert all(str(data) in r["reason"] for r in rows)
    assert agg.by_config(rows, sweep)[0]["n"] == 0
