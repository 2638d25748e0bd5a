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
from ledsweep import metrics_registry
from ledsweep import status as status_mod
from ledsweep.config import config_sha256, dump_yaml
from ledsweep.runfolder import text_sha256
from ledsweep.status import run_status
from ledsweep.sweep import load_sweeps

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = [m.name for m in metrics_registry.BUILTIN if m.required]
BASE = "run_name: x\ndata: {train_file: train.jsonl, test_file: test.jsonl}\n"


def make_sweep(tmp_path: Path, grid: dict, name: str = "t", **spec):
    (tmp_path / "base.yaml").write_text(BASE)
    spec = {"base": str(tmp_path / "base.yaml"), "grid": grid, **spec}
    return load_sweeps({"sweeps": {name: spec}})[name]


def run_named(sweep, **overrides) -> str:
    return next(n for n, r in sweep.runs.items() if all(r.overrides[k] == v for k, v in overrides.items()))


def metrics(**values) -> dict:
    m = dict(
        loss=1.0,
        rouge1=0.3,
        rouge2=0.1,
        rougeL=0.2,
        rougeLsum=0.25,
        bertscore=None,
        bertscore_precision=None,
        bertscore_recall=None,
        exact_match=0.0,
    )
    return {**m, **values}


META = {"device": "cuda", "git_commit": "abc123", "slurm_job_ids": [11, 12], "resumes": 1}


def hold(run_dir: Path, pid: int | None = None, host: str | None = None) -> None:
    """The run's lock file as a holder writes it (RunLock.acquire): this process unless told otherwise."""
    import socket

    info = {
        "host": host or socket.gethostname(),
        "pid": pid or os.getpid(),
        "since": "2026-12-06T00:00:00",
        "what": "train",
    }
    (run_dir / ".lock").write_text(json.dumps(info) + "\n")


def write_run(results: Path, name: str, status: str, sweep=None, config: dict | None = None, **metric_values) -> Path:
    """A synthetic run folder in the given state; its config.yaml is the sweep's config for the run (or
    `config`), written as the workflow writes it, and meta.json records its config_sha256 and the sha256
    of the config.yaml text (config_yaml_sha256)."""
    d = results / name
    d.mkdir(parents=True, exist_ok=True)
    config = config or (sweep.runs[name].config if sweep else {"run_name": name, "seed": 1})
    text = dump_yaml(config)
    (d / "config.yaml").write_text(text)
    if status in ("running", "incomplete", "failed", "completed"):
        recorded = {"config_sha256": config_sha256(config), "config_yaml_sha256": text_sha256(text)}
        (d / "meta.json").write_text(json.dumps({**META, **recorded}))
    if status == "running":  # a live process holds the run (this one, as its lock file says)
        hold(d)
    if status == "failed":
        (d / "failure.json").write_text(json.dumps({"status": "failed", "stage": "train", "reason": "OOM: boom"}))
    if status == "completed":
        summary = {"status": "completed", "metrics": metrics(**metric_values), "runtime_seconds": 12.5}
        (d / "summary.json").write_text(json.dumps(summary))
    return d


# ---------------------------------------------------------------------------------------------- run_status


def test_run_status_every_state(tmp_path):
    r = tmp_path / "results"
    assert run_status(write_run(r, "done", "completed")) == ("completed", None)
    assert run_status(write_run(r, "run", "running")) == ("running", None)
    assert run_status(write_run(r, "wait", "pending")) == ("pending", None)
    assert run_status(r / "nothing") == ("missing", None)
    (r / "empty").mkdir()
    assert run_status(r / "empty") == ("pending", None)

    status, reason = run_status(write_run(r, "fail", "failed"))
    assert status == "failed" and reason == "train: OOM: boom"


def test_completed_allows_null_bertscore_and_missing_optional(tmp_path):
    d = write_run(tmp_path, "a", "completed", bertscore=None)
    summary = json.loads((d / "summary.json").read_text())
    del summary["metrics"]["exact_match"]
    (d / "summary.json").write_text(json.dumps(summary))
    assert run_status(d) == ("completed", None)


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: (d / "summary.json").write_text('{"metrics": {"loss": 1.0, "rou'), "summary.json: not valid JSON"),
        (lambda d: (d / "summary.json").write_text(""), "summary.json: empty file"),
        (lambda d: (d / "summary.json").write_text("[1, 2]"), "summary.json: expected a JSON object"),
        (lambda d: (d / "summary.json").write_text('{"runtime_seconds": 1}'), "summary.json: no 'metrics' object"),
        (
            lambda d: (d / "summary.json").write_text(json.dumps({"metrics": {"loss": 1.0}})),
            "summary.json: metrics.rouge1 is missing",
        ),
        (
            lambda d: (d / "summary.json").write_text(json.dumps({"metrics": metrics(rougeL="high")})),
            "summary.json: metrics.rougeL is not a number",
        ),
        # issue 21.5: impossible values are no result, never ranked best
        (
            lambda d: (d / "summary.json").write_text(json.dumps({"metrics": metrics(rougeL=1e300)})),
            "summary.json: metrics.rougeL is 1e+300, outside [0, 1]",
        ),
        (
            lambda d: (d / "summary.json").write_text(json.dumps({"metrics": metrics(loss=-5)})),
            "summary.json: metrics.loss is -5, outside [0, inf]",
        ),
        (
            lambda d: (d / "summary.json").write_text(json.dumps({"metrics": metrics(), "runtime_seconds": "fast"})),
            "summary.json: runtime_seconds is not a duration in seconds: 'fast'",
        ),
        (lambda d: (d / "meta.json").write_text(""), "meta.json: empty file"),
        (lambda d: (d / "meta.json").write_text('{"device": "cu'), "meta.json: not valid JSON"),
    ],
)
def test_corrupt_reasons(tmp_path, mutate, expect):
    d = write_run(tmp_path, "a", "completed")
    mutate(d)
    status, reason = run_status(d)
    assert status == "corrupt"
    assert reason.startswith(expect), reason


def test_retry_after_failure_is_running(tmp_path):
    d = write_run(tmp_path, "a", "failed")
    os.utime(d / "failure.json", ns=(1_000_000_000, 1_000_000_000))  # the new attempt rewrote meta.json later
    assert run_status(d) == ("running", "retrying after: train: OOM: boom")


def write_trained_meta(run_dir: Path) -> Path:
    """trained/meta.json as the workflow's train rule writes it at the start of training (no config hash:
    a training-only config)."""
    (run_dir / "trained").mkdir(parents=True, exist_ok=True)
    path = run_dir / "trained" / "meta.json"
    path.write_text(json.dumps({**META, "config_sha256": None, "trained_by": run_dir.name}))
    return path


def test_run_being_trained_by_the_workflow_is_running(tmp_path):
    """The workflow trains in <run>/trained/ and links meta.json afterwards: trained/meta.json alone is
    `running` (with its provenance), also when it was rewritten after a failure (a retry)."""
    sweep = make_sweep(tmp_path, {"seed": [1, 2, 3]})
    results = tmp_path / "results"
    training, retrying, failed = list(sweep.runs)
    write_trained_meta(write_run(results, training, "pending", sweep))
    hold(results / training)  # the train job holds the run folder's lock
    assert run_status(results / training) == ("running", None)

    for name in (retrying, failed):
        d = write_run(results, name, "pending", sweep)
        (d / "failure.json").write_text(json.dumps({"status": "failed", "stage": "train", "reason": "OOM: boom"}))
        meta = write_trained_meta(d)
        older, newer = (d / "failure.json", meta) if name == retrying else (meta, d / "failure.json")
        os.utime(older, ns=(1_000_000_000, 1_000_000_000))
        os.utime(newer, ns=(2_000_000_000, 2_000_000_000))
    assert run_status(results / retrying) == ("running", "retrying after: train: OOM: boom")
    assert run_status(results / failed) == ("failed", "train: OOM: boom")

    rows = {r["run_name"]: r for r in agg.collect(results, sweep)}
    assert [rows[n]["status"] for n in sweep.runs] == ["running", "running", "failed"]
    row = rows[training]
    assert (row["device"], row["slurm_job_ids"], row["resumes"], row["config_sha256"]) == ("cuda", "11;12", 1, None)
    (results / training / "trained" / "meta.json").write_text("")
    assert run_status(results / training) == ("corrupt", "trained/meta.json: empty file")


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
                assert row["status"] in ("completed", "failed", "running", "incomplete", "pending", "missing")
                assert (row["rougeL"] is not None) == (row["status"] == "completed")
    finally:
        stop.set()
        t.join()


# ---------------------------------------------------------------------------------------------- collect


def test_collect_one_row_per_run_fixed_columns(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    done = run_named(sweep, **{"training.learning_rate": 1e-3, "seed": 1})
    write_run(results, done, "completed", sweep, rougeL=0.5)
    write_run(results, run_named(sweep, **{"training.learning_rate": 2e-3, "seed": 1}), "failed", sweep)

    rows = agg.collect(results, sweep)
    header = [
        "run_name",
        "status",
        "reason",
        "seed",
        "training.learning_rate",
        *metrics_registry.names(),
        "runtime_seconds",
        "slurm_seconds",
        "cpu_hours",
        "gpu_hours",
        "peak_rss_mb",
        "device",
        "git_commit",
        "config_sha256",
        "slurm_job_ids",
        "resumes",
    ]
    assert agg.columns(sweep) == header
    assert [list(r) for r in rows] == [header] * 4
    assert [r["run_name"] for r in rows] == list(sweep.runs)
    by_name = {r["run_name"]: r for r in rows}
    row = by_name[done]
    assert row["status"] == "completed" and row["rougeL"] == 0.5 and row["bertscore"] is None
    assert (row["seed"], row["training.learning_rate"]) == (1, 1e-3)
    assert (row["runtime_seconds"], row["device"], row["git_commit"]) == (12.5, "cuda", "abc123")
    sha = config_sha256(sweep.runs[done].config)
    assert (row["config_sha256"], row["slurm_job_ids"], row["resumes"]) == (sha, "11;12", 1)
    assert agg.status_counts(rows) == {
        "completed": 1,
        "stopped": 0,
        "modified": 0,
        "corrupt": 0,
        "failed": 1,
        "running": 0,
        "incomplete": 0,
        "pending": 0,
        "missing": 2,
    }
    missing = [r for r in rows if r["status"] == "missing"][0]
    assert all(missing[m] is None for m in metrics_registry.names()) and missing["device"] is None


def test_failed_data_preparation_fails_its_waiting_runs(tmp_path):
    """A pending or missing run whose data failed to prepare (results/prepared/<key>.failure.json) is
    `failed` with `prepare_data: <reason>`; the key comes from a pending run's own config.yaml, from the
    sweep for a missing run. Completed and running runs, and runs of other data, are left as they are."""
    from ledsweep.data import data_key, data_spec, failure_path

    sweep = make_sweep(tmp_path, {"data.max_source_length": [128, 256], "seed": [1, 2, 3]})
    results = tmp_path / "results"
    run = {(r.overrides["data.max_source_length"], r.overrides["seed"]): n for n, r in sweep.runs.items()}
    key = {n: data_key(data_spec(r.config)) for n, r in sweep.runs.items()}
    bad = key[run[128, 1]]
    assert key[run[128, 2]] == bad != key[run[256, 1]]
    for length in (128, 256):
        write_run(results, run[length, 1], "pending", sweep)  # (length, 2): missing
        write_run(results, run[length, 3], "completed" if length == 128 else "running", sweep)
    failure = failure_path(results / "prepared" / bad)
    failure.parent.mkdir(parents=True)
    (results / "prepared" / key[run[256, 1]]).mkdir()  # prepared fine
    (results / "prepared" / f".{bad}.lock").write_text("")  # what else lives there: CLI locks, the logs
    (results / "prepared" / "logs").mkdir()
    reason = "data.text_column: column 'document' not found in train.jsonl"
    failure.write_text(json.dumps({"status": "failed", "stage": "prepare_data", "reason": reason, "log": "x.log"}))

    rows = {r["run_name"]: r for r in agg.collect(results, sweep)}
    status = {k: rows[n]["status"] for k, n in run.items()}
    assert status == {
        (128, 1): "failed",
        (128, 2): "failed",
        (128, 3): "completed",
        (256, 1): "pending",
        (256, 2): "missing",
        (256, 3): "running",
    }
    assert rows[run[128, 1]]["reason"] == rows[run[128, 2]]["reason"] == f"prepare_data: {reason}"
    assert run_status(results / run[128, 1]) == ("failed", f"prepare_data: {reason}")
    assert agg.by_config(list(rows.values()), sweep)[0]["n"] == 1

    # a pending run's own config.yaml decides (here edited by hand to the other length: a full parse)
    edit_config(results / run[128, 1], "data.max_source_length", 256)
    edit_config(results / run[256, 1], "data.max_source_length", 128)
    rows = {r["run_name"]: r for r in agg.collect(results, sweep)}
    assert (rows[run[128, 1]]["status"], rows[run[256, 1]]["status"]) == ("pending", "failed")
    assert run_status(results / run[256, 1])[0] == "failed"

    # an unreadable record still fails the runs; prepared since (a manifest): no longer failed
    failure.write_text('{"reason": "trunc')
    rows = {r["run_name"]: r for r in agg.collect(results, sweep)}
    assert rows[run[128, 2]]["status"] == "failed"
    assert rows[run[128, 2]]["reason"].startswith(f"prepare_data: failed ({bad}.failure.json: not valid JSON")
    (results / "prepared" / bad).mkdir()
    (results / "prepared" / bad / "manifest.json").write_text("{}")
    assert {r["status"] for r in agg.collect(results, sweep)} == {"pending", "missing", "completed", "running"}


def test_prepare_failure_check_reads_nothing_without_a_failure(tmp_path, monkeypatch):
    """No failure record under results/prepared: no run's data key is computed; all runs completed: the
    prepared folder is not even listed (aggregating a finished sweep does no per-run work for it)."""
    sweep = make_sweep(tmp_path, {"seed": [1, 2]})
    results = tmp_path / "results"
    (results / "prepared" / "0123456789abcdef").mkdir(parents=True)
    first, second = sweep.runs
    write_run(results, first, "completed", sweep)
    write_run(results, second, "pending", sweep)

    def boom(*args):
        raise AssertionError("not expected to be called")

    monkeypatch.setattr(status_mod, "data_keys", boom)
    monkeypatch.setattr(status_mod, "_recorded_data_key", boom)
    assert [r["status"] for r in agg.collect(results, sweep)] == ["completed", "pending"]
    write_run(results, second, "completed", sweep)
    monkeypatch.setattr(status_mod, "PrepareFailures", boom)
    assert [r["status"] for r in agg.collect(results, sweep)] == ["completed", "completed"]


# ---------------------------------------------------------------------------------------------- by_config


def test_by_config_mean_std_ci95(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3, 3e-3], "seed": [1, 2, 3]})
    results, lr = tmp_path / "results", "training.learning_rate"
    for seed, value in zip([1, 2, 3], [0.1, 0.2, 0.3]):
        write_run(results, run_named(sweep, **{lr: 1e-3, "seed": seed}), "completed", sweep, rougeL=value)
    for seed, loss in zip([1, 2], [1.0, 3.0]):
        write_run(results, run_named(sweep, **{lr: 2e-3, "seed": seed}), "completed", sweep, loss=loss)
    write_run(results, run_named(sweep, **{lr: 2e-3, "seed": 3}), "failed", sweep)

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
    write_run(results, run_named(sweep, seed=1), "completed", sweep, rougeL=0.4)
    (group,) = agg.by_config(agg.collect(results, sweep), sweep)
    assert agg.by_config_columns(sweep)[:2] == ["n", "n_expected"]
    assert (group["n"], group["n_expected"], group["rougeL_mean"]) == (1, 2, 0.4)
    assert group["rougeL_std"] is None and group["rougeL_ci95"] is None


def test_t_quantiles_are_scipy_stats_t_ppf():
    from scipy.stats import t

    assert agg.t975(1) == 12.706204736174694 and agg.t975(30) == 2.0422724563012378
    for dof in (1, 2, 3, 9, 30, 31, 40, 1000, 10**6):
        assert agg.t975(dof) == float(t.ppf(0.975, dof)), dof


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
    # an extra metric by name: higher is better unless registered otherwise
    extra = [
        {"run_name": "x", "meteor": 0.1},
        {"run_name": "y", "meteor": 0.3},
        {"run_name": "inf", "meteor": math.inf},
    ]
    assert [r["run_name"] for r in agg.sort_rows(extra, "meteor")] == ["y", "x", "inf"]  # infinity is no result
    with pytest.raises(ValueError, match="metric name 'rouge L'"):
        agg.sort_rows(rows, "rouge L")


def test_write_tables_csv(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    lr1 = {"training.learning_rate": 1e-3}
    write_run(results, run_named(sweep, **lr1, seed=1), "completed", sweep, rougeL=0.1 + 0.2, loss=5.0)
    write_run(results, run_named(sweep, **lr1, seed=2), "completed", sweep, rougeL=0.1, loss=4.0)
    write_run(
        results, run_named(sweep, **{"training.learning_rate": 2e-3}, seed=1), "completed", sweep, rougeL=0.9, loss=9.0
    )

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
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "aggregate.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def workflow_config(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    sweeps = {
        "demo": {
            "base": str(tmp_path / "base.yaml"),
            "grid": {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2, 3]},
        }
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"sweeps": sweeps}))  # JSON is YAML
    return path


def test_cli_mixed_statuses(tmp_path):
    config, results = workflow_config(tmp_path), tmp_path / "results"
    sweep = load_sweeps({"sweeps": json.loads(config.read_text())["sweeps"]})["demo"]
    names = list(sweep.runs)
    write_run(results, names[0], "completed", sweep, rougeL=0.4)
    write_run(results, names[1], "failed", sweep)
    write_run(results, names[2], "running", sweep)
    write_run(results, names[3], "pending", sweep)
    (write_run(results, names[4], "completed", sweep) / "meta.json").write_text("")

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

    proc = cli(
        tmp_path,
        "--sweep",
        "demo",
        "--config",
        str(config),
        "--results",
        "results",
        "--format",
        "csv",
        "--sort",
        "loss",
        "--write",
    )
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
    # issue 21: a mistyped --results printed a table of missing runs without a word (a sweep that has not
    # started yet has no results folder either: the table stays, a warning says why every run is missing)
    proc = cli(tmp_path, "--sweep", "demo", "--config", str(config), "--results", str(tmp_path / "nonexistent"))
    assert proc.returncode == 0 and proc.stdout, proc.stderr
    assert f"warning: --results: {tmp_path / 'nonexistent'}: no such folder (yet): every run is missing" in proc.stderr
    proc = cli(tmp_path, "--sweep", "nosuch", "--config", str(config))
    assert "no sweep named 'nosuch'; defined: 'demo'" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------- own config.yaml


def edit_config(run_dir: Path, key: str, value) -> None:
    """Change one dotted key of a run's config.yaml in place (a hand edit)."""
    import yaml

    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    node = data
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    (run_dir / "config.yaml").write_text(dump_yaml(data))


def test_config_columns_come_from_the_run_s_own_config(tmp_path):
    """A run that trained with other values than the sweep now defines (its config.yaml and meta.json agree)
    shows the values it ran with, and is pooled with the runs that had them, not with its sweep point."""
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results, lr = tmp_path / "results", "training.learning_rate"
    for name in sweep.runs:
        write_run(results, name, "completed", sweep, rougeL=0.5)
    other = run_named(sweep, **{lr: 1e-3, "seed": 2})
    config = copy_config(sweep.runs[other].config, {lr: 5e-3})
    write_run(results, other, "completed", config=config, rougeL=0.9)  # retrained with a hand-edited lr

    rows = {r["run_name"]: r for r in agg.collect(results, sweep)}
    assert rows[other]["status"] == "completed" and rows[other][lr] == 5e-3 and rows[other]["seed"] == 2
    groups = agg.by_config(list(rows.values()), sweep)
    assert [(g[lr], g["n"], g["n_expected"]) for g in groups] == [(1e-3, 1, 2), (2e-3, 2, 2), (5e-3, 1, 0)]
    assert groups[2]["rougeL_mean"] == 0.9


def copy_config(config: dict, changes: dict) -> dict:
    import copy

    out = copy.deepcopy(config)
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def test_config_edited_after_the_run_is_modified_never_a_clean_result(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results, lr = tmp_path / "results", "training.learning_rate"
    for name, run in sweep.runs.items():
        write_run(results, name, "completed", sweep, rougeL=0.9 if run.overrides[lr] == 2e-3 else 0.5)
    edited = run_named(sweep, **{lr: 2e-3, "seed": 1})
    recorded = config_sha256(sweep.runs[edited].config)
    edit_config(results / edited, lr, 3e-3)

    rows = agg.sort_rows(agg.collect(results, sweep), "rougeL")
    row = next(r for r in rows if r["run_name"] == edited)
    assert row["status"] == "modified" and row[lr] == 3e-3  # what the file says now, flagged
    assert "config.yaml changed after the run" in row["reason"] and recorded[:12] in row["reason"]
    assert row["rougeL"] == 0.9 and row["config_sha256"] == recorded  # its metrics, marked as not clean
    assert agg.best_run(rows) != edited and rows[-1]["run_name"] == edited  # ranked last although 0.9
    assert agg.status_counts(rows)["modified"] == 1
    groups = {g[lr]: g for g in agg.by_config(rows, sweep)}
    assert (groups[2e-3]["n"], groups[2e-3]["n_expected"]) == (1, 2) and 3e-3 not in groups
    assert run_status(results / edited)[0] == "modified"

    # a config.yaml rewritten with the same content (another layout, a comment) is still the same config
    text = (results / edited).joinpath("config.yaml")
    edit_config(results / edited, lr, 2e-3)
    text.write_text("# checked by hand\n" + text.read_text().replace("seed: 1", "seed:   1   # the first"))
    assert run_status(results / edited) == ("completed", None)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: (d / "config.yaml").unlink(), "config.yaml is missing"),
        (lambda d: (d / "config.yaml").write_text("training: {learning_rate: [1\n"), "config.yaml: not valid YAML"),
        (lambda d: (d / "config.yaml").write_text("- a list\n"), "config.yaml: not a mapping"),
        (lambda d: (d / "config.yaml").write_bytes(b"seed: \xff\n"), "config.yaml: not UTF-8"),
        (lambda d: (d / "config.yaml").write_text("seed: 2024-01-01\n"), "config.yaml holds a value JSON cannot hold"),
    ],
)
def test_unreadable_config_is_modified(tmp_path, damage, reason):
    sweep = make_sweep(tmp_path, {"seed": [1, 2]})
    results = tmp_path / "results"
    for name in sweep.runs:
        write_run(results, name, "completed", sweep)
    damage(results / run_named(sweep, seed=1))
    rows = agg.collect(results, sweep)
    assert [r["status"] for r in rows] == ["modified", "completed"]
    assert rows[0]["reason"].startswith(reason), rows[0]["reason"]
    assert agg.by_config(rows, sweep)[0]["n"] == 1


def test_meta_without_config_hash_is_not_checked_and_says_so(tmp_path):
    d = write_run(tmp_path, "a", "completed")
    (d / "meta.json").write_text(json.dumps(META))  # an older run: no config_sha256
    assert run_status(d) == ("completed", None)
    sweep = make_sweep(tmp_path, {"seed": [1]})
    write_run(tmp_path / "results", next(iter(sweep.runs)), "completed", sweep)
    (tmp_path / "results" / next(iter(sweep.runs)) / "meta.json").write_text(json.dumps(META))
    (row,) = agg.collect(tmp_path / "results", sweep)
    assert row["status"] == "completed" and "no config_sha256" in row["reason"]


# config.yaml is checked by its bytes when they are what was written for the run (meta.json's config_yaml_sha256);
# other bytes, and runs older than that record, are parsed in full. Both ways must give the same rows.


def old_run(run_dir: Path) -> None:
    """A run recorded before config_yaml_sha256 existed: only a full parse can check it."""
    meta = json.loads((run_dir / "meta.json").read_text())
    del meta["config_yaml_sha256"]
    (run_dir / "meta.json").write_text(json.dumps(meta))


def test_config_as_written_is_checked_without_a_yaml_parse(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    for name in sweep.runs:
        write_run(results, name, "completed", sweep)
    full = agg.collect(results, sweep)

    def no_parse(raw):
        raise AssertionError("config.yaml parsed although its bytes are as written")

    monkeypatch.setattr(status_mod, "parse_config", no_parse)
    monkeypatch.setattr(agg, "parse_config", no_parse)
    fast = agg.collect(results, sweep)
    assert [r["status"] for r in fast] == ["completed"] * 4 and all(r["reason"] is None for r in fast)
    assert repr(fast) == repr(full)  # values (types included) as the sweep's resolved config holds them
    assert all(run_status(results / name) == ("completed", None) for name in sweep.runs)


@pytest.mark.parametrize(
    "edit, status",
    [
        (lambda t: "# checked by hand\n" + t, "completed"),  # a comment
        (lambda t: t.replace("seed: 1", "seed:   1   # the first"), "completed"),  # layout, a trailing comment
        (lambda t: t.replace("\n", "\r\n"), "completed"),  # other line ends
        (lambda t: t.replace("run_name: ", "run_name: renamed_"), "completed"),  # not hashed: identity
        (lambda t: t.replace("learning_rate: 0.001", "learning_rate: 1.0e-3"), "completed"),  # the same float
        (lambda t: t.replace("learning_rate: 0.001", "learning_rate: 0.003"), "modified"),
        (lambda t: t.replace("seed: 1", "seed: '1'"), "modified"),  # a string is not the int
    ],
)
def test_hand_edited_config_without_a_change_of_config_is_not_modified(tmp_path, edit, status):
    """A comment, whitespace or layout edit changes the bytes, not the config: the run stays `completed`, as
    with a full parse of every file (and for runs that recorded no config_yaml_sha256); a real change is
    `modified`. The config columns show what the edited file says."""
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    for name in sweep.runs:
        write_run(results, name, "completed", sweep)
    edited = run_named(sweep, **{"training.learning_rate": 1e-3, "seed": 1})
    path = results / edited / "config.yaml"
    path.write_bytes(edit(path.read_text()).encode())
    rows = agg.collect(results, sweep)
    row = next(r for r in rows if r["run_name"] == edited)
    assert row["status"] == status and run_status(results / edited)[0] == status
    assert (row["reason"] is None) == (status == "completed")
    for name in sweep.runs:
        old_run(results / name)
    assert repr(agg.collect(results, sweep)) == repr(rows)  # as a full parse of every file gives
    assert run_status(results / edited)[0] == status


def test_config_as_written_for_another_config_than_the_sweep_s_is_parsed(tmp_path):
    """Bytes as written, but for a config the sweep no longer defines for the run (the sweep changed since):
    the columns come from the file, as a full parse gives them."""
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1]})
    results, lr = tmp_path / "results", "training.learning_rate"
    name = run_named(sweep, **{lr: 1e-3})
    write_run(results, name, "completed", config=copy_config(sweep.runs[name].config, {"training.max_steps": 7}))
    (row,) = [r for r in agg.collect(results, sweep) if r["run_name"] == name]
    assert (row["status"], row["reason"], row[lr]) == ("completed", None, 1e-3)


def test_writers_record_the_sha256_of_the_config_yaml_bytes(tmp_path):
    """Rule run_config writes config.yaml, link_checkpoint writes meta.json (another job): its
    config_yaml_sha256 is that of the bytes run_config wrote, so a finished workflow run takes the fast way."""
    from ledsweep.config import train_config_sha256
    from ledsweep.linking import link_checkpoint
    from ledsweep.sweep import write_run_config

    sweep = make_sweep(tmp_path, {"seed": [1]})
    (name, run), results = next(iter(sweep.runs.items())), tmp_path / "results"
    d = results / name
    write_run_config(run.config, str(d / "config.yaml"), str(tmp_path / "run_config.log"))
    trained = d / "trained"
    (trained / "checkpoint").mkdir(parents=True)
    (trained / "checkpoint" / "generation_config.json").write_text("{}")
    record = {**META, "trained_by": name, "config_sha256": None, "train_config_sha256": train_config_sha256(run.config)}
    (trained / "meta.json").write_text(json.dumps(record))
    link_checkpoint(
        str(trained / "checkpoint"),
        str(trained / "meta.json"),
        str(d / "checkpoint"),
        str(d / "meta.json"),
        run.config,
        str(tmp_path / "link.log"),
    )
    meta = json.loads((d / "meta.json").read_text())
    assert meta["config_yaml_sha256"] == text_sha256((d / "config.yaml").read_text())
    assert status_mod.bytes_unchanged((d / "config.yaml").read_bytes(), meta)


# ---------------------------------------------------------------------------------------------- non-finite metrics


@pytest.mark.parametrize("metric, value", [("rougeL", math.nan), ("loss", math.inf), ("bertscore", -math.inf)])
def test_non_finite_metric_is_a_failed_run(tmp_path, metric, value):
    sweep = make_sweep(tmp_path, {"seed": [1, 2]})
    results = tmp_path / "results"
    bad, good = list(sweep.runs)
    write_run(results, bad, "completed", sweep, **{metric: value})
    write_run(results, good, "completed", sweep)
    status, reason = run_status(results / bad)
    assert status == "failed" and reason == f"summary.json: metrics.{metric} is {value}"
    rows = agg.sort_rows(agg.collect(results, sweep), "rouge1")
    assert [r["status"] for r in rows] == ["completed", "failed"] and agg.best_run(rows) == good
    assert rows[1][metric] is None  # no metrics from a failed run
    assert agg.by_config(rows, sweep)[0]["n"] == 1


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as strict parsers (and other languages) do."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict(tmp_path):
    config, results = workflow_config(tmp_path), tmp_path / "results"
    sweep = load_sweeps({"sweeps": json.loads(config.read_text())["sweeps"]})["demo"]
    names = list(sweep.runs)
    write_run(results, names[0], "completed", sweep, rougeL=math.nan)
    write_run(results, names[1], "completed", sweep, loss=math.inf)
    d = write_run(results, names[2], "completed", sweep)
    summary = json.loads((d / "summary.json").read_text())
    (d / "summary.json").write_text(json.dumps({**summary, "runtime_seconds": math.inf}))  # no duration
    for script in ("aggregate.py", "compare.py"):
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / script),
                "--sweep",
                "demo",
                "--config",
                str(config),
                "--results",
                str(results),
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        data = strict_json(proc.stdout)
        by_name = {r["run_name"]: r for r in data["runs"]}
        assert by_name[names[0]]["status"] == "failed" and "metrics.rougeL is nan" in by_name[names[0]]["reason"]
        assert by_name[names[1]]["status"] == "failed" and "metrics.loss is inf" in by_name[names[1]]["reason"]
        assert by_name[names[2]]["status"] == "corrupt" and "runtime_seconds" in by_name[names[2]]["reason"]
        assert by_name[names[2]]["runtime_seconds"] is None
        assert data["counts"]["failed"] == 2 and data["counts"]["corrupt"] == 1


# ---------------------------------------------------------------------------------------------- extra metrics


def test_extra_metrics_by_name_in_tables(tmp_path):
    """issue 17's `evaluation.extra_metrics`: named metrics get columns, statistics, sorting and a format."""
    sweep = make_sweep(tmp_path, {"seed": [1, 2, 3]})
    for run in sweep.runs.values():
        run.config["evaluation"]["extra_metrics"] = ["meteor"]
    results = tmp_path / "results"
    for name, meteor in zip(sweep.runs, [0.25, 0.75, math.nan]):
        d = write_run(results, name, "completed", sweep)
        summary = json.loads((d / "summary.json").read_text())
        summary["metrics"]["meteor"] = meteor
        (d / "summary.json").write_text(json.dumps(summary))
    assert agg.metric_names(sweep)[-1] == "meteor" and "meteor" in agg.columns(sweep)
    assert "meteor_ci95" in agg.by_config_columns(sweep) and "meteor" in agg.display_columns(sweep)
    rows = agg.sort_rows(agg.collect(results, sweep), "meteor")
    assert [r["meteor"] for r in rows] == [0.75, 0.25, None] and rows[2]["reason"].endswith("metrics.meteor is nan")
    (group,) = agg.by_config(rows, sweep)
    assert group["meteor_mean"] == 0.5 and group["n"] == 2
    table = agg.render(rows, agg.display_columns(sweep), metrics=agg.metric_names(sweep))
    assert "0.7500" in table and "0.75 " not in table


def test_format_cell():
    assert agg.format_cell("rougeL", 0.123456) == "0.1235" and agg.format_cell("rougeL_ci95", 2.72654) == "2.7265"
    assert agg.format_cell("training.learning_rate", 1e-05) == "1e-05"  # swept values: full precision
    assert agg.format_cell("runtime_seconds", 12.5) == "12.5000" and agg.format_cell("rougeL", None) == ""
    assert agg.format_cell("reason", "x" * 100, width=10) == "xxxxxxx..."


def test_started_runs_that_nothing_holds_are_incomplete(tmp_path):
    """issue 21: tables said `running` for runs that nothing runs (meta.json, no summary.json, no lock held),
    also after Snakemake had exited. Running needs a holder of the run's lock: a live process on this host, or
    one on another host (whose process cannot be seen from here)."""
    d = write_run(tmp_path, "a", "incomplete")
    reason = "no process holds the run: interrupted, or waiting for its next job"
    assert run_status(d) == ("incomplete", reason)
    (d / ".lock").write_text("")  # released by its last holder
    assert run_status(d) == ("incomplete", reason)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    hold(d, pid=int(dead.stdout))  # killed -9 while holding it: the file still names it
    assert run_status(d) == ("incomplete", reason)
    hold(d, host="gpu-node-07")  # a Slurm job on another node
    assert run_status(d) == ("running", None)
    hold(d)
    assert run_status(d) == ("running", None)


SACCT = """\
412_1|31|billing=2,cpu=2,mem=4000M,node=1|
412_1.batch|31||220796K
412_1.0|28||1.5G
413|3600|billing=8,cpu=8,gres/gpu=2,mem=16000M,node=1|
413.batch|3600||512M
"""


def test_slurm_cost_from_sacct_and_the_sweep_total():
    """Issue 26.3: sacct's lines for a run's jobs -> elapsed, CPU/GPU-hours, peak step memory; the table's
    columns and the sweep total add them up."""
    from ledsweep.provenance import parse_sacct

    usage = parse_sacct(SACCT)
    assert usage == {"jobs": 2, "elapsed_seconds": 3631, "cpu_hours": 8.0172, "gpu_hours": 2.0, "max_rss_mb": 1536.0}
    rows = [
        {"slurm_seconds": 3631, "cpu_hours": 8.0172, "gpu_hours": 2.0, "peak_rss_mb": 1536.0},
        {"slurm_seconds": 3600, "cpu_hours": 1.0, "gpu_hours": 1.0, "peak_rss_mb": 100.0},
        {"slurm_seconds": None},  # a run evaluated outside Slurm: not counted
    ]
    assert agg.cost_total(rows) == (
        "Slurm cost of 2 run(s): 2.01 job-hours, 3.00 GPU-hours, 9.02 CPU-hours, peak memory 1536 MB"
    )
    assert agg.cost_total([{"slurm_seconds": None}]) is None
