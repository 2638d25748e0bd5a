"""Dataset splits: local JSONL/CSV/Parquet files or a hub dataset, checked before any training."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, DataConfig

SPLITS = ("train", "validation", "test")
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class Split:
    name: str
    source: str  # file path or "<dataset>:<split>"
    documents: list[str]
    summaries: list[str]

    def __len__(self) -> int:
        return len(self.documents)


def _read_rows(path: Path, key: str) -> list[dict]:
    """Read a local file into a list of row dicts, in memory (no Arrow cache on shared disks)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{key}: {path}: unsupported file type '{suffix}'; expected one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ConfigError(f"{key}: data file not found: {path}")
    try:
        if FORMATS[suffix] == "json":
            text = path.read_text(encoding="utf-8")
            if suffix == ".json" and text.lstrip().startswith("["):
                return json.loads(text)
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
        return df.to_dict("records")
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{key}: cannot read {path} as {FORMATS[suffix]}: {e}") from None


def _from_rows(rows: list, name: str, source: str, key: str, cfg: DataConfig, limit: int | None) -> Split:
    if not rows:
        raise ConfigError(f"{key}: {source} has no examples")
    if not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{key}: {source}: every row must be an object with named columns")
    columns = set(rows[0])
    for col_key, col in (("data.text_column", cfg.text_column), ("data.summary_column", cfg.summary_column)):
        if col not in columns:
            raise ConfigError(f"{col_key}: column '{col}' not found in {source} (columns: {', '.join(sorted(columns))})")
    rows = rows[:limit] if limit else rows
    docs, sums = [], []
    for i, r in enumerate(rows):
        doc, summ = r.get(cfg.text_column), r.get(cfg.summary_column)
        if not isinstance(doc, str) or not isinstance(summ, str):
            raise ConfigError(f"{key}: {source} row {i + 1}: '{cfg.text_column}' and '{cfg.summary_column}' must be text")
        docs.append(doc)
        sums.append(summ)
    return Split(name, source, docs, sums)


def data_files(cfg: DataConfig) -> dict[str, str]:
    """split -> local file path, for the splits given as files."""
    return {s: getattr(cfg, f"{s}_file") for s in SPLITS if getattr(cfg, f"{s}_file")}


def load_splits(cfg: DataConfig, need: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    """Load the requested splits; raise ConfigError naming the key/file on any problem."""
    files = data_files(cfg)
    out: dict[str, Split] = {}
    hub = None
    for split in need:
        limit = cfg.max_train_samples if split == "train" else cfg.max_eval_samples
        key = f"data.{split}_file"
        if split in files:
            rows = _read_rows(Path(files[split]), key)
            out[split] = _from_rows(rows, split, files[split], key, cfg, limit)
        elif cfg.dataset_name:
            hub = hub if hub is not None else _load_hub(cfg)
            if split not in hub:
                if split == "validation":
                    continue
                raise ConfigError(f"data.dataset_name: {cfg.dataset_name} has no '{split}' split ({list(hub)})")
            source = f"{cfg.dataset_name}:{split}"
            out[split] = _from_rows(hub[split].to_list(), split, source, "data.dataset_name", cfg, limit)
    return out


def _load_hub(cfg: DataConfig):
    import datasets

    try:
        return datasets.load_dataset(cfg.dataset_name, cfg.dataset_config_name)
    except Exception as e:  # noqa: BLE001 - datasets raises many types
        raise ConfigError(f"data.dataset_name: cannot load '{cfg.dataset_name}': {e}") from None


def train_bpe_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """A byte-level BPE tokenizer trained offline (deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        mask_token="<mask>", model_max_length=max_length,
    )


def tokenize(split: Split, tokenizer, cfg: DataConfig) -> list[dict]:
    """Token ids for training/eval loss (no padding: the collator pads per batch)."""
    enc = tokenizer(split.documents, max_length=cfg.max_source_length, truncation=True)
    labels = tokenizer(text_target=split.summaries, max_length=cfg.max_target_length, truncation=True)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": lab}
        for ids, mask, lab in zip(enc["input_ids"], enc["attention_mask"], labels["input_ids"])
    ]
