"""A small variant of BART for `model.factory` (README: "Your own model code").

BART sized by the run's model.* keys, with two changes a researcher might try: the activation function
(`model.factory_args.activation`) and a learned gain on the embedding layer norm, started at
`model.factory_args.embedding_gain`. The gain is a new parameter that BART's own class does not have: this
checkpoint can only be loaded again through this function, which ledsweep does (checkpoint/ledsweep_factory.json).

    model:
      name: scratch                          # the tokenizer: trained offline on the training split
      factory: examples/bart_variant.py:build
      factory_args: {activation: gelu_new, embedding_gain: 0.5}
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BartConfig, BartForConditionalGeneration


class GainedLayerNorm(nn.LayerNorm):
    """A LayerNorm whose output is scaled by one learned scalar."""

    def __init__(self, dim: int, gain: float):
        super().__init__(dim)
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def forward(self, x):
        return super().forward(x) * self.gain


def build(model_config: dict, tokenizer) -> BartForConditionalGeneration:
    """model_config: the run's model section (config/README.md); tokenizer: the run's tokenizer."""
    args = model_config.get("factory_args") or {}
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=model_config["d_model"],
        encoder_layers=model_config["encoder_layers"],
        decoder_layers=model_config["decoder_layers"],
        encoder_attention_heads=model_config["attention_heads"],
        decoder_attention_heads=model_config["attention_heads"],
        encoder_ffn_dim=model_config["ffn_dim"],
        decoder_ffn_dim=model_config["ffn_dim"],
        max_position_embeddings=max(
            model_config["max_encoder_position_embeddings"], model_config["max_decoder_position_embeddings"]
        ),
        dropout=model_config["dropout"],
        activation_function=args.get("activation", "gelu"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=None,
    )
    model = BartForConditionalGeneration(config)
    model.model.encoder.layernorm_embedding = GainedLayerNorm(config.d_model, args.get("embedding_gain", 1.0))
    return model
