"""Collect a sweep's run folders into comparison tables; works while the sweep is still running.

    rows = collect("results", sweep)            # one row per run of the sweep, whatever its state
    groups = by_config(rows, sweep)             # mean / std / 95% CI over seeds
    write_tables("results", sweep, "results/sweeps/demo")   # comparison.csv, comparison_by_config.csv

A run is `completed` (valid summary.json, finite metrics), `stopped` (successive halving stopped it at a
rung: valid summary.json of the step it reached; `rung` and `steps` columns say where), `modified` (completed, but its config.yaml no
longer hashes to the config_sha256 that meta.json recorded when it trained), `corrupt` (a file that
should parse does not), `failed` (failure.json, a metric that is NaN or infinite, or the preparation of
its data failed: `<results>/prepared/<key>.failure.json`, see ledsweep.data.failure_path), `running`
(meta.json, or trained/meta.json while the workflow trains it, and a process holds the run's lock),
`incomplete` (the same, but no process holds it: interrupted, or waiting for its next workflow job),
`pending` (folder only) or `missing` (no folder). Only `completed` runs count in by-config statistics and for "best". The config columns of a run
with a summary come from its own config.yaml (what it recorded), not from the sweep as it is defined now.
Data files are not hashed here: they are inputs of the workflow's prepare_data rule, so a changed file
re-prepares, retrains and re-evaluates the runs that use it.

Each file is read once, with no exists()-then-open() gap: a file that vanishes mid-read is simply the
state we see. Metric names, directions and formats come from ledsweep.metrics_registry. No torch, no
pandas, no scipy until a confidence interval is computed: the Snakefile may import this module.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import operator
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import metrics_registry as registry
from .config import IDENTITY_KEYS, config_sha256
from .data import MANIFEST, PREPARED_DIRNAME, data_key, data_keys, data_spec, failure_path
from .runfolder import atomic_write_text, lock_holder
from .sweep import Sweep

STATUSES = ("completed", "stopped", "modified", "corrupt", "failed", "running", "incomplete", "pending", "missing")
PROVENANCE = ("runtime_seconds", "device", "git_commit", "config_sha256", "slurm_job_ids", "resumes")
STAT_SUFFIXES = ("mean", "std", "ci95")

FINISHED = ("completed", "stopped")  # a valid summary.json: metrics, config columns from its config.yaml
_MISSING = object()  # a file that is not there (as opposed to one that does not parse)
TRAINED_META = os.path.join("trained", "meta.json")  # the workflow's train rule writes it at start and end


class _Bad(Exception):
    """A file that exists but cannot be used; the message says which and why."""


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
    """One read + json.loads; `_MISSING` when absent, `_Bad` when empty, truncated or not an object."""
    try:
        raw = _read(path)
    except (FileNotFoundError, NotADirectoryError):
        return _MISSING
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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _extra_metrics(sweep: Sweep) -> list[str]:
    """Extra metrics the sweep's runs ask for (`evaluation.extra_metrics`, in first-seen order)."""
    out: dict[str, None] = {}
    for run in sweep.runs.values():
        specs = (run.config.get("evaluation") or {}).get("extra_metrics") or ()
        out.update(dict.fromkeys(map(registry.extra_metric_name, specs)))  # a module path -> its name
    return list(out)


def metric_names(sweep: Sweep) -> tuple[str, ...]:
    """The metrics of the sweep's tables: the registry's built-in metrics, then the sweep's extra ones."""
    return registry.names(_extra_metrics(sweep))


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
        elif _is_number(v) and not math.isfinite(v):
            nonfinite.append(f"metrics.{k} is {v}")
        elif why := registry.get(k).problem(v):
            raise _Bad(f"summary.json: metrics.{k} {why}")
    runtime = summary.get("runtime_seconds")
    if runtime is not None and not (_is_number(runtime) and math.isfinite(runtime) and runtime >= 0):
        raise _Bad(f"summary.json: runtime_seconds is not a duration in seconds: {runtime!r}")
    return "summary.json: " + ", ".join(nonfinite) if nonfinite else None


def _inspect(run_dir: str, names: tuple[str, ...]) -> tuple:
    """(status, reason, summary, meta, config.yaml bytes) from at most one read of each file; summary
    (and the config bytes) only for a valid summary.json: config.yaml is read for those runs alone."""
    try:
        summary = _load(os.path.join(run_dir, "summary.json"))
        if summary is not _MISSING:
            nonfinite = _check_summary(summary, names)
            meta = _load(os.path.join(run_dir, "meta.json"))
            meta = None if meta is _MISSING else meta
            if nonfinite:
                return "failed", nonfinite, None, meta, None
            try:
                raw = _read(os.path.join(run_dir, "config.yaml"))
            except (FileNotFoundError, NotADirectoryError):
                raw = _MISSING
            except OSError as e:
                raise _Bad(f"config.yaml: cannot read ({e.strerror})") from None
            done = "stopped" if summary.get("status") == "stopped" else "completed"
            if meta is None:
                return done, "meta.json missing (no provenance)", summary, None, raw
            return done, None, summary, meta, raw
        failure = _load(os.path.join(run_dir, "failure.json"))
        meta, meta_name = _load(os.path.join(run_dir, "meta.json")), "meta.json"
        if meta is _MISSING:  # not linked yet (workflow): is the run's own training under way?
            meta, meta_name = _load_trained_meta(run_dir), TRAINED_META
        meta = None if meta is _MISSING else meta
        if failure is not _MISSING:
            reason = str(failure.get("reason") or "no reason recorded")
            reason = f"{failure['stage']}: {reason}" if failure.get("stage") else reason
            if meta is not None and _newer(run_dir, meta_name, "failure.json"):
                return "running", f"retrying after: {reason}", None, meta, None  # a new attempt rewrote meta.json
            return "failed", reason, None, meta, None
        if meta is not None:  # started, not finished: running only while a process holds the run (issue 21)
            if lock_holder(run_dir) is None:
                return (
                    "incomplete",
                    "no process holds the run: interrupted, or waiting for its next job",
                    None,
                    meta,
                    None,
                )
            return "running", None, None, meta, None
    except _Bad as e:
        return "corrupt", str(e), None, None, None  # no metrics: only completed runs are compared
    if os.path.isdir(run_dir):
        return "pending", None, None, None, None
    return "missing", None, None, None, None


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


def _inspect_all(dirs: list[str], names: tuple[str, ...], probe: int = 256, slow_s: float = 300e-6) -> list[tuple]:
    """_inspect over many folders: serially while files come from the page cache (fastest: about 100 us a
    folder of 3 files on a busy 2-core machine), on 8 threads once the first `probe` folders show slow I/O
    (cold cache, NFS/Lustre: a millisecond and more a folder), where waits overlap."""
    inspect = functools.partial(_inspect, names=names)
    t0 = time.perf_counter()
    out = [inspect(d) for d in dirs[:probe]]
    if len(dirs) > probe and (time.perf_counter() - t0) / probe > slow_s:
        with ThreadPoolExecutor(8) as pool:
            return out + list(pool.map(inspect, dirs[probe:], chunksize=32))
    return out + [inspect(d) for d in dirs[probe:]]


def _modified(recorded_sha: Any, own: OwnConfig) -> str | None:
    """Why a completed run's config.yaml is not the config it was trained with (meta.json's config_sha256),
    or None when it is."""
    if own.problem:
        return f"{own.problem}: cannot check it against meta.json's config_sha256"
    if own.sha256 is None:
        return "config.yaml holds a value JSON cannot hold (not a config ledsweep wrote)"
    if own.sha256 != recorded_sha:
        return (
            f"config.yaml changed after the run (config_sha256 {own.sha256[:12]}, meta.json recorded "
            f"{str(recorded_sha)[:12]}): the metrics are those of the config it was trained with"
        )
    return None


def run_status(run_dir: str | Path) -> tuple[str, str | None]:
    """(status, reason) of one run folder; status is one of STATUSES, reason None or a short text. A pending
    run whose config.yaml names data whose preparation failed (in the folder's parent: the results folder)
    is `failed`."""
    run_dir = os.fspath(run_dir)
    status, reason, _, meta, raw = _inspect(run_dir, registry.names())
    if status in FINISHED and meta is not None and "config_sha256" in meta:
        reason = _modified(meta["config_sha256"], OwnConfigs([]).read(raw))
        status = "modified" if reason else status
    elif status == "pending":
        failures = PrepareFailures(os.path.dirname(os.path.abspath(run_dir)))
        key = _recorded_data_key(run_dir) if failures else None
        failed = failures.reason(key) if key else None
        if failed:
            status, reason = "failed", failed
    return status, reason


def halving_columns(sweep: Sweep) -> list[str]:
    """`rung` (1-based: the last is the full budget) and `steps` reached, in a sweep with successive halving."""
    return ["rung", "steps"] if sweep.halving else []


def columns(sweep: Sweep) -> list[str]:
    """Header of comparison.csv: fixed, whatever the statuses."""
    return ["run_name", "status", "reason", *sweep.keys, *metric_names(sweep), *halving_columns(sweep), *PROVENANCE]


def collect(results_dir: str | Path, sweep: Sweep) -> list[dict]:
    """One row per run of `sweep` (in sweep order, none dropped), read from `<results_dir>/<run_name>/`.
    Config columns: from the run's own config.yaml where its summary exists, else the sweep's values."""
    results_dir, names = os.fspath(results_dir), metric_names(sweep)
    states = _inspect_all([os.path.join(results_dir, name) for name in sweep.runs], names)
    own_configs = OwnConfigs(sweep.keys)
    rows = []
    for (name, run), (status, reason, summary, meta, raw) in zip(sweep.runs.items(), states):
        summary, meta = summary or {}, meta or {}
        row = {"run_name": name, "status": status, "reason": reason}
        if status in FINISHED:
            own = own_configs.read(raw)
            row.update(own.values)
            if "config_sha256" in meta:
                modified = _modified(meta["config_sha256"], own)
                if modified:
                    row.update(status="modified", reason=modified)
            elif meta:
                row["reason"] = "meta.json has no config_sha256: config.yaml not checked"
        else:
            row.update(zip(sweep.keys, map(run.overrides.get, sweep.keys)))
        row.update(zip(names, map((summary.get("metrics") or {}).get, names)))
        if sweep.halving:
            reached = summary.get("halving") or meta.get("halving") or {}
            row.update(rung=reached.get("rung"), steps=reached.get("step"))
        jobs = meta.get("slurm_job_ids")
        row.update(
            runtime_seconds=summary.get("runtime_seconds"),
            device=meta.get("device"),
            git_commit=meta.get("git_commit"),
            config_sha256=meta.get("config_sha256"),
            slurm_job_ids=";".join(map(str, jobs)) if isinstance(jobs, list) else jobs,
            resumes=meta.get("resumes"),
        )
        rows.append(row)
    _mark_prepare_failures(results_dir, sweep, rows, own_configs)
    return rows


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
        if record is _MISSING:
            return None  # removed since the listing: prepared now
        return f"prepare_data: {record.get('reason') or 'no reason recorded'}"


def _data_key_of(config: Any) -> str | None:
    """The data key of a run config mapping; None when it is not a config data_spec can read."""
    try:
        return data_key(data_spec(config))
    except (KeyError, TypeError, ValueError, AttributeError):  # an old or hand-edited config.yaml: stays pending
        return None


def _recorded_data_key(run_dir: str) -> str | None:
    """The data key of the config.yaml in a run folder (a full YAML parse; None when absent or unusable)."""
    import yaml

    try:
        config = yaml.load(
            _read(os.path.join(run_dir, "config.yaml")), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return _data_key_of(config)


def _mark_prepare_failures(results_dir: str, sweep: Sweep, rows: list[dict], own_configs: OwnConfigs) -> None:
    """`pending` and `missing` runs whose data failed to prepare become `failed`, with the reason. The data
    key of a pending run comes from its own config.yaml (read the fast way: when it hashes to the sweep's
    config for the run, the sweep's key, shared by runs that swept no data key; else a full parse), that of
    a missing run from the sweep. Nothing is read when no preparation failed."""
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
            if raw is not None and own_configs.read(raw).sha256 != config_sha256(sweep.runs[name].config):
                key = _recorded_data_key(run_dir)
        reason = failures.reason(key) if key else None
        if reason:
            row.update(status="failed", reason=reason)


# ---------------------------------------------------------------------------------------------------------------
# each run's own config.yaml: its hash (against meta.json) and the values of the swept keys

_KEY_LINE = re.compile(r"( *)([A-Za-z_][A-Za-z0-9_]*):( .*)?$")
_PLAIN_NAME = re.compile(r" [A-Za-z0-9/][A-Za-z0-9/._-]*$")  # a run_name / output_dir value that needs no parsing
_BREAKS = ("\r", "\x85", "\u2028", "\u2029")  # line breaks to YAML that str.split("\n") does not split on
# numbers in the forms whose YAML (1.1, PyYAML) value is int(text) / float(text): no '_', no leading zeros,
# no sexagesimal, no .inf; parsed without the ~0.1 ms that a yaml.load call costs (sampled sweeps have a
# distinct learning rate in every run)
_INT = re.compile(r" +(0|-?[1-9][0-9]*) *$")
_FLOAT = re.compile(r" +(-?[0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?) *$")
_ABSENT = object()


class OwnConfig:
    """What one run's config.yaml says: `sha256` (ledsweep.config.config_sha256 of its mapping), `values`
    (swept dotted key -> value, None where absent) and `problem` (why it could not be read, or None)."""

    __slots__ = ("sha256", "values", "problem")

    def __init__(self, sha256: str | None, values: dict, problem: str | None = None):
        self.sha256, self.values, self.problem = sha256, values, problem


class OwnConfigs:
    """Reads the config.yaml files of a sweep's runs. A full YAML parse costs about 0.3-0.6 ms a file
    (3-6 s for 10,000 runs), so files are compared line by line with a template (the first one that is
    plain `key: value` YAML): a file whose lines differ from it only in the values of single-line leaves
    is read by parsing those values alone (cached: a sweep has few distinct values) and hashing the
    template's canonical JSON with them substituted. Anything else (other lines changed, comments,
    reordering, another layout) is parsed in full. Both ways give the same mapping and hash."""

    def __init__(self, keys: list[str], max_templates: int = 8):
        self.paths = {k: tuple(k.split(".")) for k in keys}
        self.key_of = {p: k for k, p in self.paths.items()}
        self.template: _Template | None = None
        self.tries = max_templates  # files tried as the template before giving up on the fast way
        self.scalars: dict[str, tuple[Any, str] | None] = {}

    def read(self, raw: bytes | object) -> OwnConfig:
        if raw is _MISSING:
            return OwnConfig(None, dict.fromkeys(self.paths), "config.yaml is missing")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return OwnConfig(None, dict.fromkeys(self.paths), "config.yaml: not UTF-8 text")
        if self.template is not None:
            fast = self._fast(text)
            if fast is not None:
                return fast
        return self._full(text)

    def _full(self, text: str) -> OwnConfig:
        import yaml

        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as e:
            why = " ".join(str(e).split())
            return OwnConfig(None, dict.fromkeys(self.paths), f"config.yaml: not valid YAML ({why})")
        if not isinstance(data, dict):
            return OwnConfig(None, dict.fromkeys(self.paths), "config.yaml: not a mapping of config keys")
        try:
            sha = config_sha256(data)
        except (TypeError, ValueError):  # a value JSON cannot hold (a YAML date): not a config ledsweep wrote
            sha = None
        values = {k: _get(data, p) for k, p in self.paths.items()}
        if self.template is None and self.tries > 0:
            self.tries -= 1
            self.template = _Template.build(text, data, self.paths)
        return OwnConfig(sha, {k: None if v is _ABSENT else v for k, v in values.items()})

    def _fast(self, text: str) -> OwnConfig | None:
        t = self.template
        lines = text.split("\n")
        if len(lines) != len(t.lines):
            return None
        seq, values = None, None
        for i in itertools.compress(t.indices, map(operator.ne, lines, t.lines)):  # the lines that differ
            slot, prefix = t.slot[i], t.prefix[i]
            line = lines[i]
            if prefix is None or not line.startswith(prefix):
                return None  # a comment, a section header or a key changed
            rest = line[len(prefix) :]
            if slot is None:  # run_name / output_dir: not hashed, not a column; must stay a one-line plain value
                if not _PLAIN_NAME.match(rest):
                    return None
                continue
            parsed = self.scalars.get(rest, _ABSENT)
            if parsed is _ABSENT:
                parsed = self.scalars[rest] = _parse_value(rest)
            if parsed is None or slot in t.under_keys:
                return None
            if seq is None:
                seq, values = list(t.seq), dict(t.values)
            seq[2 * slot + 1] = parsed[1]
            key = self.key_of.get(t.slots[slot])
            if key is not None:
                values[key] = parsed[0]
        if seq is None:
            return OwnConfig(t.sha256, dict(t.values))
        return OwnConfig(hashlib.sha256("".join(seq).encode()).hexdigest(), values)


def _parse_value(rest: str) -> tuple[Any, str] | None:
    """(value, canonical JSON) of the text after `key:` on one line, or None when it is not a complete value
    on its own (a multi-line or block scalar, an alias, ...) or JSON cannot hold it."""
    import yaml

    if (rest and rest[0] != " ") or any(b in rest for b in _BREAKS):
        return None
    if m := _INT.match(rest):
        return int(m[1]), m[1].lstrip("+")
    if m := _FLOAT.match(rest):
        value = float(m[1])
        return value, json.dumps(value)
    try:
        parsed = yaml.load("k:" + rest, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        value = parsed["k"]
        if not isinstance(parsed, dict) or len(parsed) != 1 or (isinstance(value, str) and rest.lstrip()[:1] in "|>"):
            return None
        return value, json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (yaml.YAMLError, TypeError, ValueError, KeyError):
        return None


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return _ABSENT
        data = data[part]
    return data


class _Template:
    """A config.yaml in plain block style (`key: value` lines, `key:` section headers, comments, blank
    lines), its parsed mapping, and config_sha256's canonical JSON split around every leaf value."""

    def __init__(self, lines, prefix, slot, slots, seq, values, sha256, under_keys):
        self.lines, self.prefix, self.slot, self.slots = lines, prefix, slot, slots
        self.indices = range(len(lines))
        self.seq, self.values, self.sha256 = seq, values, sha256
        self.under_keys = under_keys  # slots inside a swept key's value (a mapping): read those files in full

    @classmethod
    def build(cls, text: str, data: dict, paths: dict[str, tuple]) -> _Template | None:
        if any(b in text for b in _BREAKS):
            return None
        lines = text.split("\n")
        content = [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
        prefix: list[str | None] = [None] * len(lines)
        leaf_of: dict[int, tuple] = {}
        stack: list[tuple[int, str]] = []
        for n, i in enumerate(content):
            m = _KEY_LINE.match(lines[i])
            if not m:
                return None
            indent, key, rest = len(m[1]), m[2], m[3]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = (*(k for _, k in stack), key)
            following = lines[content[n + 1]] if n + 1 < len(content) else ""
            deeper = len(following) - len(following.lstrip(" ")) > indent
            if rest is None or not rest.strip():
                if not deeper:
                    return None  # `key:` with nothing under it: a null that a value line could turn into a section
                stack.append((indent, key))
                continue
            if deeper or "&" in rest or "*" in rest:
                return None  # a multi-line value, or an anchor or alias (a value shared by two lines)
            prefix[i] = f"{m[1]}{key}:"
            leaf_of[i] = path
        leaves = _leaf_paths(data)
        if leaves is None or sorted(leaves) != sorted(leaf_of.values()):
            return None  # the lines do not map one to one onto the parsed leaves (duplicates, odd keys)
        hashed = {k: v for k, v in data.items() if k not in IDENTITY_KEYS}
        parts, slots = [""], []
        _canonical(hashed, (), parts, slots)
        try:
            texts = [json.dumps(_get(data, p), sort_keys=True, separators=(",", ":")) for p in slots]
            canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        seq = [s for pair in zip(parts, [*texts, ""]) for s in pair][:-1]
        if "".join(seq) != canonical:
            return None
        slot_index = {p: j for j, p in enumerate(slots)}
        slot = [slot_index.get(leaf_of[i]) if i in leaf_of else None for i in range(len(lines))]
        values = {k: None if (v := _get(data, p)) is _ABSENT else v for k, p in paths.items()}
        under = {j for j, s in enumerate(slots) if any(len(s) > len(p) and s[: len(p)] == p for p in paths.values())}
        return cls(lines, prefix, slot, slots, seq, values, hashlib.sha256(canonical.encode()).hexdigest(), under)


def _leaf_paths(data: dict, path: tuple = ()) -> list[tuple] | None:
    out = []
    for k, v in data.items():
        if not isinstance(k, str):
            return None
        if isinstance(v, dict) and v:
            sub = _leaf_paths(v, (*path, k))
            if sub is None:
                return None
            out += sub
        else:
            out.append((*path, k))
    return out


def _canonical(data: dict, path: tuple, parts: list[str], slots: list[tuple]) -> None:
    """json.dumps(data, sort_keys=True, separators=(",", ":")) as fixed text in `parts` around one slot per leaf."""
    parts[-1] += "{"
    for n, k in enumerate(sorted(data)):
        parts[-1] += ("," if n else "") + json.dumps(k) + ":"
        v = data[k]
        if isinstance(v, dict) and v:
            _canonical(v, (*path, k), parts, slots)
        else:
            slots.append((*path, k))
            parts.append("")
    parts[-1] += "}"


# ---------------------------------------------------------------------------------------------------------------
# tables


def status_counts(rows: list[dict]) -> dict[str, int]:
    """Runs per status, in STATUSES order (zeros included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in rows:
        counts[r["status"]] += 1
    return counts


def counts_line(rows: list[dict], counts: dict[str, int]) -> str:
    """'4 runs: 3 completed, 1 failed' (statuses with no runs left out)."""
    return f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def json_rows(rows: list[dict]) -> list[dict]:
    """Rows for json.dumps(..., allow_nan=False): NaN and infinity (not JSON) become null."""
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]


def dumps_json(data: Any) -> str:
    """Strict JSON (no NaN or Infinity, which strict parsers reject) for --format json."""
    return json.dumps(data, indent=2, allow_nan=False)


@functools.cache
def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` degrees of freedom: scipy.stats.t.ppf(0.975, dof).
    scipy.special.stdtrit is the function that t.ppf evaluates; it is imported here, once a confidence
    interval is needed, because scipy.stats costs about 1 s to import and scipy.special half of that."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975))


def mean_std_ci95(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean, sample std (ddof=1) and 95% CI half-width (Student t); std/ci are None when n < 2."""
    n = len(values)
    if n == 0:
        return None, None, None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None, None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, t975(n - 1) * std / math.sqrt(n)


def group_keys(sweep: Sweep) -> list[str]:
    """Swept keys that define a configuration: every key but `seed`."""
    return [k for k in sweep.keys if k != "seed"]


def by_config(rows: list[dict], sweep: Sweep) -> list[dict]:
    """One row per configuration (seeds pooled): the sweep's configurations in sweep order, then any other
    that completed runs recorded (n_expected 0); n (completed runs, grouped by the values their own
    config.yaml holds), n_expected, and <m>_mean / <m>_std / <m>_ci95 for every metric (None where fewer
    than 1 / 2 values). Runs that are not `completed` (modified, failed, ...) are not counted."""
    keys, names = group_keys(sweep), metric_names(sweep)
    groups: dict[tuple, dict] = {}
    for run in sweep.runs.values():
        g = groups.setdefault(
            tuple(repr(run.overrides[k]) for k in keys),
            {"values": {k: run.overrides[k] for k in keys}, "n_expected": 0, "done": []},
        )
        g["n_expected"] += 1
    for r in rows:
        if r.get("status") == "completed":
            g = groups.setdefault(
                tuple(repr(r.get(k)) for k in keys),
                {"values": {k: r.get(k) for k in keys}, "n_expected": 0, "done": []},
            )
            g["done"].append(r)
    out = []
    for g in groups.values():
        row = dict(g["values"], n=len(g["done"]), n_expected=g["n_expected"])
        for m in names:
            mean, std, ci = mean_std_ci95([r[m] for r in g["done"] if r.get(m) is not None])
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_ci95": ci})
        out.append(row)
    return out


def by_config_columns(sweep: Sweep) -> list[str]:
    """Header of comparison_by_config.csv."""
    stats = [f"{m}_{s}" for m in metric_names(sweep) for s in STAT_SUFFIXES]
    return [*group_keys(sweep), "n", "n_expected", *stats]


def sort_rows(rows: list[dict], metric: str, key: str | None = None) -> list[dict]:
    """Best first by `metric` (column `key`, default the metric itself): ascending where lower is better
    (loss), else descending; rows not completed or without a finite value go last; ties by run_name."""
    registry.check_name(metric)
    col, sign = key or metric, -1 if registry.get(metric).higher_is_better else 1

    def order(r: dict) -> tuple:
        v = r.get(col)
        ok = _is_number(v) and math.isfinite(v) and r.get("status", "completed") == "completed"
        return (not ok, sign * v if ok else 0.0, r.get("run_name", ""))

    return sorted(rows, key=order)


def best_run(ranked: list[dict]) -> str | None:
    """The best run's name in rows ranked by sort_rows: the first, if it is a clean result (completed)."""
    return ranked[0]["run_name"] if ranked and ranked[0].get("status") == "completed" else None


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, float) else str(v)


def to_csv(rows: list[dict], header: list[str]) -> str:
    """CSV text (csv module); floats at full precision (repr), None as an empty cell: as the csv module
    writes them (`_cell`), but for booleans (true/false)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([_cell(v) if v is True or v is False else v for v in map(r.get, header)] for r in rows)
    return buf.getvalue()


def write_tables(
    results_dir: str | Path, sweep: Sweep, out_dir: str | Path, sort: str | None = None, rows: list[dict] | None = None
) -> tuple[Path, Path]:
    """Write `comparison.csv` and `comparison_by_config.csv` into `out_dir` atomically, best first by
    `sort` (default the sweep's primary metric); return their paths. `rows`: already collected rows."""
    rows = collect(results_dir, sweep) if rows is None else rows
    return _write(rows, sweep, Path(out_dir), sort or sweep.primary_metric)


def _write(rows: list[dict], sweep: Sweep, out_dir: Path, metric: str) -> tuple[Path, Path]:
    groups = sort_rows(by_config(rows, sweep), metric, key=f"{metric}_mean")
    runs_csv, groups_csv = out_dir / "comparison.csv", out_dir / "comparison_by_config.csv"
    atomic_write_text(runs_csv, to_csv(sort_rows(rows, metric), columns(sweep)))
    atomic_write_text(groups_csv, to_csv(groups, by_config_columns(sweep)))
    return runs_csv, groups_csv


# ---------------------------------------------------------------------------------------------------------------
# readable tables (terminal, Markdown, comparison.html) and the command line: scripts/aggregate.py

NUMBER_FORMATS = {"runtime_seconds": ".4f"}  # number columns of the readable tables that are not metrics


def display_columns(sweep: Sweep) -> list[str]:
    """Columns of the readable tables (aggregate.py, compare.py, comparison.html): the CSV has them all."""
    shown = [m for m in metric_names(sweep) if registry.get(m).shown]
    return ["run_name", "status", *sweep.keys, *shown, *halving_columns(sweep), *NUMBER_FORMATS, "reason"]


def format_cell(col: str, v: Any, metrics: tuple[str, ...] = (), width: int = 80) -> str:
    """One cell of a readable table: a number in a metric column (or its _mean/_std/_ci95) in the metric's
    display format (metrics_registry; `metrics`: the sweep's extra metric names, shown with the defaults),
    runtime_seconds likewise; anything else, swept values included, at full precision (1e-05 must not print
    as 0.0000), cut to `width` characters."""
    if _is_number(v):
        base = col.rsplit("_", 1)[0] if col.endswith(tuple(f"_{s}" for s in STAT_SUFFIXES)) else col
        for name in (col, base):
            if name in metrics or registry.is_known(name):
                return registry.get(name).format(v)
        if col in NUMBER_FORMATS:
            return format(v, NUMBER_FORMATS[col])
    text = _cell(v).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def render(rows: list[dict], header: list[str], markdown: bool = False, metrics: tuple[str, ...] = ()) -> str:
    """A readable text (or Markdown) table of `header` columns; numbers as `format_cell` writes them."""
    cells = [[format_cell(c, r.get(c), metrics) for c in header] for r in rows]
    if markdown:
        lines = [header, ["---"] * len(header), *cells]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in lines)
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    fmt = lambda line: "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, cells)])


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """--sweep/--config/--results/--sort/--format: shared by scripts/aggregate.py and scripts/compare.py."""
    p.add_argument("--sweep", required=True, help="sweep name (a key of `sweeps:` in the workflow config)")
    p.add_argument("--config", default="config/config.yaml", help="workflow config YAML (default: %(default)s)")
    p.add_argument("--results", default="results", help="folder holding the run folders (default: %(default)s)")
    p.add_argument(
        "--sort",
        metavar="METRIC",
        help=f"metric to rank by: {', '.join(registry.names())} or one of the sweep's extra metrics "
        f"(default: the sweep's primary_metric)",
    )
    p.add_argument("--format", choices=("table", "csv", "markdown", "json"), default="table")


def load_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep named by --sweep in --config (raises ConfigError naming the file or sweep)."""
    from .config import ConfigError, load_yaml
    from .sweep import load_sweeps

    config = load_yaml(args.config)
    if not isinstance(config, dict):
        raise ConfigError(f"{args.config}: expected a mapping with a 'sweeps' section")
    sweep = load_sweeps(config, only=[args.sweep], results_dir=args.results)[args.sweep]
    if not os.path.isdir(args.results):  # mistyped, or no run has started yet: the table says missing, this says why
        print(f"warning: --results: {args.results}: no such folder (yet): every run is missing", file=sys.stderr)
    return sweep


def sort_metric(args: argparse.Namespace, sweep: Sweep) -> str:
    """--sort, or the sweep's primary metric; ConfigError for a name that is not one of the sweep's metrics."""
    from .config import ConfigError

    metric = args.sort or sweep.primary_metric
    if metric not in metric_names(sweep):
        raise ConfigError(
            f"--sort {metric}: not a metric of sweep {sweep.name}; expected one of {', '.join(metric_names(sweep))}"
        )
    return metric


def main(argv: list[str] | None = None) -> int:
    """`aggregate.py --sweep NAME ...`: print (and optionally write) the sweep's comparison tables."""
    from .config import ConfigError

    p = argparse.ArgumentParser(prog="aggregate.py", description="Compare the runs of a sweep (works mid-sweep).")
    add_sweep_arguments(p)
    p.add_argument(
        "--write",
        nargs="?",
        const="",
        metavar="DIR",
        help="also write comparison.csv + comparison_by_config.csv to DIR (default DIR: <results>/sweeps/<sweep>/)",
    )
    args = p.parse_args(argv)
    try:
        sweep = load_sweep(args)
        metric = sort_metric(args, sweep)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rows = sort_rows(collect(args.results, sweep), metric)
    counts = status_counts(rows)
    if args.write is not None:
        out_dir = args.write or os.path.join(args.results, "sweeps", sweep.name)
        try:
            paths = _write(rows, sweep, Path(out_dir), metric)
        except OSError as e:
            print(f"error: --write {out_dir}: {e.strerror or e}", file=sys.stderr)
            return 2
        print("wrote " + " and ".join(map(str, paths)), file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write(to_csv(rows, columns(sweep)))
        print(counts_line(rows, counts), file=sys.stderr)
    elif args.format == "json":
        print(dumps_json({"sweep": sweep.name, "sort": metric, "counts": counts, "runs": json_rows(rows)}))
    else:
        md, names = args.format == "markdown", metric_names(sweep)
        print(f"sweep {sweep.name}: {len(rows)} runs, sorted by {metric}\n")
        print(render(rows, display_columns(sweep), md, names))
        if "seed" in sweep.keys:
            groups = sort_rows(by_config(rows, sweep), metric, key=f"{metric}_mean")
            stats = [f"{metric}_{s}" for s in STAT_SUFFIXES]
            print("\nby config (seeds pooled; ci95 = Student t half-width):\n")
            print(render(groups, [*group_keys(sweep), "n", "n_expected", *stats], md, names))
        print(f"\n{counts_line(rows, counts)}")
    return 0
