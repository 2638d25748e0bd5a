"""Beyond LED (issue 24): any encoder-decoder that AutoModelForSeq2SeqLM loads trains, evaluates and
summarizes through the same code; inputs only LED takes (global attention, its window) go to LED alone."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, summary_metrics, tiny_model, write_config

from ledsweep.runfolder import sha256_file


def tiny_of(kind: str, folder, baseline) -> str:
    """A tiny model of `kind` beside the scratch tokenizer of the baseline run (offline, a second)."""
    from transformers import AutoTokenizer

    return tiny_model(kind, folder, AutoTokenizer.from_pretrained(str(baseline / "checkpoint")))


def test_a_bart_folder_trains_evaluates_and_summarizes(tmp_path, prepared, baseline):
    """Issue 24: a local BART folder failed at once ('BartConfig' object has no attribute 'attention_window')."""
    model = tiny_of("bart", tmp_path / "bart", baseline)
    cfg = write_config(tmp_path / "bart.yaml", tmp_path / "results", model__name=model, run_name="bart_run")
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    run = tmp_path / "results" / "bart_run"
    meta = json.loads((run / "meta.json").read_text())
    assert (
        meta["global_step"] == 12
        and json.loads((run / "checkpoint" / "config.json").read_text())["model_type"] == "bart"
    )
    metrics = summary_metrics(run)
    assert 0 <= metrics["rougeL"] <= 1 and metrics["loss"] > 0
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"document": "the cat sat on the mat."}) + "\n")
    out = run_cli("summarize.py", "--checkpoint", run / "checkpoint", "--input", docs, check=True)
    assert json.loads(out.stdout.splitlines()[0])["document"] == "the cat sat on the mat."
    # the same config again: the same weights (a new model family keeps the determinism promise)
    again = write_config(tmp_path / "again.yaml", tmp_path / "again", model__name=model, run_name="bart_run")
    run_cli("train_baseline.py", "--config", again, check=True, prepared=prepared)
    assert sha256_file(tmp_path / "again" / "bart_run" / "checkpoint" / "model.safetensors") == meta["weights_sha256"]


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_encoder_only_and_decoder_only_models_are_refused_before_anything_is_written(tmp_path, kind, baseline):
    from transformers import AutoModel, BertConfig, GPT2Config

    config = (
        BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        if kind == "bert"
        else GPT2Config(vocab_size=400, n_embd=32, n_layer=1, n_head=2)
    )
    AutoModel.from_config(config).save_pretrained(str(tmp_path / kind))
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", model__name=str(tmp_path / kind))
    proc = run_cli("train_baseline.py", "--config", cfg)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: model.name: {tmp_path / kind} is a {kind} without a decoder over an encoder")
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["t5", "longt5", "pegasus_x"])
def test_t5_longt5_pegasus_x_train_resume_bitwise_evaluate_and_summarize(tmp_path, prepared, baseline, kind):
    model = tiny_of(kind, tmp_path / kind, baseline)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", model__name=model, run_name=kind)
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    run = tmp_path / "results" / kind
    assert json.loads((run / "meta.json").read_text())["global_step"] == 12 and summary_metrics(run)["loss"] > 0
    killed = write_config(tmp_path / "k.yaml", tmp_path / "killed", model__name=model, run_name=kind)
    proc = run_cli("train_baseline.py", "--config", killed, prepared=prepared, env={"LEDSWEEP_FAULT": "after_save:4"})
    assert proc.returncode != 0
    run_cli("train_baseline.py", "--config", killed, check=True, prepared=prepared)
    resumed = tmp_path / "killed" / kind
    assert json.loads((resumed / "meta.json").read_text())["resumes"] == 1
    assert sha256_file(resumed / "checkpoint" / "model.safetensors") == sha256_file(
        run / "checkpoint" / "model.safetensors"
    )
    assert summary_metrics(resumed) == summary_metrics(run)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"document": "the cat sat on the mat."}) + "\n")
    out = run_cli("summarize.py", "--checkpoint", run / "checkpoint", "--input", docs, check=True)
    assert len(out.stdout.splitlines()) == 1
