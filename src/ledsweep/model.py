"""Build a from-scratch LED or load a pretrained one; global attention on the first token."""

from __future__ import annotations

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
        if not (Path(name).expanduser() / "config.json").is_file():
            raise ConfigError(f"model.name: {name} is not a model folder (no config.json)")
        return
    from transformers import AutoConfig

    try:
        mcfg = AutoConfig.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code)
    except (OSError, ValueError) as e:
        raise ConfigError(f"model.name: cannot load '{name}' (hub id not cached, or offline?): {e}") from None
    enc = getattr(mcfg, "max_encoder_position_embeddings", None) or getattr(mcfg, "max_position_embeddings", None)
    dec = getattr(mcfg, "max_decoder_position_embeddings", None) or getattr(mcfg, "max_position_embeddings", None)
    limits = {k: v for k, v in (("encoder", enc), ("decoder", dec)) if isinstance(v, int)}
    problems = position_limit_problems(cfg, (limits, f"the config of {name}")) if limits else []
    if problems:
        raise ConfigError("; ".join(problems))


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


def set_threads(cfg: RunConfig, fallback: int | None = None) -> int:
    """torch threads: the config's num_threads, else `fallback` (the job's CPUs), else this process's CPUs
    (shared by the processes torchrun started on this node)."""
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "LOCAL_RANK" in os.environ else 1
    n = cfg.num_threads or fallback or max(1, len(os.sched_getaffinity(0)) // local)
    torch.set_num_threads(n)
    return n
