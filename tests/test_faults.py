"""Fault injection: a run killed anywhere ends bitwise equal to an uninterrupted one; no state looks
complete when it is not; numerical faults, a full disk and corrupt checkpoints are handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from conftest import PY, REPO, run_cli, summary_metrics, write_config

from ledsweep.runfolder import sha256_file

pytestmark = pytest.mark.slow

# (fault point, where): every save of the tiny run (save_steps 4, max_steps 12, 8 steps per epoch) while it is
# written and just after, and the stages around them; "after_save:4" and "save:8" are tests/test_run.py's
KILL_POINTS = [
    ("step:2", "before the first checkpoint"),
    ("save:4", "while the first checkpoint is being written"),
    ("after_save:8", "just after the second checkpoint"),
    ("save:12", "while the last checkpoint is being written"),
    ("after_save:12", "just after the last checkpoint: training is finished (issue 21.1)"),
    ("evaluate", "during evaluation: training is finished (issue 21.1)"),
    ("write:summary.json", "while summary.json is being written"),
]


def tree_hashes(folder):
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point,where", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_kill_anywhere_then_rerun_is_bitwise_equal(point, where, baseline, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path)
    killed = run_cli("train_baseline.py", "--config", cfg, env={"LEDSWEEP_FAULT": point}, prepared=prepared)
    assert killed.returncode == -signal.SIGKILL, f"not killed {where}: {killed.stderr[-2000:]}"
    run = tmp_path / "tiny_run"
    assert not (run / "summary.json").exists(), f"looks complete after a kill {where}"
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    assert summary_metrics(run) == summary_metrics(baseline)
    assert sha256_file(run / "checkpoint/model.safetensors") == sha256_file(baseline / "checkpoint/model.safetensors")
    # the same 12 steps, never a 13th (a resume from the finished checkpoint-12 used to train one more)
    assert (run / "step_losses.jsonl").read_text() == (baseline / "step_losses.jsonl").read_text()
    assert json.loads((run / "meta.json").read_text())["global_step"] == 12
    assert not list(run.glob(".*.tmp")), "temp files left behind"


def test_truncated_checkpoint_shard_is_skipped(baseline, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path)
    run_cli("train_baseline.py", "--config", cfg, env={"LEDSWEEP_FAULT": "after_save:8"}, prepared=prepared)
    shard = tmp_path / "tiny_run/resume/checkpoint-8/model.safetensors"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # marker present, weights truncated
    proc = run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    assert "skipping incomplete checkpoint checkpoint-8: model.safetensors unreadable" in proc.stderr
    assert "resuming from checkpoint-4" in proc.stderr
    assert summary_metrics(tmp_path / "tiny_run") == summary_metrics(baseline)


def test_nan_loss_fails_the_run_with_a_reason(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path, training__learning_rate=1.0e30, training__max_grad_norm=0.0)
    proc = run_cli("train_baseline.py", "--config", cfg)
    assert proc.returncode == 1
    run = tmp_path / "tiny_run"
    failure = json.loads((run / "failure.json").read_text())
    assert failure["status"] == "failed" and failure["stage"] == "train"
    assert "NonFiniteLoss: training loss is" in failure["reason"]
    assert not (run / "summary.json").exists() and not (run / "checkpoint").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs (root only): room for one tiny run and not for a second."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_disk_full_fails_clearly_and_keeps_finished_runs(small_disk, tmp_path):
    first = write_config(tmp_path / "a.yaml", small_disk, evaluation__bertscore_model=None)
    run_cli("train_baseline.py", "--config", first, check=True)
    done = small_disk / "tiny_run"
    before = tree_hashes(done)
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * max(free - 200_000, 0))  # leave ~200 kB: less than one checkpoint
    second = write_config(tmp_path / "b.yaml", small_disk, run_name="second", evaluation__bertscore_model=None)
    proc = run_cli("train_baseline.py", "--config", second)
    assert proc.returncode != 0
    assert "No space left on device" in proc.stderr
    assert not (small_disk / "second" / "summary.json").exists()
    assert tree_hashes(done) == before, "a finished run changed"


def test_disk_full_while_preparing_data_says_so(small_disk, tmp_path):
    """issue 21: a full disk while preparing data was reported as `data.train_file: cannot read ...`."""
    from ledsweep.config import ConfigError, load_config
    from ledsweep.prepare import ensure_prepared

    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * max(free - 100_000, 0))  # ~100 kB left: not enough for the Arrow cache
    cfg = load_config(write_config(tmp_path / "c.yaml", tmp_path / "results"))
    with pytest.raises(OSError, match="No space left on device while preparing data.train_file in") as err:
        ensure_prepared(cfg, small_disk / "prepared", num_proc=1)
    assert not isinstance(err.value, ConfigError)
    assert not [p for p in (small_disk / "prepared").glob("*") if not p.name.startswith(".")]


def test_concurrent_runs_and_polling_aggregate_stay_consistent(tmp_path):
    """8 runs write into one results folder while scripts/aggregate.py polls it."""
    seeds = list(range(1, 9))
    sweep = tmp_path / "config.yaml"
    base = write_config(
        tmp_path / "base.yaml",
        tmp_path / "results",
        training__max_steps=4,
        training__eval_steps=None,
        evaluation__bertscore_model=None,
    )
    sweep.write_text(f"sweeps:\n  conc:\n    base: {base}\n    grid:\n      seed: {seeds}\n")
    from ledsweep.config import load_yaml
    from ledsweep.sweep import load_sweeps

    runs = load_sweeps(load_yaml(sweep), results_dir=str(tmp_path / "results"))["conc"].runs
    procs = []
    for name, run in runs.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(json.dumps(run.config))  # JSON is YAML
        procs.append(
            subprocess.Popen(
                [PY, str(REPO / "scripts/train_baseline.py"), "--config", str(cfg), "--threads", "1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    tables = 0
    while True:
        finished = all(p.poll() is not None for p in procs)
        out = run_cli(
            "aggregate.py",
            "--sweep",
            "conc",
            "--config",
            sweep,
            "--results",
            tmp_path / "results",
            "--format",
            "json",
            check=True,
        )
        rows = json.loads(out.stdout)["runs"]
        assert sorted(r["run_name"] for r in rows) == sorted(runs)
        for r in rows:
            assert r["status"] in ("missing", "pending", "running", "completed"), r
            if r["status"] == "completed":
                assert all(isinstance(r[m], float) for m in ("loss", "rouge1", "rougeL")), r
        tables += 1
        if finished:
            break
    assert all(p.returncode == 0 for p in procs)
    assert {r["status"] for r in rows} == {"completed"} and tables >= 3
