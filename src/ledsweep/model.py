"""The model of a run: built by your code (`factory`), new from the sizes (`scratch`), or a pretrained seq2seq
model (LED, BART, T5, LongT5, PEGASUS-X, ...); loaded again from a trained checkpoint; the inputs only some
models take (LED's global attention on the first token, its attention window)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from . import factory, scratch
from .config import SCRATCH, ConfigError, RunConfig
from .schema import is_local_path, position_limit_problems

log = logging.getLogger("ledsweep")


def check_model_source(cfg: RunConfig) -> None:
    """Fail early (before any run folder exists) on a model that cannot be loaded."""
    name = cfg.model.name
    if cfg.model.factory:  # importable and callable now; what it builds is checked when built (check_model_config)
        factory.load(cfg.model.factory)
        return
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
    check_model_config(cfg, mcfg, f"the config of {name}")


def check_seq2seq(name: str, model_type: str | None, is_encoder_decoder: bool | None, key: str = "model.name") -> None:
    """A summarizer here is an encoder-decoder (AutoModelForSeq2SeqLM): refuse an encoder-only (BERT) or
    decoder-only (GPT-2) model before anything is written."""
    if not is_encoder_decoder:
        raise ConfigError(
            f"{key}: {name} is a {model_type or 'model'} without a decoder over an encoder "
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


def new_model(cfg: RunConfig, tokenizer):
    """The model a training starts from: built by model.factory, a new one sized by the model.* keys
    (model.architecture), or the pretrained weights of model.name. Checked: an encoder-decoder whose positions
    hold the configured lengths. The caller seeds first (same seed -> same weights)."""
    m = cfg.model
    if m.factory:
        model = factory.build(m.factory, dataclasses.asdict(m), tokenizer)
        check_model_config(cfg, model.config, f"the model {m.factory} built")
    elif m.name == SCRATCH:
        model = scratch.build(m, tokenizer)
    else:
        model, _ = load_pretrained(m.name, m.trust_remote_code, tokenizer=False)
    return model


def check_model_config(cfg: RunConfig, config, where: str) -> None:
    """A model (config) we did not size: an encoder-decoder whose positions hold the configured lengths."""
    key = "model.factory" if cfg.model.factory else "model.name"
    check_seq2seq(where, getattr(config, "model_type", None), getattr(config, "is_encoder_decoder", False), key)
    limits = position_limits_of(config)
    if limits and (problems := position_limit_problems(cfg, (limits, where))):
        raise ConfigError("; ".join(problems))


def position_limits_of(config) -> dict[str, int]:
    """A model config's encoder/decoder position limits (none for relative positions: T5, LongT5)."""
    enc = getattr(config, "max_encoder_position_embeddings", None) or getattr(config, "max_position_embeddings", None)
    dec = getattr(config, "max_decoder_position_embeddings", None) or getattr(config, "max_position_embeddings", None)
    return {k: v for k, v in (("encoder", enc), ("decoder", dec)) if isinstance(v, int)}


def load_trained(folder: str | Path, cfg: RunConfig | None = None):
    """(model, tokenizer) of a trained checkpoint/ (or a resume checkpoint of `cfg`'s run): from_pretrained, or,
    for a model.factory model (the folder holds factory.RECORD_FILE, or `cfg` names a factory), the factory's
    model with the saved weights."""
    folder = Path(folder)
    recorded = folder / factory.RECORD_FILE
    if recorded.is_file():
        how = json.loads(recorded.read_text())
    elif cfg is not None and cfg.model.factory:
        how = {**factory.record(cfg.model.factory), "model_config": dataclasses.asdict(cfg.model)}
    else:
        return load_pretrained(str(folder))
    from transformers import AutoTokenizer, GenerationConfig

    now = factory.record(how["factory"])
    if now["sha256"] != how["sha256"]:
        log.warning("%s: model code changed since training (%s); building with today's", folder, now["file"])
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = factory.build(how["factory"], how["model_config"], tok)
    load_weights(model, folder / "model.safetensors")
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    model.eval()
    return model, tok


def load_weights(model, path: Path) -> None:
    """`path`'s safetensors into `model`, all of them (tied weights tied again); RuntimeError otherwise."""
    from safetensors.torch import load_file

    weights = load_file(str(path))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    model.tie_weights()
    state = model.state_dict()
    loaded = {state[k].data_ptr() for k in weights if k in state}
    untied = [k for k in missing if state[k].data_ptr() not in loaded]  # tied ones share a loaded tensor
    if unexpected or untied:
        raise RuntimeError(f"{path}: weights do not fit the model (missing {untied}, unexpected {unexpected})")


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
    positions = position_limits_of(model.config).get("encoder")
    return min(tokenizer.model_max_length, positions or 10**9)


def set_threads(cfg: RunConfig, fallback: int | None = None) -> int:
    """torch threads: the config's num_threads, else `fallback` (the job's CPUs), else this process's CPUs
    (shared by the processes torchrun started on this node)."""
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "LOCAL_RANK" in os.environ else 1
    n = cfg.num_threads or fallback or max(1, len(os.sched_getaffinity(0)) // local)
    torch.set_num_threads(n)
    return n
