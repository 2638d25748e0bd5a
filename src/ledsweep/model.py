"""Build a from-scratch LED or load a pretrained seq2seq model (LED, BART, T5, LongT5, PEGASUS-X, ...); the
inputs only some models take (LED's global attention on the first token, its attention window)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .config import SCRATCH, ConfigError, RunConfig
from .schema import is_local_path, position_limit_problems


def check_model_source(cfg: RunConfig) -> None:
    """Fail early (before any run folder exists) on a model that cannot be loaded."""
    name = cfg.model.name
    if name == SCRATCH:
        return
    if is_local_path(name):
        config_json = Path(name).expanduser() / "config.json"
        if not config_json.is_file():
            raise ConfigError(f"model.name: {name} is not a model folder (no config.json)")
        try:
            local = json.loads(config_json.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"model.name: {config_json}: not a readable JSON model config ({e})") from None
        check_seq2seq(name, local.get("model_type"), local.get("is_encoder_decoder"))
        return
    from transformers import AutoConfig

    try:
        mcfg = AutoConfig.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot load '{name}' (hub id not cached, or offline?): {e}") from None
    check_seq2seq(name, getattr(mcfg, "model_type", None), getattr(mcfg, "is_encoder_decoder", False))
    enc = getattr(mcfg, "max_encoder_position_embeddings", None) or getattr(mcfg, "max_position_embeddings", None)
    dec = getattr(mcfg, "max_decoder_position_embeddings", None) or getattr(mcfg, "max_position_embeddings", None)
    limits = {k: v for k, v in (("encoder", enc), ("decoder", dec)) if isinstance(v, int)}
    problems = position_limit_problems(cfg, (limits, f"the config of {name}")) if limits else []
    if problems:
        raise ConfigError("; ".join(problems))


def check_seq2seq(name: str, model_type: str | None, is_encoder_decoder: bool | None) -> None:
    """A summarizer here is an encoder-decoder (AutoModelForSeq2SeqLM): refuse an encoder-only (BERT) or
    decoder-only (GPT-2) model before anything is written."""
    if not is_encoder_decoder:
        raise ConfigError(
            f"model.name: {name} is a {model_type or 'model'} without a decoder over an encoder "
            f"(is_encoder_decoder is not true); expected a seq2seq model such as LED, BART, T5, LongT5, PEGASUS-X"
        )


def resolve_precision(precision: str) -> str:
    """The training.precision a run uses here: auto = bf16 on a GPU that supports it, else fp32."""
    import torch

    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("training.precision: fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    return precision


def build_scratch(cfg: RunConfig, tokenizer):
    from transformers import LEDConfig, LEDForConditionalGeneration

    m = cfg.model
    config = LEDConfig(
        vocab_size=len(tokenizer),
        d_model=m.d_model,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        encoder_attention_heads=m.attention_heads,
        decoder_attention_heads=m.attention_heads,
        encoder_ffn_dim=m.ffn_dim,
        decoder_ffn_dim=m.ffn_dim,
        attention_window=m.attention_window,
        max_encoder_position_embeddings=m.max_encoder_position_embeddings,
        max_decoder_position_embeddings=m.max_decoder_position_embeddings,
        dropout=m.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )
    return LEDForConditionalGeneration(config)


def load_pretrained(name: str, trust_remote_code: bool = False, dtype=None, tokenizer: bool = True):
    """Model (+ tokenizer unless tokenizer=False) from a hub id or folder; weights only from safetensors."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code) if tokenizer else None
    model = AutoModelForSeq2SeqLM.from_pretrained(
        name, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=dtype
    )
    return model, tok


def configure_generation(model, cfg: RunConfig) -> None:
    gen = model.generation_config
    gen.num_beams = cfg.generation.num_beams
    gen.max_new_tokens = cfg.generation.max_new_tokens
    gen.length_penalty = cfg.generation.length_penalty
    gen.no_repeat_ngram_size = cfg.generation.no_repeat_ngram_size
    gen.max_length = None
    for key in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(gen, key, None) is None:
            setattr(gen, key, getattr(model.config, key, None))


def global_attention_mask(input_ids):
    """LED's global attention on the first (<s>) token."""
    import torch

    mask = torch.zeros_like(input_ids)
    mask[:, 0] = 1
    return mask


def pad_multiple(model) -> int | None:
    """What a batch's source length is rounded up to: LED's attention window (it pads there itself otherwise,
    and warns); None for models without one."""
    window = getattr(model.config, "attention_window", None)
    return max(window) if isinstance(window, (list, tuple)) else window


def extra_inputs(model, input_ids) -> dict:
    """Inputs that only some models take: LED's global attention mask; nothing for BART, T5, ..."""
    if getattr(model.config, "model_type", None) == "led":
        return {"global_attention_mask": global_attention_mask(input_ids)}
    return {}


def source_limit(model, tokenizer) -> int:
    """The longest input the model takes: its encoder positions where it has a limit (T5's relative positions
    have none), and the tokenizer's."""
    config = model.config
    positions = getattr(config, "max_encoder_position_embeddings", None)
    if positions is None and getattr(config, "model_type", None) != "t5":
        positions = getattr(config, "max_position_embeddings", None)
    return min(tokenizer.model_max_length, positions or 10**9)


def set_threads(cfg: RunConfig, fallback: int | None = None) -> int:
    """torch threads: the config's num_threads, else `fallback` (the job's CPUs), else this process's CPUs
    (shared by the processes torchrun started on this node)."""
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "LOCAL_RANK" in os.environ else 1
    n = cfg.num_threads or fallback or max(1, len(os.sched_getaffinity(0)) // local)
    torch.set_num_threads(n)
    return n
