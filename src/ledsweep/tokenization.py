"""The tokenizer of prepared data and the tokenizing of its splits (no reading of files, no manifest).

A scratch model's byte-level BPE tokenizer is trained offline, deterministically, on a seeded sample of the
training split (`train_bpe_tokenizer`); `tokenize_split` turns a split into ids in `MAP_BATCH`-document
batches and keeps each document's untruncated length (`source_length`, `target_length`), from one pass of
the fast tokenizer, for the manifest's `length_stats`. ledsweep.prepare drives both.
"""

from __future__ import annotations

import copy
import hashlib
from functools import partial
from pathlib import Path

from .runfolder import sha256_file

TOKENIZER_SAMPLE_SEED = 0  # fixed: every seed of a sweep shares one tokenizer
MAP_BATCH = 256  # documents per tokenizer call: bounds the memory of a batch of 16k-token documents
SMALL_SPLIT = 2000  # fewer rows than this: tokenize in one process (starting workers costs more)


# ----------------------------------------------------------------------------- tokenizer
def tokenizer_sample(ds, n: int):
    """At most n rows of the training split: all of them in order, or a seeded sample in file order."""
    if len(ds) <= n:
        return ds
    import numpy as np

    rng = np.random.default_rng(TOKENIZER_SAMPLE_SEED)
    return ds.select(np.sort(rng.choice(len(ds), size=n, replace=False)))


def train_bpe_tokenizer(batches, vocab_size: int, max_length: int):
    """A byte-level BPE tokenizer trained offline from an iterator of text batches (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(batches, trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=max_length,
    )


def tokenizer_sha256(tokenizer_dir: str | Path) -> str:
    """sha256 over the tokenizer's files (names and bytes), in name order."""
    h = hashlib.sha256()
    for path in sorted(Path(tokenizer_dir).iterdir()):
        if path.is_file():
            h.update(path.name.encode() + b"\0")
            h.update(bytes.fromhex(sha256_file(path)))
    return h.hexdigest()


# ----------------------------------------------------------------------------- tokenization
def _encode(tok, texts: list[str], max_length: int) -> tuple[list[list[int]], list[int]]:
    """Truncated ids (with special tokens, exactly what `tok(texts, max_length=..., truncation=True)` gives)
    and the untruncated length of each text, from one pass of the Rust tokenizer: the truncated-off
    pieces stay Rust objects that are only counted, never turned into Python lists."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:  # a slow tokenizer: two passes
        full = tok(texts, return_attention_mask=False)["input_ids"]
        ids = tok(texts, max_length=max_length, truncation=True, return_attention_mask=False)["input_ids"]
        return ids, [len(x) for x in full]
    backend = _truncating(backend, max_length)
    special = tok.num_special_tokens_to_add()
    ids, lengths = [], []
    for enc in backend.encode_batch(texts):
        ids.append(enc.ids)
        lengths.append(len(enc) + sum(len(o) - special for o in enc.overflowing))
    return ids, lengths


_TRUNCATING: dict = {}


def _truncating(backend, max_length: int):
    """A copy of the tokenizer's Rust backend that truncates at max_length (the original is left as is)."""
    key = (id(backend), max_length)
    if key not in _TRUNCATING:
        clone = copy.deepcopy(backend)
        clone.no_padding()
        clone.enable_truncation(max_length)
        _TRUNCATING[key] = clone
    return _TRUNCATING[key]


def check_texts(values: list, column: str, offset: int = 0) -> list:
    """The batch's values of a text column; ValueError naming the first row that is not text."""
    bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
    if bad is not None:
        raise ValueError(f"row {offset + bad + 1}: column '{column}' holds {values[bad]!r}, expected text")
    return values


def _tokenize_batch(batch: dict, indices: list[int], tok, spec: dict, keep_reference: bool) -> dict:
    text_col, summ_col = spec["text_column"], spec["summary_column"]
    for col in (text_col, summ_col):
        check_texts(batch[col], col, indices[0])
    ids, src_len = _encode(tok, batch[text_col], spec["max_source_length"])
    labels, tgt_len = _encode(tok, batch[summ_col], spec["max_target_length"])
    out = {
        "input_ids": ids,
        "labels": labels,
        "length": [len(x) for x in ids],
        "source_length": src_len,
        "target_length": tgt_len,
    }
    if keep_reference:
        out["reference"] = batch[summ_col]
    return out


def tokenize_split(ds, tok, spec: dict, split: str, num_proc: int, cache: Path):
    """The split as ids, labels and lengths (plus the reference text of validation and test), tokenized in
    `num_proc` processes; ValueError naming the first row whose text column holds no text."""
    procs = num_proc if len(ds) >= SMALL_SPLIT else 1
    return ds.map(
        partial(_tokenize_batch, tok=tok, spec=spec, keep_reference=split in ("validation", "test")),
        batched=True,
        batch_size=MAP_BATCH,
        num_proc=procs if procs > 1 else None,
        with_indices=True,
        remove_columns=ds.column_names,
        desc=f"tokenize {split}",
        cache_file_name=str(cache / f"tokenized-{split}.arrow"),  # a temp file: save_to_disk keeps the copy
    )


def length_stats(ds, max_length: int, column: str) -> dict:
    """Token count, mean, percentiles, max and truncated share of a length column (the manifest's)."""
    import numpy as np

    lengths = np.asarray(ds.with_format("numpy")[column])
    if lengths.size == 0:
        return {}
    p = np.percentile(lengths, [50, 90, 99])
    return {
        "tokens": int(lengths.sum()),
        "mean": round(float(lengths.mean()), 1),
        "p50": int(p[0]),
        "p90": int(p[1]),
        "p99": int(p[2]),
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths > max_length).mean()), 6),
    }
