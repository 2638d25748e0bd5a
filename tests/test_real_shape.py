"""The real model's shape (issue 27): config/examples/led_base_shape.yaml is led-base-16384 sized and valid, its
long corpus is made deterministically at run time, and LED's window and position logic work at the size users
run (a 1,024-token window over 16,384-token inputs: train, kill, resume bitwise, generate)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PY, REPO, run_cli, summary_metrics, write_config

from ledsweep.config import load_config
from ledsweep.data import MANIFEST
from ledsweep.runfolder import sha256_file

SHAPE = REPO / "config" / "examples" / "led_base_shape.yaml"
MAKE_DATA = REPO / "scripts" / "make_demo_data.py"


def test_the_shape_config_is_led_base_16384_and_valid_offline():
    """The sizes of allenai/led-base-16384's config.json, and its 161.8 M parameters (built on the meta device)."""
    import torch
    from transformers import LEDForConditionalGeneration

    from ledsweep.scratch import ARCHITECTURES

    cfg = load_config(SHAPE)
    m = cfg.model
    assert (m.name, m.architecture, m.d_model, m.encoder_layers, m.decoder_layers) == ("scratch", "led", 768, 6, 6)
    assert (m.attention_heads, m.ffn_dim, m.attention_window, m.vocab_size) == (12, 3072, 1024, 50265)
    assert (m.max_encoder_position_embeddings, m.max_decoder_position_embeddings) == (16384, 1024)
    assert (cfg.data.max_source_length, cfg.data.max_target_length) == (16384, 256)
    assert (cfg.generation.num_beams, cfg.generation.max_new_tokens) == (4, 256)
    make_config, _ = ARCHITECTURES["led"]
    ids = dict(vocab_size=m.vocab_size, pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2)
    with torch.device("meta"):
        model = LEDForConditionalGeneration(make_config(m, ids))
    assert sum(p.numel() for p in model.parameters()) == 161_844_480


def test_long_corpus_is_deterministic_and_the_demo_data_unchanged(tmp_path):
    """--long-words writes the same bytes on every run; the default still writes the committed data/demo/."""
    for name in ("a", "b"):
        cmd = [PY, MAKE_DATA, "--long-words", "400", "--sizes", "2,1,1", "--out", tmp_path / name]
        subprocess.run(cmd, check=True, capture_output=True)
    for split in ("train", "validation", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["document"].split()) >= 400 for r in rows)
    lead, *topics = rows[0]["summary"].split(". ")
    assert topics and all(t.rstrip(".") in rows[0]["document"] for t in topics)  # the sections' topic sentences
    subprocess.run([PY, MAKE_DATA, "--out", tmp_path / "demo"], check=True, capture_output=True)
    for split in ("train", "validation", "test"):
        committed = REPO / "data" / "demo" / f"{split}.jsonl"
        assert (tmp_path / "demo" / f"{split}.jsonl").read_bytes() == committed.read_bytes()


NARROW = dict(  # the tiny test LED (d_model 32), one head, with led-base's window and positions
    model__attention_heads=1,
    model__encoder_layers=1,
    model__decoder_layers=1,
    model__attention_window=1024,
    model__max_encoder_position_embeddings=16384,
    data__max_source_length=16384,
    data__max_eval_samples=1,
    data__max_predict_samples=1,
    training__per_device_train_batch_size=1,
    training__per_device_eval_batch_size=1,
    training__max_steps=2,
    training__save_steps=1,
    training__eval_steps=None,
    training__logging_steps=1,
    generation__max_new_tokens=8,
    evaluation__bertscore_model=None,
)


@pytest.mark.slow
def test_window_1024_at_16384_tokens_trains_resumes_bitwise_and_generates(tmp_path):
    corpus = tmp_path / "corpus"
    run_cli("make_demo_data.py", "--long-words", "5000", "--sizes", "4,1,1", "--out", corpus, check=True)
    files = {f"data__{split}_file": str(corpus / f"{split}.jsonl") for split in ("train", "validation", "test")}
    prepared = tmp_path / "prepared"
    ref = write_config(tmp_path / "ref.yaml", tmp_path / "ref", **NARROW, **files)
    run_cli("train_baseline.py", "--config", ref, check=True, timeout=600, prepared=prepared)
    run = tmp_path / "ref" / "tiny_run"
    lengths = json.loads(next(prepared.glob(f"*/{MANIFEST}")).read_text())["token_lengths"]
    assert lengths["train"]["source"]["p50"] > 16384 and lengths["train"]["source"]["truncated_share"] == 1.0
    log = [json.loads(x) for x in (run / "log_history.jsonl").read_text().splitlines()]
    assert log[0]["num_input_tokens_seen"] == 16384  # one full 16,384-token input per step
    assert json.loads((run / "meta.json").read_text())["global_step"] == 2 and summary_metrics(run)["loss"] > 0

    cut = write_config(tmp_path / "cut.yaml", tmp_path / "cut", **NARROW, **files)
    train_only = ("--config", cut, "--stage", "train")  # the weights are the check; evaluation is the same code
    killed = run_cli("train_baseline.py", *train_only, prepared=prepared, env={"LEDSWEEP_FAULT": "after_save:1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    run_cli("train_baseline.py", *train_only, check=True, timeout=600, prepared=prepared)
    resumed = tmp_path / "cut" / "tiny_run"
    assert json.loads((resumed / "meta.json").read_text())["resumes"] == 1
    assert sha256_file(resumed / "checkpoint/model.safetensors") == sha256_file(run / "checkpoint/model.safetensors")

    out = run_cli("summarize.py", "--checkpoint", run / "checkpoint", "--input", corpus / "test.jsonl", check=True)
    [line] = out.stdout.splitlines()
    assert json.loads(line)["document"] == json.loads((corpus / "test.jsonl").read_text())["document"]
