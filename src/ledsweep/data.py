"""Dataset sources and the prepared (tokenized) data that runs share.

A run never tokenizes its own data. `prepare.prepare_data` turns the data a run names into a
*prepared data* folder, once for each distinct `data_spec` (files, columns, lengths, sample limits,
tokenizer), and every run of every sweep that needs the same thing reads it (Arrow, memory-mapped):

    <prepared root>/<data key>/
        manifest.json          spec, data file sha256s, tokenizer sha256, rows, token-length stats
        tokenizer/             the tokenizer every run of this key uses (trained once for scratch)
        train/ validation/ test/   datasets.save_to_disk folders: input_ids, labels, length, ...

The workflow's `prepare_data` rule writes `results/prepared/<key>/`; `train_baseline.py` alone uses
`<output_dir>/prepared/<key>/` (so the default `results/` is shared with the workflow).

Cheap to import (no torch, no datasets): the Snakefile computes data keys at parse time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from .config import SCRATCH, ConfigError, DataConfig, RunConfig

SPLITS = ("train", "validation", "test")
FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
SPEC_VERSION = 2  # bump when the prepared layout or the tokenization changes
MANIFEST = "manifest.json"
TOKENIZER_DIR = "tokenizer"  # in a prepared folder: the tokenizer every run of the data uses
PREPARED_DIRNAME = "prepared"  # <results>/prepared/<key>: a name no run may take


def data_files(cfg: DataConfig) -> dict[str, str]:
    """split -> local file path, for the splits given as files."""
    return {s: getattr(cfg, f"{s}_file") for s in SPLITS if getattr(cfg, f"{s}_file")}


def split_limit(cfg: DataConfig, split: str) -> int | None:
    return {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_predict_samples}[split]


# ----------------------------------------------------------------------------- the spec and its key
def data_spec(cfg: RunConfig | dict) -> dict:
    """Everything the prepared data depends on, and nothing else (not the seed, not the learning rate).

    Files are named as the config names them (relative to the working directory); their content is
    tracked by Snakemake (they are inputs of `prepare_data`) and by the manifest's sha256s, size and
    mtime (for `train_baseline.py` alone, which prepares again when a file changed)."""
    c = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    d, m = c["data"], c["model"]
    if m["name"] == SCRATCH:
        tokenizer = {"scratch": {"vocab_size": m["vocab_size"], "train_samples": d["tokenizer_train_samples"]}}
    else:
        tokenizer = {"pretrained": m["name"], "trust_remote_code": m["trust_remote_code"]}
    return {
        "version": SPEC_VERSION,
        "files": {s: os.path.normpath(d[f"{s}_file"]) for s in SPLITS if d.get(f"{s}_file")},
        "dataset_name": d["dataset_name"],
        "dataset_config_name": d["dataset_config_name"],
        "text_column": d["text_column"],
        "summary_column": d["summary_column"],
        "max_source_length": d["max_source_length"],
        "max_target_length": d["max_target_length"],
        "max_train_samples": d["max_train_samples"],
        "max_eval_samples": d["max_eval_samples"],
        "max_predict_samples": d["max_predict_samples"],
        "tokenizer": tokenizer,
    }


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def _key_of(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def data_key(spec: dict) -> str:
    """Short stable name of a spec: the folder name of its prepared data."""
    return _key_of(canonical_json(spec))


DATA_KEY_PATTERN = "[0-9a-f]{16}"
SPEC_KEYS = ("data.", "model.name", "model.vocab_size", "model.trust_remote_code")  # what data_spec reads


def data_keys(runs: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """For the workflow: run name -> data key, and data key -> spec (runs are sweep.Run objects)."""
    run_key, specs, seen = {}, {}, {}
    for name, run in runs.items():
        # runs of a sweep share base and `set`: only swept data/tokenizer keys can change the spec
        swept = tuple((k, repr(v)) for k, v in sorted(run.overrides.items()) if k.startswith(SPEC_KEYS))
        if (run.sweep, swept) not in seen:
            spec = data_spec(run.config)
            seen[run.sweep, swept] = data_key(spec)
            specs.setdefault(seen[run.sweep, swept], spec)
        run_key[name] = seen[run.sweep, swept]
    return run_key, specs


def failure_path(prepared: str | Path) -> Path:
    """Where a failed preparation says why (beside the folder: Snakemake removes a failed job's outputs);
    the tables read it for the runs that needed that data."""
    prepared = Path(prepared)
    return prepared.with_name(f"{prepared.name}.failure.json")


def read_manifest(prepared: str | Path) -> dict:
    """The manifest of a prepared data folder; ConfigError when it is missing or unreadable."""
    path = Path(prepared) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no prepared data here (run prepare_data first)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable manifest ({e}); delete the folder to prepare it again") from None


def prepared_files(prepared: str | Path) -> dict[str, int]:
    """Every file of a prepared folder but its manifest: relative path -> size (what the manifest records)."""
    root = Path(prepared)
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def prepared_damage(prepared: str | Path, manifest: dict) -> list[str]:
    """Files of a prepared folder that are not as its manifest recorded them (missing, truncated, grown);
    [] for a manifest written before sizes were recorded."""
    out = []
    for rel, size in (manifest.get("files") or {}).items():
        try:
            now = (Path(prepared) / rel).stat().st_size
        except OSError:
            out.append(f"{rel} is missing")
            continue
        if now != size:
            out.append(f"{rel} is {now} bytes, {size} when prepared")
    return out


def check_prepared(prepared: str | Path, manifest: dict) -> None:
    """ConfigError naming the folder and the fix when its files are not those it was prepared with (a
    truncated Arrow file would otherwise fail in pyarrow, naming no folder, on every rerun)."""
    if damage := prepared_damage(prepared, manifest):
        shown = "; ".join(damage[:3]) + (f"; and {len(damage) - 3} more" if len(damage) > 3 else "")
        raise ConfigError(f"{prepared}: the prepared data is damaged ({shown}); delete the folder to prepare it again")


# ----------------------------------------------------------------------------- cheap source checks
def _peek_columns(path: Path, key: str) -> list[str]:
    """Column names from the first row / header / schema, without reading the file."""
    fmt = FORMATS[path.suffix.lower()]
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with open(path, encoding="utf-8") as f:
            if fmt == "csv":
                import csv

                return next(csv.reader(f), [])
            head = f.read(1 << 16)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{key}: cannot read {path} as {fmt}: {e}") from None
    text = head.lstrip()
    if not text:
        return []
    if text.startswith("["):  # a JSON array file: columns are checked when it is prepared
        return []
    line = text.splitlines()[0]
    try:
        row = json.loads(line)
    except ValueError:
        if len(head) == 1 << 16 and "\n" not in head:  # a first line longer than the peek
            return []
        raise ConfigError(f"{key}: {path}: line 1 is not a JSON object (expected JSON lines)") from None
    if not isinstance(row, dict):
        raise ConfigError(f"{key}: {path}: line 1 is not a JSON object with named columns")
    return list(row)


def check_sources(cfg: DataConfig, need: tuple[str, ...] = SPLITS) -> None:
    """Fail early, before any folder exists: local files exist, have a known type and the columns."""
    files = data_files(cfg)
    for split in need:
        key = f"data.{split}_file"
        if split not in files:
            continue
        path = Path(files[split])
        suffix = path.suffix.lower()
        if suffix not in FORMATS:
            raise ConfigError(f"{key}: {path}: unsupported file type '{suffix}'; expected one of {', '.join(FORMATS)}")
        if not path.is_file():
            raise ConfigError(f"{key}: data file not found: {path}")
        if path.stat().st_size == 0:
            raise ConfigError(f"{key}: {path} has no examples (empty file)")
        columns = _peek_columns(path, key)
        if not columns:
            continue
        for col_key, col in (("data.text_column", cfg.text_column), ("data.summary_column", cfg.summary_column)):
            if col not in columns:
                raise ConfigError(
                    f"{col_key}: column '{col}' not found in {path} (columns: {', '.join(sorted(columns))})"
                )


def source_state(path: str | Path) -> dict:
    """size and mtime of a data file: the cheap check before its sha256 is recomputed."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def data_hashes(manifest: dict) -> dict[str, str]:
    """data file path -> sha256, as the prepared data's manifest recorded them when it was prepared."""
    return {f["path"]: f["sha256"] for f in manifest["data_files"].values()}


def data_changes(data_sha256: dict | None, tokenizer_sha256: str | None, manifest: dict) -> str:
    """What differs between the data a run recorded (`data_sha256`, `tokenizer_sha256`) and the prepared data
    `manifest` describes: 'data/train.jsonl and the tokenizer' (the files whose sha256 moved, then the tokenizer)."""
    recorded, now = data_sha256 or {}, data_hashes(manifest)
    changed = [p for p in sorted(set(recorded) | set(now)) if recorded.get(p) != now.get(p)]
    if tokenizer_sha256 and tokenizer_sha256 != manifest["tokenizer_sha256"]:
        changed.append("the tokenizer")
    return " and ".join(changed) or "the prepared data"


def recorded_data_changes(meta: dict, manifest: dict) -> str:
    """`data_changes` against what meta.json recorded of the run's data."""
    return data_changes(meta.get("data_sha256"), (meta.get("prepared_data") or {}).get("tokenizer_sha256"), manifest)


def load_prepared(prepared: Path, split: str, columns: tuple[str, ...] = ("input_ids", "labels")):
    """A prepared split, memory-mapped from disk (None if the data has no such split)."""
    import datasets

    path = Path(prepared) / split
    if not path.is_dir():
        return None
    return datasets.load_from_disk(str(path)).select_columns(list(columns))


def load_tokenizer(prepared: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(Path(prepared) / TOKENIZER_DIR))
