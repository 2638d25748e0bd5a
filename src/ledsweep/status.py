"""The status of a run folder, read while the sweep may still be writing it.

    run_status("results/demo_lr0.001_seed1")     # ("completed", None), ("failed", "train: OOM"), ...

A run is `completed` (valid summary.json, finite metrics), `stopped` (successive halving stopped it at a
rung: valid summary.json of the step it reached), `modified` (completed, but its config.yaml no longer
is the config that meta.json's config_sha256 recorded when it trained), `corrupt` (a file that should
parse does not), `failed` (failure.json, a metric that is NaN or infinite, or the preparation of its data
failed: `<results>/prepared/<key>.failure.json`, see ledsweep.data.failure_path), `running` (meta.json, or
trained/meta.json while the workflow trains it, and a process holds the run's lock), `incomplete` (the
same, but no process holds it: interrupted, or waiting for its next workflow job), `pending` (folder
only) or `missing` (no folder).

config.yaml is checked without a YAML parse when its bytes hash to meta.json's `config_yaml_sha256`
(the sha256 of the text ledsweep wrote for the config whose config_sha256 meta.json records); only
other bytes (a hand edit, a run older than that key) are parsed and compared by config_sha256, so a
comment or layout change alone leaves the run unmodified.

Each file is read once, with no exists()-then-open() gap: a file that vanishes mid-read is simply the
state we see. No torch, no pandas: the Snakefile imports ledsweep.aggregate, which imports this.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from . import metrics_registry as registry
from .config import config_sha256
from .data import MANIFEST, PREPARED_DIRNAME, data_key, data_keys, data_spec, failure_path
from .runfolder import lock_holder
from .schema import is_number
from .sweep import Sweep

STATUSES = ("completed", "stopped", "modified", "corrupt", "failed", "running", "incomplete", "pending", "missing")
FINISHED = ("completed", "stopped")  # a valid summary.json: metrics, config columns from its config.yaml
MISSING = object()  # a file that is not there (as opposed to one that does not parse)
TRAINED_META = os.path.join("trained", "meta.json")  # the workflow's train rule writes it at start and end
INCOMPLETE = "no process holds the run: interrupted, or waiting for its next job"


class _Bad(Exception):
    """A file that exists but cannot be used; the message says which and why."""


class State(NamedTuple):
    """What one look at a run folder found; summary and config (config.yaml's bytes, or MISSING) only for a
    valid summary.json: config.yaml is read for those runs alone."""

    status: str
    reason: str | None = None
    summary: dict | None = None
    meta: dict | None = None
    config: bytes | object | None = None


def _read(path: str) -> bytes:
    """The whole file; os.open + os.read cost half of open().read() on small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _load(path: str) -> Any:
    """One read + json.loads; MISSING when absent, `_Bad` when empty, truncated or not an object."""
    try:
        raw = _read(path)
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as e:
        raise _Bad(f"{os.path.basename(path)}: cannot read ({e.strerror})") from None
    try:
        data = json.loads(raw)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        why = "empty file" if not raw.strip() else f"not valid JSON (truncated?): {e}"
        raise _Bad(f"{os.path.basename(path)}: {why}") from None
    if not isinstance(data, dict):
        raise _Bad(f"{os.path.basename(path)}: expected a JSON object, got {type(data).__name__}")
    return data


def _load_optional(path: str) -> dict | None:
    data = _load(path)
    return None if data is MISSING else data


def _read_config(run_dir: str) -> bytes | object:
    try:
        return _read(os.path.join(run_dir, "config.yaml"))
    except (FileNotFoundError, NotADirectoryError):
        return MISSING
    except OSError as e:
        raise _Bad(f"config.yaml: cannot read ({e.strerror})") from None


def _check_summary(summary: dict, names: tuple[str, ...]) -> str | None:
    """Raise _Bad for a summary.json that is not usable (a metric that is no number, or outside the range of
    values the metric can take: `Metric.problem`; a runtime that is no duration); return a reason when a
    metric is NaN or infinite (the run failed: its metrics are not results)."""
    m = summary.get("metrics")
    if not isinstance(m, dict):
        raise _Bad("summary.json: no 'metrics' object")
    nonfinite = []
    for k in names:
        v = m.get(k)
        if v is None:
            if registry.get(k).required:
                raise _Bad(f"summary.json: metrics.{k} is missing")
        elif is_number(v) and not math.isfinite(v):
            nonfinite.append(f"metrics.{k} is {v}")
        elif why := registry.get(k).problem(v):
            raise _Bad(f"summary.json: metrics.{k} {why}")
    runtime = summary.get("runtime_seconds")
    if runtime is not None and not (is_number(runtime) and math.isfinite(runtime) and runtime >= 0):
        raise _Bad(f"summary.json: runtime_seconds is not a duration in seconds: {runtime!r}")
    return "summary.json: " + ", ".join(nonfinite) if nonfinite else None


def inspect_run(run_dir: str, names: tuple[str, ...]) -> State:
    """The State of one run folder, from at most one read of each file."""
    try:
        summary = _load(os.path.join(run_dir, "summary.json"))
        if summary is not MISSING:
            return _finished(run_dir, summary, names)
        started = _started(run_dir)
        if started is not None:
            return started
    except _Bad as e:
        return State("corrupt", str(e))  # no metrics: only completed runs are compared
    return State("pending" if os.path.isdir(run_dir) else "missing")


def _finished(run_dir: str, summary: dict, names: tuple[str, ...]) -> State:
    nonfinite = _check_summary(summary, names)
    meta = _load_optional(os.path.join(run_dir, "meta.json"))
    if nonfinite:
        return State("failed", nonfinite, None, meta)
    done = "stopped" if summary.get("status") == "stopped" else "completed"
    reason = None if meta is not None else "meta.json missing (no provenance)"
    return State(done, reason, summary, meta, _read_config(run_dir))


def _started(run_dir: str) -> State | None:
    """A run with failure.json or meta.json (or trained/meta.json) and no summary.json; None for neither."""
    failure = _load(os.path.join(run_dir, "failure.json"))
    meta, meta_name = _load(os.path.join(run_dir, "meta.json")), "meta.json"
    if meta is MISSING:  # not linked yet (workflow): is the run's own training under way?
        meta, meta_name = _load_trained_meta(run_dir), TRAINED_META
    meta = None if meta is MISSING else meta
    if failure is not MISSING:
        reason = str(failure.get("reason") or "no reason recorded")
        reason = f"{failure['stage']}: {reason}" if failure.get("stage") else reason
        if meta is not None and _newer(run_dir, meta_name, "failure.json"):
            return State("running", f"retrying after: {reason}", None, meta)  # a new attempt rewrote meta.json
        return State("failed", reason, None, meta)
    if meta is None:
        return None
    # started, not finished: running only while a process holds the run (issue 21)
    if lock_holder(run_dir) is None:
        return State("incomplete", INCOMPLETE, None, meta)
    return State("running", None, None, meta)


def _load_trained_meta(run_dir: str) -> Any:
    """trained/meta.json, read as `_load` reads a file (a `_Bad` message names it trained/meta.json)."""
    try:
        return _load(os.path.join(run_dir, TRAINED_META))
    except _Bad as e:
        raise _Bad(f"trained/{e}") from None


def _newer(run_dir: str, a: str, b: str) -> bool:
    try:
        return os.stat(os.path.join(run_dir, a)).st_mtime_ns > os.stat(os.path.join(run_dir, b)).st_mtime_ns
    except OSError:
        return False


def inspect_runs(dirs: list[str], names: tuple[str, ...], probe: int = 256, slow_s: float = 300e-6) -> list[State]:
    """inspect_run over many folders: serially while files come from the page cache (fastest: about 100 us a
    folder of 3 files on a busy 2-core machine), on 8 threads once the first `probe` folders show slow I/O
    (cold cache, NFS/Lustre: a millisecond and more a folder), where waits overlap."""
    look = functools.partial(inspect_run, names=names)
    t0 = time.perf_counter()
    out = [look(d) for d in dirs[:probe]]
    if len(dirs) > probe and (time.perf_counter() - t0) / probe > slow_s:
        with ThreadPoolExecutor(8) as pool:
            return out + list(pool.map(look, dirs[probe:], chunksize=32))
    return out + [look(d) for d in dirs[probe:]]


# ---------------------------------------------------------------------------------------------------------------
# a finished run's own config.yaml against what meta.json recorded


def parse_config(raw: bytes | object) -> tuple[dict | None, str | None]:
    """A full YAML parse of config.yaml's bytes (or MISSING): (mapping, None), or (None, why it is unusable)."""
    import yaml

    if raw is MISSING:
        return None, "config.yaml is missing"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "config.yaml: not UTF-8 text"
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        return None, f"config.yaml: not valid YAML ({' '.join(str(e).split())})"
    if not isinstance(data, dict):
        return None, "config.yaml: not a mapping of config keys"
    return data, None


def bytes_unchanged(raw: bytes | object, meta: dict) -> bool:
    """config.yaml is byte for byte the text written for the config meta.json records (no parse needed)."""
    recorded = meta.get("config_yaml_sha256")
    return isinstance(recorded, str) and isinstance(raw, bytes) and hashlib.sha256(raw).hexdigest() == recorded


def check_config(raw: bytes | object, recorded_sha: Any, meta: dict) -> tuple[str | None, dict | None]:
    """(why config.yaml is not the config the run was trained with, or None; its parsed mapping, None when
    the bytes alone showed it unchanged or it could not be parsed)."""
    if bytes_unchanged(raw, meta):
        return None, None
    data, problem = parse_config(raw)
    if problem:
        return f"{problem}: cannot check it against meta.json's config_sha256", None
    try:
        sha = config_sha256(data)
    except (TypeError, ValueError):  # a value JSON cannot hold (a YAML date): not a config ledsweep wrote
        return "config.yaml holds a value JSON cannot hold (not a config ledsweep wrote)", data
    if sha != recorded_sha:
        return (
            f"config.yaml changed after the run (config_sha256 {sha[:12]}, meta.json recorded "
            f"{str(recorded_sha)[:12]}): the metrics are those of the config it was trained with"
        ), data
    return None, data


def run_status(run_dir: str | Path) -> tuple[str, str | None]:
    """(status, reason) of one run folder; status is one of STATUSES, reason None or a short text. A pending
    run whose config.yaml names data whose preparation failed (in the folder's parent: the results folder)
    is `failed`."""
    run_dir = os.fspath(run_dir)
    state = inspect_run(run_dir, registry.names())
    status, reason = state.status, state.reason
    if status in FINISHED and state.meta is not None and "config_sha256" in state.meta:
        reason = check_config(state.config, state.meta["config_sha256"], state.meta)[0]
        status = "modified" if reason else status
    elif status == "pending":
        failures = PrepareFailures(os.path.dirname(os.path.abspath(run_dir)))
        key = _recorded_data_key(run_dir) if failures else None
        failed = failures.reason(key) if key else None
        if failed:
            status, reason = "failed", failed
    return status, reason


# ---------------------------------------------------------------------------------------------------------------
# runs that wait for data whose preparation failed (the workflow's prepare_data rule)


class PrepareFailures:
    """The failed preparations under `<results_dir>/prepared/` (`data.failure_path` files), each read once.
    Listed with one listdir: with no failure file (the usual case) nothing else is read."""

    def __init__(self, results_dir: str):
        self.root = os.path.join(results_dir, PREPARED_DIRNAME)
        try:
            names = os.listdir(self.root)
        except OSError:
            names = []
        # only `<key>.failure.json` names (the folder also holds the prepared folders, logs/ and CLI locks)
        self.keys = {k for n in names if (k := n.split(".", 1)[0]) and failure_path(k).name == n}
        self.reasons: dict[str, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self.keys)

    def reason(self, key: str) -> str | None:
        """`prepare_data: <reason>` when the preparation of data `key` failed (and was not redone since)."""
        if key not in self.keys:
            return None
        if key not in self.reasons:
            self.reasons[key] = self._read(key)
        return self.reasons[key]

    def _read(self, key: str) -> str | None:
        if os.path.exists(os.path.join(self.root, key, MANIFEST)):
            return None  # prepared since (train_baseline.py does not remove the workflow's failure record)
        try:
            record = _load(os.fspath(failure_path(os.path.join(self.root, key))))
        except _Bad as e:
            return f"prepare_data: failed ({e})"
        if record is MISSING:
            return None  # removed since the listing: prepared now
        return f"prepare_data: {record.get('reason') or 'no reason recorded'}"


def _data_key_of(config: Any) -> str | None:
    """The data key of a run config mapping; None when it is not a config data_spec can read."""
    try:
        return data_key(data_spec(config))
    except (KeyError, TypeError, ValueError, AttributeError):  # an old or hand-edited config.yaml: stays pending
        return None


def _recorded_data_key(run_dir: str, raw: bytes | object | None = None) -> str | None:
    """The data key of the config.yaml in a run folder (`raw`: its bytes, already read); None when absent
    or unusable."""
    if raw is None:
        try:
            raw = _read(os.path.join(run_dir, "config.yaml"))
        except OSError:
            return None
    data, _ = parse_config(raw)
    return _data_key_of(data) if data is not None else None


def mark_prepare_failures(results_dir: str, sweep: Sweep, rows: list[dict]) -> None:
    """`pending` and `missing` rows whose data failed to prepare become `failed`, with the reason. The data
    key of a pending run comes from its own config.yaml (a full parse), that of a missing run (or a pending
    one with no config.yaml yet) from the sweep. Nothing is read when no preparation failed."""
    waiting = [r for r in rows if r["status"] in ("pending", "missing")]
    failures = PrepareFailures(results_dir) if waiting else None
    if not failures:
        return
    sweep_key = data_keys({r["run_name"]: sweep.runs[r["run_name"]] for r in waiting})[0]
    for row in waiting:
        name = row["run_name"]
        key = sweep_key[name]
        if row["status"] == "pending":
            run_dir = os.path.join(results_dir, name)
            try:
                raw = _read(os.path.join(run_dir, "config.yaml"))
            except OSError:
                raw = None  # no config.yaml yet: the sweep's
            if raw is not None:
                key = _recorded_data_key(run_dir, raw)
        reason = failures.reason(key) if key else None
        if reason:
            row.update(status="failed", reason=reason)
