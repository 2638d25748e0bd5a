"""The standard run folder `<output_dir>/<run_name>/` and atomic file writes.

    config.yaml        resolved config (written before training)
    meta.json          environment, hashes, Slurm job ids, resumes
    log_history.jsonl  one JSON object per Trainer log event (loss per logging step)
    step_losses.jsonl  the training loss of every optimizer step (for audits and replays)
    checkpoint/        final weights (safetensors), tokenizer, generation config
    predictions.jsonl  test-split predictions
    summary.json       metrics; written last, atomically: the folder is complete iff it exists
    failure.json       why the last attempt failed, with its traceback (removed when the run completes)
    .lock              the run lock (RunLock): who holds the folder for a train or evaluate step
    resume/            periodic Trainer checkpoints + attempts.json (never a declared output)
    logs/              per-stage logs (written by the workflow)

No torch import here: the workflow and the aggregator use this module at parse time.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import faults
from .errors import RunFolderError

COMPLETE_MARKER = "ledsweep-checkpoint-complete"


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
        """failure.json. Called while an exception is handled, it keeps the traceback there (the one-line
        reason goes to the terminal or the rule's log) and marks the exception as recorded."""
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"status": "failed", "stage": stage, "reason": reason, "time": now_iso()}
        exc = sys.exc_info()[1]
        if exc is not None:
            record["traceback"] = traceback.format_exc()
        write_json(self.failure, record)
        if exc is not None:
            exc.ledsweep_failure_json = str(self.failure)


_UMASK = os.umask(0)
os.umask(_UMASK)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds")


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


# ----------------------------------------------------------------------------- run lock
LOCK_NAME = ".lock"
log = logging.getLogger("ledsweep")


class RunLocked(RunFolderError):
    """Another process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class RunLock:
    """Exclusive lock on a run folder for one whole train or evaluate step (`with RunLock(path, "train")`).

    flock(2) on `<run>/.lock`. The kernel drops the lock when its holder exits, however it ends
    (kill -9, OOM killer, Slurm), so a lock left by a killed process never blocks a rerun and needs no
    cleaning up. While held, the file says who holds it (host, pid, since, step); a second process
    gets RunLocked naming them at once, without waiting. Forked children share the lock: if the holder
    was killed but a child of it still runs, the lock is still held; on the same host, a dead holder
    pid gets `orphan_wait` seconds for such children to exit before the lock counts as busy.
    On a file system without locks (ENOLCK, EOPNOTSUPP: NFSv3 mounted `nolock` without lockd) it logs
    a warning and runs unlocked; see docs/reliability.md for NFS.
    """

    def __init__(self, run_dir: str | Path, what: str = "", orphan_wait: float = 5.0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.what = what
        self.orphan_wait = orphan_wait
        self._fd: int | None = None

    def holder(self) -> dict | None:
        """Who holds (or last held) the lock, as written in the lock file; None when unknown."""
        try:
            return json.loads(self.path.read_text() or "null")
        except (OSError, ValueError):
            return None

    def _message(self, holder: dict | None) -> str:
        if not holder or not isinstance(holder, dict):
            who = "another process (it has not written its pid yet)"
        else:
            step = f", {holder['what']}" if holder.get("what") else ""
            who = f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}{step}"
            if self._holder_gone(holder):
                who += f"; pid {holder.get('pid')} has exited, but a process it started still holds the lock"
        return f"{self.run_dir} is in use by {who} (lock {self.path}); wait for it to finish or stop it, then run again"

    @staticmethod
    def _holder_gone(holder: dict | None) -> bool:
        """Only provable on the same host: a pid on another machine says nothing here."""
        if not isinstance(holder, dict) or holder.get("host") != socket.gethostname():
            return False
        pid = holder.get("pid")
        return isinstance(pid, int) and not _pid_alive(pid)

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            deadline = time.monotonic() + self.orphan_wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self.holder()
                    if self._holder_gone(holder) and time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    raise RunLocked(self._message(holder)) from None
                except OSError as e:
                    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
                    log.warning(
                        "%s: this file system cannot lock (%s); running WITHOUT the run lock", self.path, e.strerror
                    )
                    os.close(fd)
                    return self
            info = {"host": socket.gethostname(), "pid": os.getpid(), "since": now_iso(), "what": self.what}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def check_free(self) -> None:
        """Raise RunLocked now if another process holds the lock; creates and writes nothing. For a
        refusal at once, before slow preparation; the step itself still takes the lock (acquire)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # no lock file (or no folder): nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not self._holder_gone(holder):
                raise RunLocked(self._message(holder)) from None
        except OSError:
            pass  # no locks on this file system: acquire() warns
        finally:
            os.close(fd)  # also drops the probe's own lock

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # nobody holds it now; the file stays (unlinking a lock file races)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_holder(run_dir: str | Path) -> dict | None:
    """Who holds a run folder's lock now, as its lock file says (read only: a probe with flock would make a
    writer that tries at that moment fail), or None: no file, released (empty), or a holder on this host whose
    process is gone. A holder on another host counts as holding it (its process cannot be seen from here)."""
    holder = RunLock(run_dir).holder()
    if not isinstance(holder, dict) or not holder.get("pid") or RunLock._holder_gone(holder):
        return None
    return holder


def check_run_location(run_dir: str | Path) -> None:
    """Refuse a run folder that cannot be made or would sit inside another run (RunFolderError naming
    output_dir): a file where a folder must be, an unwritable parent, a run folder among its parents."""
    run_dir = Path(run_dir)
    for path in (run_dir, *run_dir.parents):
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                raise RunFolderError(f"output_dir: cannot create {run_dir}: {path} is not writable")
            break
        if path.exists() or path.is_symlink():
            if path == run_dir:
                raise RunFolderError(f"run_name: {run_dir} is a file (or a broken link), not a run folder")
            raise RunFolderError(
                f"output_dir: {path} is a file (or a broken link), not a folder; cannot create {run_dir}"
            )
    for parent in Path(os.path.abspath(run_dir)).resolve().parents:
        if (parent / "summary.json").is_file() or (
            (parent / "config.yaml").is_file() and (parent / "meta.json").is_file()
        ):
            raise RunFolderError(
                f"output_dir: {run_dir.parent} is inside the run folder {parent} (it has "
                f"{'summary.json' if (parent / 'summary.json').is_file() else 'config.yaml and meta.json'}); "
                f"choose an output_dir outside other runs"
            )


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no bytes duplicated), or a copy where links are impossible."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


def text_sha256(text: str) -> str:
    """sha256 of the bytes atomic_write_text writes for `text`. meta.json's config_yaml_sha256 is this of the
    config.yaml text written for the run: readers compare bytes instead of parsing YAML (ledsweep.status)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
