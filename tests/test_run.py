"""One run end to end: the standard run folder, reproducibility, resume, signals, inference."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess

import pytest
import yaml
from conftest import PY, REPO, run_cli, summary_metrics, write_config

from ledsweep.runfolder import COMPLETE_MARKER, sha256_file


def weights_sha(run_dir):
    return sha256_file(run_dir / "checkpoint" / "model.safetensors")


def test_run_folder_is_complete(baseline):
    assert {p.name for p in baseline.iterdir()} >= {
        "config.yaml",
        "meta.json",
        "summary.json",
        "checkpoint",
        "predictions.jsonl",
        "log_history.jsonl",
        "requirements.txt",
        "resume",
    }
    assert not (baseline / "failure.json").exists()
    summary = json.loads((baseline / "summary.json").read_text())
    m = summary["metrics"]
    for key in (
        "loss",
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "bertscore",
        "bertscore_precision",
        "bertscore_recall",
    ):
        assert isinstance(m[key], float), key
        assert key == "loss" or 0.0 <= m[key] <= 1.0, (key, m[key])
    assert summary["runtime_seconds"] > 0 and summary["end_time"]
    meta = json.loads((baseline / "meta.json").read_text())
    for key in (
        "start_time",
        "device",
        "hostname",
        "slurm_job_id",
        "python",
        "versions",
        "git_commit",
        "git_dirty",
        "config_sha256",
        "data_sha256",
        "command",
        "num_threads",
        "weights_sha256",
    ):
        assert key in meta, key
    assert meta["start_time"][-6] in "+-"  # ISO 8601 with zone
    assert meta["versions"]["torch"].startswith("2.13.0")
    assert meta["weights_sha256"] == sha256_file(baseline / "checkpoint" / "model.safetensors")
    assert len(meta["data_sha256"]) == 3
    # the resolved config has every default filled in
    cfg = yaml.safe_load((baseline / "config.yaml").read_text())
    assert cfg["training"]["optim"] == "adamw_torch_fused" and cfg["evaluation"]["bertscore_num_layers"] == 6
    # one log entry per logging step, with the loss
    history = [json.loads(line) for line in (baseline / "log_history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "loss" in h] == [4, 8, 12]
    steps = [json.loads(line) for line in (baseline / "step_losses.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 13)) and all(s["loss"] > 0 for s in steps)
    # every periodic checkpoint left behind is complete
    for ckpt in (baseline / "resume").glob("checkpoint-*"):
        assert (ckpt / COMPLETE_MARKER).is_file()
    assert len((baseline / "predictions.jsonl").read_text().splitlines()) == 16


def test_checkpoint_loads_with_auto_classes(baseline):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    ckpt = baseline / "checkpoint"
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in ckpt.iterdir()
    }
    model = AutoModelForSeq2SeqLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert model.config.model_type == "led" and len(tok) == model.config.vocab_size


def test_meta_records_the_sha256_of_the_config_yaml_bytes(baseline):
    """The tables check a run's config.yaml by these bytes, without a YAML parse (ledsweep.status)."""
    meta = json.loads((baseline / "meta.json").read_text())
    assert meta["config_yaml_sha256"] == hashlib.sha256((baseline / "config.yaml").read_bytes()).hexdigest()


@pytest.mark.slow
def test_rerun_from_run_config_reproduces_bitwise(baseline, tmp_path):
    """--config results/<run>/config.yaml in a fresh process: same config hash, metrics and weights."""
    proc = run_cli("train_baseline.py", "--config", baseline / "config.yaml", "--output-dir", tmp_path, check=True)
    repro = tmp_path / "tiny_run"
    meta_a = json.loads((baseline / "meta.json").read_text())
    meta_b = json.loads((repro / "meta.json").read_text())
    assert meta_a["config_sha256"] == meta_b["config_sha256"]
    assert summary_metrics(baseline) == summary_metrics(repro)  # bitwise: float equality
    assert weights_sha(baseline) == weights_sha(repro)
    assert (baseline / "predictions.jsonl").read_text() == (repro / "predictions.jsonl").read_text()
    assert "step 4/12 | loss" in proc.stderr and "tok/s" in proc.stderr


@pytest.mark.slow
def test_different_seed_gives_different_weights(baseline, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path, seed=2, training__max_steps=2, evaluation__bertscore_model=None)
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    assert weights_sha(tmp_path / "tiny_run") != weights_sha(baseline)


def test_finished_run_is_not_overwritten(baseline, prepared):
    before = (baseline / "summary.json").read_bytes()
    proc = run_cli(
        "train_baseline.py", "--config", baseline / "config.yaml", "--output-dir", baseline.parent, prepared=prepared
    )
    assert proc.returncode == 2
    assert "summary.json exists" in proc.stderr and str(baseline) in proc.stderr
    assert (baseline / "summary.json").read_bytes() == before


def test_killed_after_first_checkpoint_resumes_to_same_weights(baseline, prepared, tmp_path):
    """The fast tier's kill-and-resume: SIGKILL between two checkpoints, then the same command again."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path)
    killed = run_cli("train_baseline.py", "--config", cfg, env={"LEDSWEEP_FAULT": "after_save:4"}, prepared=prepared)
    assert killed.returncode == -signal.SIGKILL
    run = tmp_path / "tiny_run"
    assert not (run / "summary.json").exists() and (run / "resume" / "checkpoint-4" / COMPLETE_MARKER).exists()
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    assert not list(run.glob(".*.tmp")), "temp files left behind"
    assert weights_sha(run) == weights_sha(baseline)
    assert summary_metrics(run) == summary_metrics(baseline)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumes"] == 1 and meta["attempts"] == 2
    assert (run / "step_losses.jsonl").read_text() == (baseline / "step_losses.jsonl").read_text()


@pytest.mark.slow
def test_half_written_checkpoint_is_skipped(baseline, prepared, tmp_path):
    """Killed while checkpoint-8 is written (no completeness marker): resume from checkpoint-4."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path)
    assert (
        run_cli("train_baseline.py", "--config", cfg, env={"LEDSWEEP_FAULT": "save:8"}, prepared=prepared).returncode
        < 0
    )
    run = tmp_path / "tiny_run"
    assert (run / "resume" / "checkpoint-8").is_dir() and not (
        run / "resume" / "checkpoint-8" / COMPLETE_MARKER
    ).exists()
    proc = run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    assert "resuming from checkpoint-4" in proc.stderr and "skipping incomplete checkpoint" in proc.stderr
    assert weights_sha(run) == weights_sha(baseline)
    assert (run / "step_losses.jsonl").read_text() == (baseline / "step_losses.jsonl").read_text()


@pytest.mark.slow
def test_sigterm_saves_a_resume_checkpoint(tmp_path):
    cfg = write_config(
        tmp_path / "c.yaml",
        tmp_path,
        training__max_steps=400,
        training__save_steps=1000,
        training__eval_steps=None,
        training__logging_steps=1,
    )
    proc = subprocess.Popen(
        [PY, str(REPO / "scripts" / "train_baseline.py"), "--config", str(cfg)], stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:  # wait until training runs
        if "step 3/400" in line:
            break
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, err
    saved = list((tmp_path / "tiny_run" / "resume").glob("checkpoint-*"))
    assert len(saved) == 1 and (saved[0] / COMPLETE_MARKER).exists(), err
    assert "SIGTERM received" in err
    assert not (tmp_path / "tiny_run" / "summary.json").exists()


def test_summarize_from_checkpoint(baseline, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(
            json.dumps({"document": d}) + "\n"
            for d in [
                "Maria Okafor, the mayor of Lisbon, opened a new library on Tuesday.",
                "On Friday, Oslo chief Ivan Berg closed a new bridge.",
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    run_cli("summarize.py", "--checkpoint", baseline / "checkpoint", "--input", docs, "--output", out, check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(isinstance(r["summary"], str) for r in rows)
    # same text as the evaluation produced for the same document
    pred = json.loads((baseline / "predictions.jsonl").read_text().splitlines()[0])
    test_doc = json.loads((REPO / "data/demo/test.jsonl").read_text().splitlines()[0])["document"]
    docs.write_text(json.dumps({"document": test_doc}) + "\n")
    run_cli("summarize.py", "--checkpoint", baseline / "checkpoint", "--input", docs, "--output", out, check=True)
    assert json.loads(out.read_text())["summary"] == pred["prediction"]
