"""The Slurm path, against a real single-node Slurm cluster (tests/slurm/start-cluster.sh).

Skipped when no cluster answers, unless LEDSWEEP_REQUIRE_SLURM=1 (as in CI), which turns the
skip into a failure.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, run_cli
from workflow_helpers import jobs_run, make_workdir, snakemake

from ledsweep.runfolder import sha256_file


def cluster_up(tries: int = 10) -> bool:
    """A node answers (idle, mixed, allocated or completing a job); asked a few times, 1 s apart."""
    for _ in range(tries):
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if out.returncode == 0 and any(s.startswith(("idle", "mix", "alloc", "comp")) for s in out.stdout.split()):
            return True
        time.sleep(1)
    return False


if not cluster_up():
    if os.environ.get("LEDSWEEP_REQUIRE_SLURM") == "1":
        raise RuntimeError("LEDSWEEP_REQUIRE_SLURM=1 but no Slurm cluster answers (bash tests/slurm/start-cluster.sh)")
    pytest.skip("no Slurm cluster (bash tests/slurm/start-cluster.sh)", allow_module_level=True)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SLURM = ("--profile", "profiles/slurm", "--profile", "profiles/slurm-ci")
RUNS = [f"slurm_seed{i}" for i in range(1, 7)]
SWEEP = """
sweeps:
  slurm:
    base: config/tiny_run.yaml
    set: {evaluation.bertscore_model: null}   # ROUGE is enough here; BERTScore is tested elsewhere
    grid:
      seed: [1, 2, 3, 4, 5, 6]
  slurmhalf:   # successive halving through Slurm: two sampled runs, one goes on after step 6
    base: config/tiny_run.yaml
    set: {evaluation.bertscore_model: null}
    sample: {n: 2, seed: 0, space: {training.learning_rate: {loguniform: [1.0e-3, 3.0e-3]}}}
    halving: {rungs: [6, 12], keep: 0.5, metric: loss}
"""


@pytest.fixture(scope="module")
def slurm_sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("slurm") / "sweep.yaml"
    sweep.write_text(SWEEP)
    wd = make_workdir(sweep.parent / "wd", sweep)
    plain = snakemake(wd, *SLURM, "--config", "run_sweeps=[slurm]", timeout=600)  # the 6-run sweep alone
    assert plain.returncode == 0, plain.stdout[-8000:]
    proc = snakemake(wd, *SLURM, timeout=480)  # then the halving sweep
    assert proc.returncode == 0, proc.stdout[-8000:]
    return wd, plain, proc


def slurm_job_ids(output: str) -> set[str]:
    """The Slurm job ids Snakemake submitted (an array is one id), from its log lines."""
    found = re.findall(r"SLURM job ID (\d+)\. The individual task IDs", output)
    return set(found + re.findall(r"has been submitted with SLURM jobid (\d+)", output))


def test_a_six_run_sweep_takes_at_most_five_slurm_job_ids(slurm_sweep):
    """Issue 26.1: train and evaluate go as job arrays (profiles/slurm: slurm-array-jobs): prepare_data, one
    train array and one evaluate array, not 13 jobs; each run's meta.json names its array task."""
    wd, plain, _ = slurm_sweep
    ids = slurm_job_ids(plain.stdout)
    assert 1 <= len(ids) <= 5, (ids, plain.stdout[-4000:])
    tasks = [json.loads((wd / "results" / r / "meta.json").read_text())["slurm_job_id"] for r in RUNS]
    assert all(re.fullmatch(r"\d+_\d+", t) for t in tasks) and len(set(tasks)) == len(RUNS), tasks
    assert {t.split("_")[0] for t in tasks} <= ids


def test_sweep_runs_as_real_sbatch_jobs(slurm_sweep):
    wd, proc, _ = slurm_sweep
    ids = []
    for run in RUNS:
        assert (wd / "results" / run / "summary.json").is_file(), run
        meta = json.loads((wd / "results" / run / "meta.json").read_text())
        assert meta["slurm_job_id"], run
        ids.append(meta["slurm_job_id"])
        assert "step 12/12" in (wd / "results" / run / "logs" / "train.log").read_text()  # logs in the run folder
    assert len(set(ids)) == len(RUNS), ids
    with open(wd / "results/sweeps/slurm/comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run_name"] for r in rows) == RUNS and {r["status"] for r in rows} == {"completed"}
    assert all(r["slurm_job_ids"] for r in rows)
    for r in rows:  # issue 26.3: each run's cost as Slurm accounted it (training's jobs + its evaluate job)
        slurm = json.loads((wd / "results" / r["run_name"] / "summary.json").read_text())["slurm"]
        assert slurm["jobs"] >= 2 and slurm["elapsed_seconds"] > 0 and slurm["cpu_hours"] > 0, slurm
        assert float(r["slurm_seconds"]) == slurm["elapsed_seconds"] and float(r["peak_rss_mb"]) > 0
    assert "Slurm cost of 6 run(s)" in proc.stdout
    # the sbatch line carries the workflow profile's GPU request
    assert "--gpus=1" in proc.stdout or "gpu" in proc.stdout


def test_halving_sweep_runs_through_slurm(slurm_sweep):
    wd, _, proc = slurm_sweep
    decision = json.loads((wd / "results/sweeps/slurmhalf/halving/rung1.json").read_text())
    assert decision["entered"] == 2 and len(decision["kept"]) == len(decision["stopped"]) == 1
    assert "rule train_rung" in proc.stdout or "train_rung" in jobs_run(proc.stdout)
    for run, (status, step) in {decision["kept"][0]: ("completed", 12), decision["stopped"][0]: ("stopped", 6)}.items():
        summary = json.loads((wd / "results" / run / "summary.json").read_text())
        meta = json.loads((wd / "results" / run / "meta.json").read_text())
        assert (summary["status"], meta["global_step"], summary["halving"]["step"]) == (status, step, step)
        assert meta["slurm_job_id"] and json.loads((wd / "results" / run / "rungs" / "6.json").read_text())


def test_single_target_through_slurm_plans_only_that_run(slurm_sweep):
    """`snakemake results/<run>/summary.json` through the Slurm profile, the run's folder gone: that run's jobs
    and no other's (that planned jobs run as real sbatch jobs is the fixture's part; planning is enough here)."""
    wd, _, _ = slurm_sweep
    run = wd / "results" / RUNS[0]
    run.rename(run.with_name("aside"))
    try:
        proc = snakemake(wd, *SLURM, "-n", targets=[f"results/{RUNS[0]}/summary.json"], timeout=300)
    finally:
        run.with_name("aside").rename(run)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert sorted(jobs_run(proc.stdout)) == ["evaluate", "link_checkpoint", "run_config", "train"]
    assert all(r not in proc.stdout for r in RUNS[1:]), proc.stdout[-4000:]


def test_slurm_arrays_bench_dry_run(tmp_path):
    """bench/slurm_arrays.py does not rot (tests/test_bench.py: ON_SLURM): 2 runs as arrays, counted by sacct."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench/slurm_arrays.py"), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    # prepare_data + 2 train + 2 evaluate tasks, in at most 4 ids (the train tasks share one)
    assert re.search(r"^\| 2 \| arrays \| 5 \| [1-4] \| \d+ \| \d+ \|$", proc.stdout, re.M), proc.stdout


def test_real_failure_is_reported_and_others_complete(tmp_path):
    """A run whose data file disappears before its jobs start fails (its prepare_data job, naming the file);
    keep-going finishes the rest."""
    data = tmp_path / "data2"
    data.mkdir()
    for split in ("train", "validation", "test"):
        shutil.copy(REPO / "data/demo" / f"{split}.jsonl", data / f"{split}.jsonl")
    shutil.copy(data / "train.jsonl", data / "train_b.jsonl")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "sweeps": {
                    "fail": {
                        "base": "config/tiny_run.yaml",
                        "grid": {"data.train_file": [str(data / "train.jsonl"), str(data / "train_b.jsonl")]},
                        "set": {"evaluation.bertscore_model": None},
                    }
                }
            }
        )
    )
    wd = make_workdir(tmp_path / "wd", sweep)
    (data / "train_b.jsonl").unlink()  # after the sweep was written, before any job starts
    proc = snakemake(wd, *SLURM, timeout=420)
    assert proc.returncode != 0
    bad = [r for r in os.listdir(wd / "results") if r.endswith("train-b")]
    assert len(bad) == 1, os.listdir(wd / "results")
    assert "rule prepare_data" in proc.stdout and "results/prepared/logs/" in proc.stdout  # the job and its log
    good = [r for r in os.listdir(wd / "results") if r.startswith("fail_") and r != bad[0]]
    assert len(good) == 1 and (wd / "results" / good[0] / "summary.json").is_file()
    out = run_cli(
        "aggregate.py",
        "--sweep",
        "fail",
        "--config",
        wd / "config/config.yaml",
        "--results",
        wd / "results",
        "--format",
        "csv",
        cwd=wd,
        check=True,
    )
    status = {r["run_name"]: r for r in csv.DictReader(out.stdout.splitlines())}
    assert status[bad[0]]["status"] == "failed" and "train_b.jsonl" in status[bad[0]]["reason"]
    assert status[good[0]]["status"] == "completed"


def test_time_limit_kill_resumes_to_the_same_weights(tmp_path):
    """Training longer than its 1-minute Slurm limit checkpoints and stops before Slurm kills it
    (LEDSWEEP_STOP_BEFORE_END seconds before the job's end time), the job fails, and Snakemake's
    retries resume it until it ends with the weights of an uninterrupted run."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "sweeps": {
                    "limit": {
                        "base": str(REPO / "tests/configs/tiny_run.yaml"),
                        "grid": {"seed": [1]},
                        "set": {
                            "training.max_steps": 600,
                            "training.save_steps": 100000,
                            "training.eval_steps": None,
                            "training.logging_steps": 250,
                            "data.max_train_samples": 256,
                            "evaluation.bertscore_model": None,
                        },
                    }
                }
            }
        )
    )
    wd = make_workdir(tmp_path / "wd", sweep)
    from ledsweep.config import dump_yaml, load_yaml
    from ledsweep.sweep import load_sweeps

    # the uninterrupted reference: the same resolved config, run directly with the same thread count,
    # alongside the Slurm jobs
    resolved = load_sweeps(load_yaml(sweep))["limit"].runs["limit_seed1"].config
    (tmp_path / "ref.yaml").write_text(dump_yaml({**resolved, "output_dir": str(tmp_path / "ref")}))
    reference = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts/train_baseline.py"),
            "--config",
            str(tmp_path / "ref.yaml"),
            "--threads",
            "2",
            "--stage",
            "train",
        ],
        cwd=wd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = snakemake(
        wd,
        *SLURM,
        "--set-resources",
        "train:runtime=1",
        "--retries",
        "6",
        timeout=600,
        env={"LEDSWEEP_STOP_BEFORE_END": "25"},
    )
    assert reference.wait(timeout=300) == 0
    assert proc.returncode == 0, proc.stdout[-8000:]
    run = wd / "results" / "limit_seed1"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumes"] >= 1 and len(set(meta["slurm_job_ids"])) >= 2, meta
    stops = [a.get("stopped") for a in meta["attempt_history"]]
    assert "job end time near" in stops, meta["attempt_history"]  # it stopped itself, before Slurm's kill
    assert sha256_file(run / "checkpoint/model.safetensors") == sha256_file(
        tmp_path / "ref/limit_seed1/checkpoint/model.safetensors"
    )


def test_two_processes_in_one_slurm_job(tmp_path):
    """`ddp_procs: 2` (profiles/default: the CI layout): the train job starts torchrun with 2 gloo processes
    inside its one Slurm job (1 thread each on the 2-CPU node); meta.json has the job id and world size 2."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "sweeps": {
                    "ddp": {
                        "base": "config/tiny_run.yaml",
                        "grid": {"seed": [1]},
                        "set": {"training.per_device_train_batch_size": 4, "evaluation.bertscore_model": None},
                    }
                }
            }
        )
    )
    wd = make_workdir(tmp_path / "wd", sweep)
    proc = snakemake(
        wd,
        *SLURM,
        "--set-resources",
        "train:ddp_procs=2",
        targets=["results/ddp_seed1/meta.json"],  # train + link_checkpoint: evaluation is one process anyway
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-8000:]
    meta = json.loads((wd / "results/ddp_seed1/meta.json").read_text())
    assert meta["slurm_job_id"] and meta["world_size"] == 2 and len(meta["rank_devices"]) == 2, meta
    assert meta["effective_batch_size"] == 8 and meta["global_step"] == 12
    log = (wd / "results/ddp_seed1/logs/train.log").read_text()
    assert "torch.distributed.run --standalone --nproc-per-node=2" in log and "step 12/12" in log


def our_jobs() -> dict[str, str]:
    """Snakemake's Slurm jobs in the queue (their comment names the rule): job id -> state."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True, timeout=30).stdout
    return {i: state for i, comment, state in (ln.split("|") for ln in out.splitlines()) if comment.startswith("rule_")}


def wait_for(what, timeout: float = 120, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what.__doc__ or what}"
        time.sleep(every)
    return found


@pytest.mark.parametrize("leave", [False, True])
def test_sigterm_ends_a_sweep_with_pending_jobs_within_30_s(tmp_path, leave):
    """Issue 26.4: with its first job pending (the node is full), SIGTERM to snakemake cancels the sweep's
    queued jobs and exits within 30 s; with LEDSWEEP_LEAVE_JOBS=1 it exits as quickly and leaves them queued.
    (Snakemake's own SIGTERM handler waited for every running job, pending ones included.)"""
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-c", "2", "-t", "10", "--wrap", "sleep 600"], capture_output=True, text=True
    ).stdout.strip()
    try:
        wait_for(lambda: subprocess.run(["squeue", "-h", "-j", blocker, "-o", "%T"], capture_output=True,
                                        text=True).stdout.strip() == "RUNNING")  # fmt: skip
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text("sweeps:\n  term:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1]\n")
        wd = make_workdir(tmp_path / "wd", sweep)
        env = {**os.environ, "LEDSWEEP_LEAVE_JOBS": "1" if leave else "0"}
        with open(tmp_path / "snakemake.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "snakemake", *SLURM], cwd=wd, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            pending = wait_for(lambda: {i for i, s in our_jobs().items() if s == "PENDING"}, timeout=180)
            t0 = time.monotonic()
            proc.send_signal(15)
            rc = proc.wait(timeout=60)
            seconds = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
        out = (tmp_path / "snakemake.log").read_text()
        assert seconds < 30 and rc != 0, (seconds, rc, out[-3000:])
        left = set(our_jobs()) & pending
        if leave:
            assert left == pending and "cluster jobs left queued" in out, out[-3000:]
            subprocess.run(["scancel", *left], check=True)
        else:
            assert not left and "Terminating processes on user request" in out, out[-3000:]
    finally:
        subprocess.run(["scancel", blocker])


def test_a_request_no_partition_can_run_is_refused_before_submission(tmp_path):
    """Issue 26.2: profiles/slurm alone on the 2-CPU CI node: prepare_data asks for 8 CPUs. It used to sit in
    PENDING (PartitionConfig) while Snakemake waited without a word; now nothing is submitted and snakemake
    exits non-zero within a minute, naming the rule, the resource and the most a partition offers."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("sweeps:\n  big:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1]\n")
    wd = make_workdir(tmp_path / "wd", sweep)
    before = set(our_jobs())
    t0 = time.monotonic()
    proc = snakemake(wd, "--profile", "profiles/slurm", timeout=120)
    seconds = time.monotonic() - t0
    assert proc.returncode != 0 and seconds < 60, (seconds, proc.stdout[-3000:])
    assert "rule prepare_data asks for 8 CPUs (cpus); the most a partition offers is 2 (partition debug)" in proc.stdout
    assert set(our_jobs()) <= before  # nothing was submitted


def test_job_arrays_with_a_jobs_limit_below_the_sweep_are_refused_before_submission(tmp_path):
    """Issue 26: with slurm-array-jobs, a `jobs` limit below the sweep's Slurm job count hangs the plugin (2.8.0,
    its issue 473: a 50-run sweep under `jobs: 50` stopped submitting with 22 evaluate jobs left). The workflow
    refuses at once, naming both numbers, and submits nothing."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("sweeps:\n  many:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1, 2, 3]\n")
    wd = make_workdir(tmp_path / "wd", sweep)
    before = set(our_jobs())
    proc = snakemake(wd, *SLURM, "--jobs", "4", timeout=120)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "7 Slurm jobs to run, 6 of them as job arrays" in proc.stdout and "but jobs is 4" in proc.stdout
    assert "Set jobs to at least 7 in your profile" in proc.stdout
    assert set(our_jobs()) <= before  # nothing was submitted
