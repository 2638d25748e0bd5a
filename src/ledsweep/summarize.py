"""Inference from a saved checkpoint: documents in, summaries out."""

from __future__ import annotations

from pathlib import Path

from . import model as model_mod


def summarize(checkpoint: str | Path, documents: list[str], batch_size: int = 16,
              max_new_tokens: int | None = None, num_beams: int | None = None):
    """Yield one summary per document, in order, using the checkpoint's generation config."""
    import torch

    model, tok = model_mod.load_pretrained(str(checkpoint))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    gen = model.generation_config
    if max_new_tokens:
        gen.max_new_tokens = max_new_tokens
    if num_beams:
        gen.num_beams = num_beams
    limit = min(tok.model_max_length, getattr(model.config, "max_encoder_position_embeddings", None) or 10**9)
    with torch.no_grad():
        for i in range(0, len(documents), batch_size):
            batch = tok(documents[i : i + batch_size], max_length=limit, truncation=True, padding=True,
                        return_tensors="pt").to(device)
            out = model.generate(**batch, global_attention_mask=model_mod.global_attention_mask(batch["input_ids"]),
                                 generation_config=gen)
            yield from (s.strip() for s in tok.batch_decode(out, skip_special_tokens=True))
