"""The Snakemake workflow, for real (local executor): a tiny 2 x 2 sweep and what users do with it."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import REPO, run_cli
from workflow_helpers import jobs_run, make_workdir, snakemake

pytestmark = pytest.mark.slow
SWEEP = REPO / "tests" / "configs" / "tiny_sweep.yaml"
RUNS = ["tiny_lr0.001_seed1", "tiny_lr0.001_seed2", "tiny_lr0.002_seed1", "tiny_lr0.002_seed2"]
LOCAL = ("--profile", "profiles/local", "--set-threads", "train=1", "evaluate=1")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("wf") / "wd", SWEEP)
    proc = snakemake(wd, *LOCAL)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return wd


def test_sweep_runs_end_to_end(sweep_dir):
    for run in RUNS:
        assert (sweep_dir / "results" / run / "summary.json").is_file(), run
        assert (sweep_dir / "results" / run / "logs" / "train.log").is_file()
        meta = json.loads((sweep_dir / "results" / run / "meta.json").read_text())
        assert meta["hf_hub_offline"] == "1"  # jobs run offline
    rows = read_csv(sweep_dir / "results/sweeps/tiny/comparison.csv")
    assert sorted(r["run_name"] for r in rows) == RUNS
    assert {r["status"] for r in rows} == {"completed"}
    assert {"training.learning_rate", "seed", "rougeL", "config_sha256", "device", "git_commit"} <= set(rows[0])
    by_cfg = read_csv(sweep_dir / "results/sweeps/tiny/comparison_by_config.csv")
    assert sorted(r["training.learning_rate"] for r in by_cfg) == ["0.001", "0.002"]
    assert {r["n"] for r in by_cfg} == {"2"}
    # local paths and packaged models only: nothing to download, so no prefetch job
    assert not (sweep_dir / "results/sweeps/tiny/prefetch.json").exists()


def test_hub_models_are_prefetched_before_training(tmp_path):
    """A sweep naming a hub model gets one prefetch job, which every train job waits for."""
    sweep = "sweeps:\n  hub:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1, 2]\n"
    sweep += "    set:\n      model.name: allenai/led-base-16384\n"
    wd = make_workdir(tmp_path / "wd", SWEEP, extra={"config/config.yaml": sweep})
    proc = snakemake(wd, *LOCAL, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = dict(ln.split()[:2] for ln in proc.stdout.splitlines() if ln.split()[:1] in (["prefetch"], ["train"]))
    assert counts == {"prefetch": "1", "train": "2"}
    proc = snakemake(wd, *LOCAL, "-n", "--forceall", "--dag", targets=["results/hub_seed1/meta.json"])
    assert proc.returncode == 0 and "prefetch" in proc.stdout, proc.stdout[-3000:]


def test_nothing_to_do_when_up_to_date_and_comments_do_not_count(sweep_dir):
    base = sweep_dir / "config" / "tiny_run.yaml"
    base.write_text("# a comment changes nothing the runs do\n" + base.read_text())
    proc = snakemake(sweep_dir, *LOCAL, "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout[-3000:]


def test_rerun_one_target_rebuilds_only_that_run(sweep_dir):
    results = sweep_dir / "results"
    other = {r: (results / r / "summary.json").stat().st_mtime_ns for r in RUNS[1:]}
    shutil.rmtree(results / RUNS[0])
    proc = snakemake(sweep_dir, *LOCAL, targets=[f"results/{RUNS[0]}/summary.json"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(jobs_run(proc.stdout)) == ["evaluate", "link_checkpoint", "run_config", "train"]
    assert f"results/{RUNS[0]}/" in proc.stdout and not any(f"results/{r}/" in proc.stdout for r in RUNS[1:])
    assert {r: (results / r / "summary.json").stat().st_mtime_ns for r in RUNS[1:]} == other


def test_forcerun_evaluate_does_not_retrain(sweep_dir):
    run = sweep_dir / "results" / RUNS[1]
    weights = (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    meta = (run / "meta.json").read_bytes()
    summary_before = json.loads((run / "summary.json").read_text())
    proc = snakemake(sweep_dir, *LOCAL, "--forcerun", "evaluate", targets=[f"results/{RUNS[1]}/summary.json"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert jobs_run(proc.stdout) == ["evaluate"]
    assert (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns == weights
    assert (run / "meta.json").read_bytes() == meta
    after = json.loads((run / "summary.json").read_text())
    assert after["metrics"] == summary_before["metrics"] and after["end_time"] >= summary_before["end_time"]


def test_force_one_target_reevaluates_only_that_run(sweep_dir):
    run = sweep_dir / "results" / RUNS[2]
    weights = (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    proc = snakemake(sweep_dir, *LOCAL, "-f", targets=[f"results/{RUNS[2]}/summary.json"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert jobs_run(proc.stdout) == ["evaluate"]
    assert (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns == weights


def test_changed_run_config_reruns_the_run(sweep_dir):
    base = sweep_dir / "config" / "tiny_run.yaml"
    base.write_text(base.read_text().replace("max_steps: 12", "max_steps: 8"))
    proc = snakemake(sweep_dir, *LOCAL, "-n")
    assert proc.returncode == 0
    assert jobs_run(proc.stdout).count("run_config") == 4 and jobs_run(proc.stdout).count("train") == 4
    base.write_text(base.read_text().replace("max_steps: 8", "max_steps: 12"))


def test_failed_training_resumes_on_retry(tmp_path):
    """The first attempt is killed right after its first checkpoint; Snakemake's retry resumes it."""
    wd = make_workdir(tmp_path / "wd", SWEEP)
    target = f"results/{RUNS[0]}/meta.json"
    proc = snakemake(wd, *LOCAL, "--retries", "1", targets=[target], env={"LEDSWEEP_FAULT": "after_save:4"})
    assert proc.returncode == 0, proc.stdout[-6000:]
    meta = json.loads((wd / target).read_text())
    assert meta["attempts"] == 2 and meta["resumes"] == 1
    assert "resuming from checkpoint-4" in (wd / "results" / RUNS[0] / "logs" / "train.log").read_text()


def test_unknown_run_target_is_refused(sweep_dir):
    proc = snakemake(sweep_dir, *LOCAL, "-n", targets=["results/tiny_lr9_seed1/summary.json"])
    assert proc.returncode != 0 and "no run of that name" in proc.stdout


def test_aggregate_cli_reports_missing_failed_corrupt(sweep_dir, tmp_path):
    results = sweep_dir / "results"
    (results / RUNS[2] / "summary.json").write_text('{"metrics": {"loss": 1.0, "rou')  # truncated
    (results / RUNS[3] / "summary.json").unlink()
    (results / RUNS[3] / "failure.json").write_text('{"status": "failed", "stage": "train", "reason": "boom"}')
    shutil.rmtree(results / RUNS[1])
    proc = run_cli(
        "aggregate.py",
        "--sweep",
        "tiny",
        "--config",
        sweep_dir / "config/config.yaml",
        "--results",
        results,
        "--format",
        "csv",
        cwd=sweep_dir,
        check=True,
    )
    rows = {r["run_name"]: r for r in csv.DictReader(proc.stdout.splitlines())}
    assert rows[RUNS[0]]["status"] == "completed"
    assert rows[RUNS[1]]["status"] == "missing"
    assert rows[RUNS[2]]["status"] == "corrupt" and "summary.json" in rows[RUNS[2]]["reason"]
    assert rows[RUNS[3]]["status"] == "failed" and "boom" in rows[RUNS[3]]["reason"]
