"""Prepare data once: read the splits with `datasets`, train or load the tokenizer, tokenize, save.

    prepare_data(spec, out_dir, num_proc)        # build <out_dir>/ (the workflow's prepare_data rule)
    ensure_prepared(cfg, root, num_proc)         # reuse <root>/<key>/ or build it (train_baseline.py)

Memory is bounded by the batch, not the corpus: `load_dataset` converts each file to Arrow in chunks,
`Dataset.map(batched=True)` tokenizes 256 documents at a time in `num_proc` processes, and the
result is written with `save_to_disk` and read back memory-mapped. The fast tokenizer tokenizes a whole
document before truncating, so the untruncated length comes for free: it is kept (`source_length`) for
the manifest's percentiles and truncation share. The tokenizer and the tokenizing are in
ledsweep.tokenization; this module reads the splits, checks them and writes the folder and its manifest.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

from .config import ConfigError, RunConfig
from .data import (
    FORMATS,
    MANIFEST,
    SPLITS,
    TOKENIZER_DIR,
    canonical_json,
    data_key,
    data_spec,
    prepared_damage,
    prepared_files,
    read_manifest,
    source_state,
)
from .runfolder import now_iso, sha256_file, write_json
from .tokenization import (
    MAP_BATCH,
    check_texts,
    length_stats,
    tokenize_split,
    tokenizer_sample,
    tokenizer_sha256,
    train_bpe_tokenizer,
)

log = logging.getLogger("ledsweep")


# ----------------------------------------------------------------------------- reading the splits
def _load_split(spec: dict, split: str, cache_dir: Path):
    """One split as an Arrow-backed datasets.Dataset (never a Python list), or None if absent."""
    import datasets

    files = spec["files"]
    key = f"data.{split}_file"
    try:
        if split in files:
            path = files[split]
            fmt = FORMATS.get(Path(path).suffix.lower())
            if fmt is None:
                raise ConfigError(f"{key}: {path}: unsupported file type; expected one of {', '.join(FORMATS)}")
            if not Path(path).is_file():
                raise ConfigError(f"{key}: data file not found: {path}")
            return datasets.load_dataset(fmt, data_files={split: path}, split=split, cache_dir=str(cache_dir))
        if not spec["dataset_name"]:
            return None
        key = "data.dataset_name"
        builder = datasets.load_dataset_builder(spec["dataset_name"], spec["dataset_config_name"])
        if split not in (builder.info.splits or {}):
            if split == "validation":
                return None
            raise ConfigError(
                f"{key}: {spec['dataset_name']} has no '{split}' split ({list(builder.info.splits or {})})"
            )
        return datasets.load_dataset(spec["dataset_name"], spec["dataset_config_name"], split=split)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets and pyarrow raise many types
        if full := _disk_full(e):  # writing the Arrow cache failed: not the data's fault (issue 21)
            raise OSError(full.errno, f"{full.strerror} while preparing {key} in {cache_dir}") from e
        raise ConfigError(f"{key}: cannot read {files.get(split, spec['dataset_name'])}: {_one_line(e)}") from None


def _disk_full(e: BaseException | None) -> OSError | None:
    """The out-of-space error (ENOSPC, EDQUOT) in an exception's chain, if any."""
    import errno

    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        e = e.__cause__ or e.__context__
    return None


def _one_line(e: BaseException) -> str:
    """An exception on one line; for datasets' generic wrapper, the error it wraps (pyarrow's precise one)."""
    while type(e).__name__ == "DatasetGenerationError" and (e.__cause__ or e.__context__):
        e = e.__cause__ or e.__context__
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:400]


class _quiet_datasets:
    """datasets' own log lines and progress bars off (its errors reach the user as one ConfigError line)."""

    def __enter__(self):
        import datasets

        self.level = logging.getLogger("datasets").level
        self.bars = datasets.utils.logging.is_progress_bar_enabled()
        logging.getLogger("datasets").setLevel(logging.CRITICAL)
        datasets.utils.logging.disable_progress_bar()

    def __exit__(self, *exc):
        import datasets

        logging.getLogger("datasets").setLevel(self.level)
        if self.bars:
            datasets.utils.logging.enable_progress_bar()


def _check_columns(ds, spec: dict, split: str) -> None:
    key, source = _split_key(spec, split), _split_source(spec, split)
    if len(ds) == 0:
        raise ConfigError(f"{key}: {source} has no examples")
    for col_key, col in (("data.text_column", spec["text_column"]), ("data.summary_column", spec["summary_column"])):
        if col not in ds.column_names:
            raise ConfigError(
                f"{col_key}: column '{col}' not found in {source} (columns: {', '.join(ds.column_names)})"
            )
        dtype = getattr(ds.features[col], "dtype", None)
        if dtype not in ("string", "large_string", "null"):
            raise ConfigError(
                f"{col_key}: column '{col}' of {source} must hold text, found {dtype or ds.features[col]}"
            )


# ----------------------------------------------------------------------------- tokenizer
def _build_tokenizer(spec: dict, train_ds):
    """The spec's tokenizer: trained on the training split (scratch) or loaded; ConfigError naming the key."""
    tok_spec = spec["tokenizer"]
    if "scratch" in tok_spec:
        sample = tokenizer_sample(train_ds, tok_spec["scratch"]["train_samples"])
        text, summary = spec["text_column"], spec["summary_column"]

        def batches():  # documents first, then summaries, MAP_BATCH rows at a time
            for col in (text, summary):
                for i in range(0, len(sample), MAP_BATCH):
                    yield check_texts(sample[i : i + MAP_BATCH][col], col, i)

        try:
            return train_bpe_tokenizer(batches(), tok_spec["scratch"]["vocab_size"], spec["max_source_length"])
        except ValueError as e:
            raise ConfigError(f"{_split_key(spec, 'train')}: {_split_source(spec, 'train')}: {e}") from None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tok_spec["pretrained"], trust_remote_code=tok_spec["trust_remote_code"])
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"model.name: cannot load the tokenizer of '{tok_spec['pretrained']}': {_one_line(e)}"
        ) from None


def _split_key(spec: dict, split: str) -> str:
    return f"data.{split}_file" if split in spec["files"] else "data.dataset_name"


def _split_source(spec: dict, split: str) -> str:
    return spec["files"].get(split) or f"{spec['dataset_name']}:{split}"


# ----------------------------------------------------------------------------- the whole step
def prepare_data(spec: dict, out_dir: str | Path, num_proc: int = 1) -> dict:
    """Build the prepared data of `spec` into `out_dir` (replaced atomically); return its manifest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = _build(spec, tmp, num_proc)
        old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
        if out_dir.exists():
            os.replace(out_dir, old)  # readers that hold files open keep them (Linux)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _build(spec: dict, out: Path, num_proc: int) -> dict:
    if all(s in spec["files"] for s in ("train", "test")) or not spec["dataset_name"]:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: no usage request to the hub
    t0 = time.perf_counter()
    cache = out / ".hf-cache"  # the Arrow conversion of the files and the map output; removed at the end
    cache.mkdir()
    hashes = {
        split: {"path": path, "sha256": sha256_file(path), **source_state(path)}
        for split, path in spec["files"].items()
        if Path(path).is_file()
    }
    splits = {}
    for split in SPLITS:
        with _quiet_datasets():
            ds = _load_split(spec, split, cache)
        if ds is None:
            continue
        _check_columns(ds, spec, split)
        limit = spec[
            {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_predict_samples"}[split]
        ]
        splits[split] = ds.select(range(limit)) if limit and limit < len(ds) else ds
    for split in ("train", "test"):
        if split not in splits:
            raise ConfigError(f"data.{split}_file: required (or data.dataset_name with a '{split}' split)")

    tok = _build_tokenizer(spec, splits["train"])
    tok.save_pretrained(str(out / TOKENIZER_DIR))
    stats, rows = {}, {}
    for split, ds in splits.items():
        t1 = time.perf_counter()
        try:
            tokenized = tokenize_split(ds, tok, spec, split, num_proc, cache)
        except ValueError as e:
            raise ConfigError(f"{_split_key(spec, split)}: {_split_source(spec, split)}: {e}") from None
        with _quiet_datasets():
            tokenized.save_to_disk(str(out / split))
        dt = time.perf_counter() - t1
        rows[split] = len(tokenized)
        stats[split] = {
            "source": length_stats(tokenized, spec["max_source_length"], "source_length"),
            "target": length_stats(tokenized, spec["max_target_length"], "target_length"),
        }
        s = stats[split]["source"]
        log.info(
            "prepared %s: %d documents in %.1f s (%.0f docs/s), %d source tokens, p50 %d / p99 %d tokens, "
            "%.1f%% truncated at %d",
            split,
            len(tokenized),
            dt,
            len(tokenized) / max(dt, 1e-9),
            s["tokens"],
            s["p50"],
            s["p99"],
            100 * s["truncated_share"],
            spec["max_source_length"],
        )
    shutil.rmtree(cache, ignore_errors=True)
    tok_sha = tokenizer_sha256(out / TOKENIZER_DIR)
    manifest = {
        "key": data_key(spec),
        "spec": spec,
        "data_files": hashes,
        "tokenizer_sha256": tok_sha,
        "rows": rows,
        "token_lengths": stats,
        "num_proc": num_proc,
        "seconds": round(time.perf_counter() - t0, 3),
        "created": now_iso(),
    }
    manifest["fingerprint"] = fingerprint(manifest)
    manifest["files"] = prepared_files(out)  # checked before each reuse (prepared_damage)
    write_json(out / MANIFEST, manifest)
    return manifest


def fingerprint(manifest: dict) -> str:
    """What a run trained on: the spec, each data file's sha256 and the tokenizer's sha256."""
    import hashlib

    content = {
        "spec": manifest["spec"],
        "tokenizer_sha256": manifest["tokenizer_sha256"],
        "data": {s: f["sha256"] for s, f in manifest["data_files"].items()},
    }
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def stale_files(manifest: dict) -> list[str]:
    """Data files whose content differs from what the manifest recorded (sha256 only when size/mtime moved)."""
    changed = []
    for rec in manifest["data_files"].values():
        path = rec["path"]
        try:
            if source_state(path) == {"size": rec["size"], "mtime_ns": rec["mtime_ns"]}:
                continue
            if sha256_file(path) == rec["sha256"]:
                continue
        except OSError:
            pass
        changed.append(path)
    return changed


def ensure_prepared(cfg: RunConfig, root: str | Path, num_proc: int = 1, keep: str | None = None) -> tuple[Path, dict]:
    """The prepared data of `cfg` under `root`, built if missing or if a data file changed since.

    `keep` (a trained run's recorded data fingerprint, for an evaluate-only step): a data file that changed
    since the folder was prepared is refused (ConfigError naming it) instead of prepared again, so
    evaluation never runs on data or a tokenizer the checkpoint was not trained with.
    Concurrent callers of the same key wait for each other (a lock file beside the folder)."""
    spec = data_spec(cfg)
    out = Path(root) / data_key(spec)
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    try:
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (out / MANIFEST).is_file():
                manifest = read_manifest(out)
                changed, damage = stale_files(manifest), prepared_damage(out, manifest)
                if not changed and not damage:
                    log.info("prepared data %s: reused (%s)", out, _rows_text(manifest))
                    return out, manifest
                if damage:  # issue 21.9: never reused, whatever the data
                    log.warning("prepared data %s is damaged (%s): preparing it again", out, "; ".join(damage[:3]))
                elif keep and manifest["fingerprint"] == keep:
                    splits = {rec["path"]: split for split, rec in manifest["data_files"].items()}
                    named = ", ".join(f"data.{splits[p]}_file ({p})" for p in changed)
                    raise ConfigError(
                        f"{named} changed since the run was trained on it; evaluation uses the data and tokenizer "
                        f"of its training: restore the file, or retrain the run (--overwrite)"
                    )
                else:
                    log.info(
                        "prepared data %s: %s changed since it was prepared: preparing again", out, ", ".join(changed)
                    )
            log.info("preparing data into %s with %d process(es)", out, num_proc)
            return out, prepare_data(spec, out, num_proc)
    except BaseException:
        if created:  # bad data leaves nothing behind where nothing was
            lock_path.unlink(missing_ok=True)
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
        raise


def _rows_text(manifest: dict) -> str:
    return ", ".join(f"{split} {n}" for split, n in manifest["rows"].items())


def default_num_proc(cfg: RunConfig, threads: int | None) -> int:
    return cfg.data.preprocessing_num_workers or threads or max(1, len(os.sched_getaffinity(0)))
