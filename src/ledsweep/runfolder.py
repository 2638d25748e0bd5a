"""The standard run folder `<output_dir>/<run_name>/` and atomic file writes.

    config.yaml        resolved config (written before training)
    meta.json          environment, hashes, Slurm job ids, resumes
    log_history.jsonl  one JSON object per Trainer log event (loss per logging step)
    step_losses.jsonl  the training loss of every optimizer step (for audits and replays)
    checkpoint/        final weights (safetensors), tokenizer, generation config
    predictions.jsonl  test-split predictions
    summary.json       metrics; written last, atomically: the folder is complete iff it exists
    failure.json       why the last attempt failed (removed when the run completes)
    resume/            periodic Trainer checkpoints + attempts.json (never a declared output)
    logs/              per-stage logs (written by the workflow)

No torch import here: the workflow and the aggregator use this module at parse time.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import faults

COMPLETE_MARKER = "ledsweep-checkpoint-complete"
SUMMARY_KEYS = ("loss", "rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore", "bertscore_precision", "bertscore_recall")


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (finished, or holding another config)."""


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # file layout
    config = property(lambda self: self.path / "config.yaml")
    meta = property(lambda self: self.path / "meta.json")
    summary = property(lambda self: self.path / "summary.json")
    failure = property(lambda self: self.path / "failure.json")
    checkpoint = property(lambda self: self.path / "checkpoint")
    predictions = property(lambda self: self.path / "predictions.jsonl")
    log_history = property(lambda self: self.path / "log_history.jsonl")
    step_losses = property(lambda self: self.path / "step_losses.jsonl")
    step_losses_partial = property(lambda self: self.path / "resume" / "step_losses.jsonl")
    resume = property(lambda self: self.path / "resume")
    attempts = property(lambda self: self.path / "resume" / "attempts.json")
    logs = property(lambda self: self.path / "logs")

    @property
    def name(self) -> str:
        return self.path.name

    def is_complete(self) -> bool:
        return self.summary.is_file()

    def read_json(self, path: Path, default: Any = None) -> Any:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return default

    def remove_temp_files(self) -> None:
        """Temp files of atomic writes that a killed process left behind (never the real files)."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def record_failure(self, stage: str, reason: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.failure, {"status": "failed", "stage": stage, "reason": reason, "time": now_iso()})


_UMASK = os.umask(0)
os.umask(_UMASK)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder + fsync + rename: readers see old or new, never half."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """atomic_write_text for bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        faults.hit(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_jsonl(path: str | Path) -> list:
    """Rows of a JSON-lines file; [] when it does not exist."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
