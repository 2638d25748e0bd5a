"""New models from the `model.*` sizes (`model.name: scratch`): LED by default, or another seq2seq family
(`model.architecture`) sized by the same keys where they apply, so that offline tests and demos can compare
architectures. Weights are random; the caller seeds first."""

from __future__ import annotations

from typing import Any


def _led(m: Any, ids: dict):
    from transformers import LEDConfig

    return LEDConfig(
        **_bart_like(m),
        attention_window=m.attention_window,
        max_encoder_position_embeddings=m.max_encoder_position_embeddings,
        max_decoder_position_embeddings=m.max_decoder_position_embeddings,
        **ids,
    )


def _bart(m: Any, ids: dict):
    from transformers import BartConfig

    positions = max(m.max_encoder_position_embeddings, m.max_decoder_position_embeddings)
    return BartConfig(**_bart_like(m), max_position_embeddings=positions, forced_eos_token_id=None, **ids)


def _pegasus_x(m: Any, ids: dict):
    from transformers import PegasusXConfig

    positions = max(m.max_encoder_position_embeddings, m.max_decoder_position_embeddings)
    return PegasusXConfig(
        **_bart_like(m),
        max_position_embeddings=positions,
        block_size=m.attention_window,
        num_global_tokens=max(1, m.attention_window // 4),  # pegasus-x-base: 128 global tokens, blocks of 512
        **ids,
    )


def _t5(m: Any, ids: dict):
    from transformers import T5Config

    return T5Config(**_t5_like(m), **ids)


def _longt5(m: Any, ids: dict):
    from transformers import LongT5Config

    return LongT5Config(**_t5_like(m), local_radius=m.attention_window // 2, encoder_attention_type="local", **ids)


def _bart_like(m: Any) -> dict:
    """The sizes LED, BART and PEGASUS-X name alike."""
    return dict(
        d_model=m.d_model,
        encoder_layers=m.encoder_layers,
        decoder_layers=m.decoder_layers,
        encoder_attention_heads=m.attention_heads,
        decoder_attention_heads=m.attention_heads,
        encoder_ffn_dim=m.ffn_dim,
        decoder_ffn_dim=m.ffn_dim,
        dropout=m.dropout,
    )


def _t5_like(m: Any) -> dict:
    """The sizes in T5's names (relative positions: the position keys do not apply)."""
    return dict(
        d_model=m.d_model,
        d_kv=m.d_model // m.attention_heads,
        d_ff=m.ffn_dim,
        num_layers=m.encoder_layers,
        num_decoder_layers=m.decoder_layers,
        num_heads=m.attention_heads,
        dropout_rate=m.dropout,
    )


# architecture -> (its config from the sizes, whether decoding starts from </s> as in BART, else from <pad>)
ARCHITECTURES = {
    "led": (_led, True),
    "bart": (_bart, True),
    "pegasus_x": (_pegasus_x, False),
    "t5": (_t5, False),
    "longt5": (_longt5, False),
}


def build(m: Any, tokenizer):
    """A new seq2seq model of `m.architecture` (a config.ModelConfig) with `tokenizer`'s vocabulary."""
    from transformers import AutoModelForSeq2SeqLM

    make_config, starts_with_eos = ARCHITECTURES[m.architecture]
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id if starts_with_eos else tokenizer.pad_token_id,
    )
    if starts_with_eos:
        ids["bos_token_id"] = tokenizer.bos_token_id
    return AutoModelForSeq2SeqLM.from_config(make_config(m, ids))
