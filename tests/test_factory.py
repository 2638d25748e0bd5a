"""Your own model code (issue 24.2): `model.factory` builds the model; its file's sha256 is in meta.json, a
resume and verify name a change to it; a factory that cannot be imported, returns something else or cannot
hold the configured lengths is refused before anything is written. Scratch architectures (24.3)."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import REPO, run_cli, summary_metrics, write_config

from ledsweep import cli
from ledsweep.runfolder import sha256_file

VARIANT = REPO / "examples" / "bart_variant.py"


def factory_config(tmp_path, code, out="results", **overrides):
    return write_config(
        tmp_path / f"{out}.yaml",
        tmp_path / out,
        model__factory=f"{code}:build",
        model__factory_args={"activation": "gelu_new", "embedding_gain": 0.5},
        evaluation__bertscore_model=None,
        run_name="variant",
        **overrides,
    )


def test_a_factory_model_trains_resumes_bitwise_is_recorded_and_loads_again(tmp_path, prepared, in_process):
    code = shutil.copy(VARIANT, tmp_path / "variant.py")
    cfg = factory_config(tmp_path, code)
    train = lambda config: in_process(cli.train_main, "--config", config, "--prepared-dir", prepared)  # noqa: E731
    assert train(cfg).returncode == 0
    run = tmp_path / "results" / "variant"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model_code"] == {"factory": f"{code}:build", "file": str(code), "sha256": sha256_file(code)}
    assert meta["attempt_history"][0]["model_code"]["sha256"] == sha256_file(code)
    record = json.loads((run / "checkpoint" / "ledsweep_factory.json").read_text())
    assert record["model_config"]["factory_args"] == {"activation": "gelu_new", "embedding_gain": 0.5}
    from safetensors import safe_open

    with safe_open(str(run / "checkpoint" / "model.safetensors"), framework="pt") as f:
        assert "model.encoder.layernorm_embedding.gain" in f.keys()  # BART's own class has no such weight
    assert 0 <= summary_metrics(run)["rougeL"] <= 1

    # killed after its step-4 checkpoint, resumed: the same weights as the uninterrupted run
    killed = factory_config(tmp_path, code, out="killed")
    proc = run_cli("train_baseline.py", "--config", killed, prepared=prepared, env={"LEDSWEEP_FAULT": "after_save:4"})
    assert proc.returncode != 0
    assert train(killed).returncode == 0
    resumed = tmp_path / "killed" / "variant"
    assert sha256_file(resumed / "checkpoint" / "model.safetensors") == meta["weights_sha256"]
    assert summary_metrics(resumed) == summary_metrics(run)

    # summarize builds it through the factory again (the gain is a weight from_pretrained would drop)
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"document": "the cat sat on the mat."}) + "\n")
    out = tmp_path / "summaries.jsonl"
    proc = in_process(cli.summarize_main, "--checkpoint", run / "checkpoint", "--input", docs, "--output", out)
    assert proc.returncode == 0 and len(out.read_text().splitlines()) == 1

    # another model: a resume refuses it, verify names it
    stopped = factory_config(tmp_path, code, out="stopped")
    proc = run_cli("train_baseline.py", "--config", stopped, prepared=prepared, env={"LEDSWEEP_FAULT": "after_save:4"})
    assert proc.returncode != 0
    with open(code, "a") as f:
        f.write("\n# a change to the model code\n")
    proc = train(stopped)
    assert proc.returncode == 2, proc.stderr
    assert f"the model code ({code}) changed since this run started" in proc.stderr
    proc = run_cli("verify_run.py", run, "--steps", "0", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 2 and report["verdict"] == "differs", proc.stdout
    (found,) = [d for d in report["differences"] if d["field"] == "model_code"]
    assert found["recorded"] == meta["model_code"]["sha256"] and found["now"] == sha256_file(code)


BROKEN = {
    "missing": (None, "no such file"),
    "raises": ("raise ImportError('needs a package that is not installed')\n", "cannot import"),
    "no_function": ("def other(model_config, tokenizer):\n    return None\n", "build is not defined there"),
    "not_a_model": (
        "import torch\n\ndef build(model_config, tokenizer):\n    return torch.nn.Linear(2, 2)\n",
        "returned torch.nn.modules.linear.Linear, expected a transformers.PreTrainedModel",
    ),
    "decoder_only": (
        "from transformers import GPT2Config, GPT2LMHeadModel\n\ndef build(model_config, tokenizer):\n"
        "    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2))\n",
        "is a gpt2 without a decoder over an encoder",
    ),
    "too_short": (
        "from transformers import BartConfig, BartForConditionalGeneration\n\ndef build(model_config, tokenizer):\n"
        "    return BartForConditionalGeneration(BartConfig(vocab_size=len(tokenizer), d_model=16,"
        " encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,"
        " encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128))\n",
        "data.max_source_length: 256 exceeds the model's 128 encoder positions",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_factory_is_refused_before_anything_is_written(tmp_path, prepared, in_process, case):
    source, expected = BROKEN[case]
    code = tmp_path / f"{case}.py"
    if source is not None:
        code.write_text(source)
    cfg = factory_config(tmp_path, code)
    proc = in_process(cli.train_main, "--config", cfg, "--prepared-dir", prepared)
    assert proc.returncode == 2, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "model.factory" in ln or "max_source_length" in ln)
    assert expected in line, proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("architecture", ["bart", "t5", "longt5", "pegasus_x"])
def test_scratch_builds_other_architectures_from_the_same_keys(tmp_path, prepared, in_process, architecture):
    cfg = write_config(
        tmp_path / "c.yaml",
        tmp_path / "results",
        model__architecture=architecture,
        training__max_steps=4,
        evaluation__bertscore_model=None,
        data__max_predict_samples=4,
    )
    proc = in_process(cli.train_main, "--config", cfg, "--prepared-dir", prepared)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "results" / "tiny_run"
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["model_type"] == architecture and config["d_model"] == 32
    assert summary_metrics(run)["loss"] > 0


def test_architecture_applies_only_to_a_scratch_model(tmp_path, in_process):
    cfg = write_config(
        tmp_path / "c.yaml", tmp_path / "results", model__name="facebook/bart-base", model__architecture="t5"
    )
    proc = in_process(cli.train_main, "--config", cfg)
    assert proc.returncode == 2
    assert "model.architecture: 't5' builds a scratch model; it applies only with model.name: scratch" in proc.stderr
    assert not (tmp_path / "results").exists()
