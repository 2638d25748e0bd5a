"""Successive halving through the real workflow: 4 sampled configs, rungs [20, 60], keep 0.5, on the demo data.

One sweep is killed (SIGKILL to snakemake and its jobs) during the second rung and started again; it must go on
without redoing finished work, and a survivor's final weights must equal an uninterrupted run of its config.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import PY, REPO, copy_tree, run_cli
from workflow_helpers import jobs_run, make_workdir, snakemake

from ledsweep.runfolder import sha256_file

pytestmark = pytest.mark.slow

SWEEP = {
    "sweeps": {
        "hs": {
            "base": "config/tiny_run.yaml",
            "set": {
                "num_threads": 1,  # the uninterrupted replay below runs with the same thread count
                "training.save_steps": 10,
                "training.eval_steps": 1000,
                "training.logging_steps": 10,
                "training.save_total_limit": 1,  # resume/ keeps one checkpoint: rung checkpoints must survive
                "evaluation.bertscore_model": None,  # ROUGE and loss suffice here
                "data.max_source_length": 128,
            },
            "sample": {
                "method": "sobol",
                "n": 4,
                "seed": 0,
                "space": {
                    "training.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]},
                    "training.warmup_steps": {"int": [0, 10]},
                },
            },
            "halving": {"rungs": [20, 60], "keep": 0.5, "metric": "loss"},
            "primary_metric": "loss",
        }
    }
}
RUNS = [f"hs_s{i:02d}" for i in range(4)]
# two jobs at a time on the 2 cores (each run computes on 1 thread: num_threads above)
LOCAL = ("--profile", "profiles/local", "--set-threads", "train_rung=1", "train=1", "evaluate=1", "prepare_data=1")
TARGET = "results/sweeps/hs/comparison.csv"


def _second_rung_started(work: Path, kept: list[str]) -> bool:
    """A run that went on has saved a checkpoint past the first rung (save_steps 10: step 30)."""
    return any(list((work / "results" / r / "trained" / "resume").glob("checkpoint-[3-5]0")) for r in kept)


@pytest.fixture(scope="module")
def halving_sweep(tmp_path_factory):
    """The sweep: every first-rung job killed just after its rung checkpoint (issue 21.8), then run again and
    killed during the second rung, then run to the end. Returns (workdir, the last run)."""
    work = tmp_path_factory.mktemp("halving")
    cfg = work / "sweeps.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    make_workdir(work / "w", cfg)
    work = work / "w"
    rungs = [f"results/{r}/rungs/20.json" for r in RUNS]
    first = snakemake(work, *LOCAL, "--keep-going", targets=rungs, env={"LEDSWEEP_FAULT": "after_save:20"})
    assert first.returncode != 0 and not any((work / r).exists() for r in rungs), first.stdout[-4000:]
    proc = subprocess.Popen(
        [PY, "-m", "snakemake", TARGET, *LOCAL],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    decision = work / "results/sweeps/hs/halving/rung1.json"
    deadline, killed = time.time() + 900, False
    try:
        while time.time() < deadline and proc.poll() is None:
            if decision.is_file() and _second_rung_started(work, json.loads(decision.read_text())["kept"]):
                os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started, at once
                killed = True
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None and not killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed, "the sweep ended (or timed out) before its second rung could be interrupted"
    unlock = snakemake(work, *LOCAL, "--unlock", targets=[TARGET])  # a SIGKILL leaves the lock
    assert unlock.returncode == 0, unlock.stdout[-3000:]
    again = snakemake(work, *LOCAL, targets=[TARGET], timeout=900)
    assert again.returncode == 0, again.stdout[-6000:]
    return work, again


def test_every_run_reaches_the_first_rung_and_half_go_on(halving_sweep):
    work, _ = halving_sweep
    decision = json.loads((work / "results/sweeps/hs/halving/rung1.json").read_text())
    assert decision["entered"] == 4 and decision["step"] == 20 and decision["next_step"] == 60
    assert len(decision["kept"]) == 2 and sorted(decision["kept"] + decision["stopped"]) == RUNS
    losses = [r["loss"] for r in decision["ranking"]]
    assert losses == sorted(losses) and [r["run_name"] for r in decision["ranking"][:2]] == sorted(
        decision["kept"], key=lambda n: losses[[r["run_name"] for r in decision["ranking"]].index(n)]
    )
    for run in RUNS:  # every run was scored at step 20 on the validation split
        rung = json.loads((work / "results" / run / "rungs" / "20.json").read_text())
        assert rung["step"] == 20 and rung["split"] == "validation" and rung["metrics"]["loss"] > 0
        meta = json.loads((work / "results" / run / "meta.json").read_text())
        summary = json.loads((work / "results" / run / "summary.json").read_text())
        if run in decision["kept"]:
            assert meta["global_step"] == 60 and summary["status"] == "completed"
            assert summary["halving"]["rung"] == 2
        else:
            assert meta["global_step"] == 20 and summary["status"] == "stopped"
            assert summary["halving"] == {**summary["halving"], "status": "stopped", "rung": 1, "step": 20}
            assert (work / "results" / run / "checkpoint" / "model.safetensors").is_file()
    with open(work / TARGET, newline="") as f:
        rows = {r["run_name"]: r for r in csv.DictReader(f)}
    assert {n: (r["status"], r["rung"], r["steps"]) for n, r in rows.items()} == {
        n: ("completed", "2", "60") if n in decision["kept"] else ("stopped", "1", "20") for n in RUNS
    }


def test_restart_after_kill_redoes_no_finished_work(halving_sweep):
    _, again = halving_sweep
    ran = jobs_run(again.stdout)
    assert "train_rung" not in ran and "halving_decision" not in ran and "prepare_data" not in ran
    assert ran.count("train") <= 4


def test_survivor_weights_equal_an_uninterrupted_run(halving_sweep, tmp_path):
    work, _ = halving_sweep
    kept = json.loads((work / "results/sweeps/hs/halving/rung1.json").read_text())["kept"]
    # the run whose second rung was interrupted (a checkpoint past step 20 before the kill), else the first
    run = next((r for r in kept if "resuming from checkpoint-" in _train_log(work, r)), kept[0])
    config = yaml.safe_load((work / "results" / run / "config.yaml").read_text())
    config["output_dir"] = str(tmp_path / "results")
    for split in ("train", "validation", "test"):
        config["data"][f"{split}_file"] = str(work / config["data"][f"{split}_file"])
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run_cli("train_baseline.py", "--config", tmp_path / "run.yaml", "--stage", "train", check=True)
    uninterrupted = tmp_path / "results" / run / "checkpoint" / "model.safetensors"
    assert sha256_file(work / "results" / run / "checkpoint" / "model.safetensors") == sha256_file(uninterrupted)


def _train_log(work: Path, run: str) -> str:
    path = work / "results" / run / "logs" / "train.log"
    return path.read_text() if path.is_file() else ""


def test_compare_and_plots_show_the_rung(halving_sweep, monkeypatch):
    work, _ = halving_sweep
    out = subprocess.run(
        [PY, str(REPO / "scripts" / "compare.py"), "--sweep", "hs"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    header = next(line.split() for line in out.stdout.splitlines() if "run_name" in line)
    assert "rung" in header and "steps" in header and "2 stopped" in out.stdout
    monkeypatch.chdir(work)
    from ledsweep.aggregate import collect
    from ledsweep.plots import _reached, plot_loss_curves, plot_metric_vs_key
    from ledsweep.sweep import load_sweeps

    sweep = load_sweeps(yaml.safe_load(Path("config/config.yaml").read_text()))["hs"]
    rows = collect("results", sweep)
    assert sorted({_reached(r) for r in rows}) == ["rung 1 at step 20", "rung 2 at step 60"]
    assert plot_metric_vs_key("results", sweep, "loss", "training.learning_rate", work / "m.png", rows).stat().st_size
    assert plot_loss_curves("results", sweep, work / "c.png", rows=rows).stat().st_size


def test_rung_checkpoints_survive_rotation_and_a_later_stop_uses_them(halving_sweep, tmp_path):
    """issue 21.10: lowering halving.keep after a sweep stops runs that had gone on, whose rung checkpoint
    save_total_limit had rotated away in resume/; the table then disagreed with rung1.json. The rung's
    checkpoint is kept apart (resume/rungs/): stopping a run that went on to 60 at its rung (what the train job
    does for a run the new decision stops: `finish_stopped`) gives it the rung's own weights and record.
    (issue 21.8: every rung job of the sweep was killed just after its rung checkpoint, so each rung's record,
    meta-20.json, comes from the rerun.)"""
    from ledsweep.halving import finish_stopped
    from ledsweep.runfolder import RunFolder

    work = halving_sweep[0]
    decision = json.loads((work / "results/sweeps/hs/halving/rung1.json").read_text())
    for run in RUNS:
        assert (work / "results" / run / "trained/resume/meta-20.json").is_file()
    run = decision["kept"][0]  # went on to 60 with one resume checkpoint: checkpoint-20 rotated away there
    resume = work / "results" / run / "trained" / "resume"
    assert not (resume / "checkpoint-20").exists() and (resume / "rungs/checkpoint-20/model.safetensors").is_file()
    trained = RunFolder(copy_tree(work / "results" / run / "trained", tmp_path / run / "trained"))
    finish_stopped(trained, {"status": "stopped", "rung": 1, "step": 20, "decision": "lowered keep"})
    meta = json.loads(trained.meta.read_text())
    assert meta["global_step"] == 20 and meta["halving"]["rung"] == 1
    rung = trained.resume / "rungs/checkpoint-20/model.safetensors"
    assert sha256_file(trained.checkpoint / "model.safetensors") == sha256_file(rung)
    assert [json.loads(line)["step"] for line in trained.step_losses.read_text().splitlines()] == list(range(1, 21))
