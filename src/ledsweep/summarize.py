"""Inference from a saved checkpoint: documents in, summaries out."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from .config import ConfigError

FORMATS = (".jsonl", ".json", ".csv", ".parquet")


def _read_rows(path: Path) -> list:
    """A local file as a list of rows (in memory: inputs to summarize are small)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if suffix == ".json" and text.lstrip().startswith("["):
        return json.loads(text)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"line {n}: {e}") from None
    return rows


def read_documents(source: str, column: str) -> list[str]:
    """The documents to summarize: a column of a JSONL/JSON/CSV/Parquet file, or the lines of stdin ('-').

    Every problem is a ConfigError naming --input or --text-column and the file."""
    if source == "-":
        docs = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        if not docs:
            raise ConfigError("--input: standard input has no lines")
        return docs
    path = Path(source).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(
            f"--input: {source}: unsupported file type '{path.suffix}'; expected one of {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise ConfigError(f"--input: {source}: no such file")
    try:
        rows = _read_rows(path)
    except (ValueError, UnicodeDecodeError, OSError, ImportError) as e:
        raise ConfigError(f"--input: cannot read {source}: {' '.join(str(e).split())}") from None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"--input: {source} has no rows")
    docs = []
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(
                f"--input: {source} row {n}: expected an object with named columns, got {type(row).__name__}"
            )
        if column not in row:
            raise ConfigError(
                f"--text-column: {source} row {n} has no '{column}' column (columns: {', '.join(map(str, row))})"
            )
        if not isinstance(row[column], str):
            raise ConfigError(f"--input: {source} row {n}: '{column}' must be text, got {type(row[column]).__name__}")
        docs.append(row[column])
    return docs


def summarize(
    checkpoint: str | Path,
    documents: list[str],
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    num_beams: int | None = None,
):
    """Yield one summary per document, in order, using the checkpoint's generation config."""
    import torch

    from . import model as model_mod

    if (
        batch_size < 1
        or (max_new_tokens is not None and max_new_tokens < 1)
        or (num_beams is not None and num_beams < 1)
    ):
        raise ValueError(
            f"batch_size, max_new_tokens and num_beams must be >= 1, got {batch_size}, {max_new_tokens}, {num_beams}"
        )
    model, tok = model_mod.load_trained(checkpoint)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    gen = model.generation_config
    if max_new_tokens is not None:
        gen.max_new_tokens = max_new_tokens
    if num_beams is not None:
        gen.num_beams = num_beams
    limit = model_mod.source_limit(model, tok)
    with torch.no_grad():
        for i in range(0, len(documents), batch_size):
            batch = tok(
                documents[i : i + batch_size], max_length=limit, truncation=True, padding=True, return_tensors="pt"
            ).to(device)
            out = model.generate(
                **batch,
                **model_mod.extra_inputs(model, batch["input_ids"]),
                generation_config=gen,
            )
            yield from (s.strip() for s in tok.batch_decode(out, skip_special_tokens=True))
