"""The Snakemake workflow, for real (local executor): a tiny 2 x 2 sweep and what users do with it."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import TINY_SWEEP, copy_tree, run_cli
from workflow_helpers import LOCAL, jobs_run, make_workdir, snakemake

SWEEP = TINY_SWEEP
RUNS = ["tiny_lr0.001_seed1", "tiny_lr0.001_seed2", "tiny_lr0.002_seed1", "tiny_lr0.002_seed2"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def sweep_dir(tiny_sweep, tmp_path):
    """A copy of the session's finished 2 x 2 sweep, to change."""
    return copy_tree(tiny_sweep, tmp_path / "wd")


# ----------------------------------------------------------------------------- fast tier: one run
def test_small_sweeps_end_to_end(small_sweeps):
    """The fast tier's real workflow run: every rule's output, the tables and plots of rule all."""
    run = small_sweeps / "results" / "one_seed1"
    for name in ("config.yaml", "meta.json", "summary.json", "checkpoint/model.safetensors", "plots/loss.png"):
        assert (run / name).is_file(), name
    assert "step 12/12" in (run / "logs" / "train.log").read_text()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["hf_hub_offline"] == "1" and meta["global_step"] == 12
    [row] = read_csv(small_sweeps / "results/sweeps/one/comparison.csv")
    assert (row["run_name"], row["status"], row["seed"], row["resumes"]) == ("one_seed1", "completed", "1", "0")
    assert float(row["loss"]) == json.loads((run / "summary.json").read_text())["metrics"]["loss"]
    assert (small_sweeps / "results/sweeps/one/loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_small_sweeps_is_up_to_date_and_unknown_runs_are_refused(small_sweeps):
    proc = snakemake(small_sweeps, *LOCAL, "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout[-3000:]
    proc = snakemake(small_sweeps, *LOCAL, "-n", targets=["results/one_seed9/summary.json"])
    assert proc.returncode != 0 and "no run of that name" in proc.stdout


def test_small_sweeps_equals_train_baseline(small_sweeps, baseline):
    """The workflow's run and train_baseline.py's of the same config: the same metrics, bitwise."""
    a = json.loads((small_sweeps / "results/one_seed1/summary.json").read_text())["metrics"]
    b = json.loads((baseline / "summary.json").read_text())["metrics"]
    assert a == b


def test_halving_sweep_stops_half_at_the_rung(small_sweeps):
    """Two sampled runs scored at step 6 on the validation split: the better goes on to step 12, the other
    stops with its rung checkpoint as a complete run folder; the table says which is which."""
    results = small_sweeps / "results"
    decision = json.loads((results / "sweeps/half/halving/rung1.json").read_text())
    assert decision["entered"] == 2 and (decision["step"], decision["next_step"]) == (6, 12)
    [kept], [stopped] = decision["kept"], decision["stopped"]
    assert [r["run_name"] for r in decision["ranking"]] == [kept, stopped]
    losses = {r["run_name"]: r["loss"] for r in decision["ranking"]}
    assert losses[kept] <= losses[stopped]
    for run, (status, step, rung) in {kept: ("completed", 12, 2), stopped: ("stopped", 6, 1)}.items():
        summary = json.loads((results / run / "summary.json").read_text())
        meta = json.loads((results / run / "meta.json").read_text())
        assert (summary["status"], meta["global_step"], summary["halving"]["rung"]) == (status, step, rung), run
        rung6 = json.loads((results / run / "rungs" / "6.json").read_text())
        assert rung6["split"] == "validation" and rung6["metrics"]["loss"] == losses[run]
        assert (results / run / "checkpoint" / "model.safetensors").is_file()
    rows = {r["run_name"]: r for r in read_csv(results / "sweeps/half/comparison.csv")}
    assert {n: (r["status"], r["rung"], r["steps"]) for n, r in rows.items()} == {
        kept: ("completed", "2", "12"),
        stopped: ("stopped", "1", "6"),
    }


def test_a_sweep_over_two_models_gives_one_table(small_sweeps):
    """Issue 24: grid over model.name (a tiny BART and a tiny T5 folder, each its own tokenizer): each run
    is prepared with its model's tokenizer, trained and evaluated; both rows are in one comparison.csv."""
    results = small_sweeps / "results"
    rows = {r["run_name"]: r for r in read_csv(results / "sweeps/models/comparison.csv")}
    assert set(rows) == {"models_namebart", "models_namet5"}
    keys = set()
    for run, kind in (("models_namebart", "bart"), ("models_namet5", "t5")):
        assert json.loads((results / run / "checkpoint" / "config.json").read_text())["model_type"] == kind
        assert rows[run]["status"] == "completed" and rows[run]["model.name"] == f"models/{kind}"
        summary = json.loads((results / run / "summary.json").read_text())
        assert float(rows[run]["rougeL"]) == summary["metrics"]["rougeL"]
        keys.add(json.loads((results / run / "meta.json").read_text())["prepared_data"]["key"])
    assert len(keys) == 2  # one prepared data per tokenizer


def test_a_factory_model_runs_through_the_workflow(small_sweeps, tmp_path):
    """Issue 24.2: model.factory through `snakemake --profile profiles/local`: its file's sha256 in meta.json,
    the checkpoint records how to build it again; editing the file makes Snakemake retrain that run."""
    from ledsweep.runfolder import sha256_file

    run = small_sweeps / "results" / "variant_factory_argsembedding-gain-0.5"
    meta = json.loads((run / "meta.json").read_text())
    code = small_sweeps / "examples" / "bart_variant.py"
    assert meta["model_code"]["sha256"] == sha256_file(code) and meta["model_code"]["factory"].startswith("examples/")
    assert json.loads((run / "checkpoint" / "ledsweep_factory.json").read_text())["model_config"]["factory_args"] == {
        "embedding_gain": 0.5
    }
    [row] = read_csv(small_sweeps / "results/sweeps/variant/comparison.csv")
    assert (
        row["status"] == "completed"
        and float(row["loss"]) == json.loads((run / "summary.json").read_text())["metrics"]["loss"]
    )
    wd = copy_tree(small_sweeps, tmp_path / "wd")
    (wd / "examples").unlink()
    shutil.copytree(small_sweeps / "examples", wd / "examples")  # a copy of the code, to edit
    with open(wd / "examples" / "bart_variant.py", "a") as f:
        f.write("\n# edited\n")
    proc = snakemake(wd, *LOCAL, "-n")
    planned = [ln.split()[-1] for ln in proc.stdout.splitlines() if "wildcards: run=" in ln]
    assert proc.returncode == 0 and set(planned) == {"run=variant_factory_argsembedding-gain-0.5"}, proc.stdout[-3000:]


@pytest.mark.slow
def test_workflow_train_takes_the_run_folders_lock(sweep_dir):
    """issue 21.6: the workflow's train job locked results/<run>/trained while train_baseline.py locks
    results/<run>: both trained one run at once. One lock per run folder: a holder of it stops the job."""
    from test_input_checks import hold_lock

    run = sweep_dir / "results" / RUNS[0]
    holder = hold_lock(run)  # as train_baseline.py holds it while it trains this run
    try:
        proc = snakemake(sweep_dir, *LOCAL, "-f", targets=[f"results/{RUNS[0]}/trained/meta.json"])
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode != 0 and jobs_run(proc.stdout) == ["train"], proc.stdout[-4000:]
    assert f"results/{RUNS[0]} is in use by pid {holder.pid}" in (run / "logs" / "train.log").read_text()
    assert not (run / "trained" / ".lock").exists()


# ----------------------------------------------------------------------------- the 2 x 2 sweep
@pytest.mark.slow
def test_sweep_runs_end_to_end(tiny_sweep):
    sweep_dir = tiny_sweep
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_nothing_to_do_when_up_to_date_and_comments_do_not_count(sweep_dir):
    base = sweep_dir / "config" / "tiny_run.yaml"
    base.write_text("# a comment changes nothing the runs do\n" + base.read_text())
    proc = snakemake(sweep_dir, *LOCAL, "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout, proc.stdout[-3000:]


@pytest.mark.slow
def test_rerun_one_target_rebuilds_only_that_run(sweep_dir):
    results = sweep_dir / "results"
    other = {r: (results / r / "summary.json").stat().st_mtime_ns for r in RUNS[1:]}
    shutil.rmtree(results / RUNS[0])
    proc = snakemake(sweep_dir, *LOCAL, targets=[f"results/{RUNS[0]}/summary.json"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert sorted(jobs_run(proc.stdout)) == ["evaluate", "link_checkpoint", "run_config", "train"]
    assert f"results/{RUNS[0]}/" in proc.stdout and not any(f"results/{r}/" in proc.stdout for r in RUNS[1:])
    assert {r: (results / r / "summary.json").stat().st_mtime_ns for r in RUNS[1:]} == other


@pytest.mark.slow
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


@pytest.mark.slow
def test_force_one_target_reevaluates_only_that_run(sweep_dir):
    run = sweep_dir / "results" / RUNS[2]
    weights = (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    proc = snakemake(sweep_dir, *LOCAL, "-f", targets=[f"results/{RUNS[2]}/summary.json"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert jobs_run(proc.stdout) == ["evaluate"]
    assert (run / "checkpoint" / "model.safetensors").stat().st_mtime_ns == weights


@pytest.mark.slow
def test_changed_run_config_reruns_the_run(sweep_dir):
    base = sweep_dir / "config" / "tiny_run.yaml"
    base.write_text(base.read_text().replace("max_steps: 12", "max_steps: 8"))
    proc = snakemake(sweep_dir, *LOCAL, "-n")
    assert proc.returncode == 0
    assert jobs_run(proc.stdout).count("run_config") == 4 and jobs_run(proc.stdout).count("train") == 4
    base.write_text(base.read_text().replace("max_steps: 8", "max_steps: 12"))


@pytest.mark.slow
def test_failed_training_resumes_on_retry(tmp_path):
    """The first attempt is killed right after its first checkpoint; Snakemake's retry resumes it."""
    wd = make_workdir(tmp_path / "wd", SWEEP)
    target = f"results/{RUNS[0]}/meta.json"
    proc = snakemake(wd, *LOCAL, "--retries", "1", targets=[target], env={"LEDSWEEP_FAULT": "after_save:4"})
    assert proc.returncode == 0, proc.stdout[-6000:]
    meta = json.loads((wd / target).read_text())
    assert meta["attempts"] == 2 and meta["resumes"] == 1
    assert "resuming from checkpoint-4" in (wd / "results" / RUNS[0] / "logs" / "train.log").read_text()


@pytest.mark.slow
def test_unknown_run_target_is_refused(tiny_sweep):
    proc = snakemake(tiny_sweep, *LOCAL, "-n", targets=["results/tiny_lr9_seed1/summary.json"])
    assert proc.returncode != 0 and "no run of that name" in proc.stdout


@pytest.mark.slow
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
