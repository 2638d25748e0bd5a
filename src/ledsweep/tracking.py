"""A sweep's run folders as views in the trackers people already watch: MLflow (one experiment per sweep, one
MLflow run per run folder) and TensorBoard's HParams table. The run folders stay the record; these rules (local,
on the submitting host) only read them, so jobs never write to a tracking store: SQLite on a shared filesystem and
many concurrent writers are MLflow users' most reported failures on clusters.

Importing is idempotent: an MLflow run is keyed by run name and config hash, and carries a hash of what it was
made from (`ledsweep.record`); importing again leaves an unchanged run alone and replaces a changed one (the old
one is deleted), so the store never holds two runs for one run folder, nor one that describes another run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from . import events
from .aggregate import collect, metric_names, results_folder
from .config import load_yaml
from .runfolder import read_jsonl, write_json
from .sweep import Sweep, load_sweeps

log = logging.getLogger("ledsweep")

STORE_FILE = "mlflow.db"  # the default store: <results>/mlflow.db (MLflow 3's own default backend is SQLite)
IMPORTED = ("completed", "stopped", "modified", "corrupt")  # runs with a summary.json (modified/corrupt: tagged)
BATCH = 500  # metrics per log_batch call (MLflow's limit is 1000 metrics, 100 params, 100 tags)


def tracking_uri(results_dir: str | Path) -> str:
    """MLFLOW_TRACKING_URI (a team server), else the SQLite file under results/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(results_dir) / STORE_FILE).resolve()}"


def flatten(config: dict) -> dict[str, Any]:
    """A run config as dotted keys (model.d_model: 64); a mapping value inside a section (factory_args) stays one."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):  # a section
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _ms(iso: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@contextlib.contextmanager
def store_lock(uri: str):
    """One importer at a time on a local SQLite store (two sweeps' rules may run at once)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri.removeprefix("sqlite:///")).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class RunRecord:
    """What one MLflow run is made of: a run folder's config, summary, meta and loss history."""

    def __init__(self, run_dir: Path, row: dict, sweep: Sweep):
        self.dir, self.row, self.name = run_dir, row, row["run_name"]
        self.config = _read(lambda: load_yaml(run_dir / "config.yaml")) or {}
        self.summary = _read(lambda: json.loads((run_dir / "summary.json").read_text())) or {}
        self.meta = _read(lambda: json.loads((run_dir / "meta.json").read_text())) or {}
        self.losses = _read(lambda: read_jsonl(run_dir / "step_losses.jsonl")) or []
        self.evals = [h for h in _read(lambda: read_jsonl(run_dir / "log_history.jsonl")) or [] if "eval_loss" in h]
        self.metric_names = metric_names(sweep)
        self.key = f"{self.name}@{row.get('config_sha256') or self.meta.get('config_sha256')}"
        made_of = json.dumps([row, self.summary, self.meta, self.losses, self.evals], sort_keys=True, default=str)
        self.record = hashlib.sha256(made_of.encode()).hexdigest()

    def tags(self, sweep: str) -> dict[str, str]:
        halving = self.summary.get("halving") or self.meta.get("halving") or {}
        jobs = self.meta.get("slurm_job_ids") or []
        tags = {
            "ledsweep.sweep": sweep,
            "ledsweep.run_name": self.name,
            "ledsweep.key": self.key,
            "ledsweep.record": self.record,
            "ledsweep.status": self.row["status"],
            "ledsweep.reason": self.row.get("reason") or "",
            "ledsweep.run_dir": str(self.dir.resolve()),
            "ledsweep.git_commit": self.meta.get("git_commit") or "",
            "ledsweep.slurm_job_ids": ";".join(map(str, jobs)),
            "ledsweep.halving_rung": str(halving.get("rung", "")),
            "mlflow.source.git.commit": self.meta.get("git_commit") or "",
            "mlflow.note.content": f"Run folder: `{self.dir.resolve()}` (status {self.row['status']})",
        }
        return {k: v for k, v in tags.items() if v != ""}

    def metrics(self) -> list[tuple[str, float, int, int]]:
        """(key, value, timestamp ms, step): summary.json's metrics at the last step, then the histories."""
        end = _ms(self.summary.get("end_time")) or 0
        last = self.meta.get("global_step") or 0
        found = self.summary.get("metrics") or {}
        out = [(m, float(found[m]), end, last) for m in self.metric_names if _number(found.get(m))]
        if _number(self.summary.get("runtime_seconds")):
            out.append(("runtime_seconds", float(self.summary["runtime_seconds"]), end, last))
        out += [("train_loss", float(r["loss"]), end, int(r["step"])) for r in self.losses if _number(r.get("loss"))]
        out += [
            ("eval_loss", float(h["eval_loss"]), end, int(h["step"])) for h in self.evals if _number(h["eval_loss"])
        ]
        return out

    def params(self) -> dict[str, str]:
        """The run's own resolved config, flattened (values as text, at most MLflow's 6,000 characters)."""
        values = flatten(self.config)
        return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))[:6000] for k, v in values.items()}


def _read(load):
    try:
        return load()
    except Exception:  # noqa: BLE001 - a corrupt file is the row's status, not an error
        return None


def import_sweep(results_dir: str | Path, sweep: Sweep, uri: str, artifacts: str = "link") -> dict:
    """Every run of `sweep` with a summary.json into the MLflow experiment named after the sweep. Returns what
    mlflow.json records: the store, experiment, each run's MLflow run id and what this import did."""
    from mlflow.tracking import MlflowClient

    rows = [r for r in collect(results_dir, sweep) if r["status"] in IMPORTED]
    with store_lock(uri):
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(sweep.name)
        exp_id = experiment.experiment_id if experiment else client.create_experiment(sweep.name)
        client.set_experiment_tag(exp_id, "mlflow.experimentKind", "custom_model_development")  # the runs table
        known = {r.data.tags.get("ledsweep.run_name"): r for r in _all_runs(client, exp_id)}
        done: dict[str, list[str]] = {"imported": [], "updated": [], "unchanged": []}
        ids = {}
        for row in rows:
            rec = RunRecord(Path(results_dir) / row["run_name"], row, sweep)
            old = known.get(rec.name)
            if old and (old.data.tags.get("ledsweep.key"), old.data.tags.get("ledsweep.record")) == (
                rec.key,
                rec.record,
            ):
                ids[rec.name] = old.info.run_id
                done["unchanged"].append(rec.name)
                continue
            if old:
                client.delete_run(old.info.run_id)  # it describes a run folder that is no longer what it was
            ids[rec.name] = _create(client, exp_id, rec, sweep.name, artifacts)
            done["updated" if old else "imported"].append(rec.name)
    shown = uri if uri.startswith("sqlite:") else uri.split("@")[-1]  # no credentials in the record
    return {"tracking_uri": shown, "experiment": sweep.name, "experiment_id": exp_id, "runs": ids, **done}


def _all_runs(client, exp_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _create(client, exp_id: str, rec: RunRecord, sweep: str, artifacts: str) -> str:
    from mlflow.entities import Metric, Param

    start = _ms(rec.meta.get("start_time")) or _ms(rec.summary.get("end_time"))
    run = client.create_run(exp_id, start_time=start, tags=rec.tags(sweep), run_name=rec.name)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in rec.params().items()]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i : i + 100])
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in rec.metrics()]
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    if artifacts == "copy":
        for name in ("config.yaml", "summary.json", "meta.json", "predictions.jsonl", "plots/loss.png"):
            if (rec.dir / name).is_file():
                client.log_artifact(run_id, str(rec.dir / name))
    status = "FINISHED" if rec.row["status"] in ("completed", "stopped") else "FAILED"
    client.set_terminated(run_id, status=status, end_time=_ms(rec.summary.get("end_time")))
    return run_id


def track_job(config: dict, sweep_name: str, summaries: list[str], mlflow_out: str, hparams_out: str) -> None:
    """rule track: a sweep's run folders -> its MLflow experiment (`mlflow_out`: mlflow.json names what it
    holds) and one TensorBoard HParams session per finished run under `hparams_out`/<run>/."""
    sweep = load_sweeps(config, only=[sweep_name])[sweep_name]
    results = results_folder(summaries)
    write_hparams(results, sweep, Path(hparams_out))
    uri = tracking_uri(results)
    record = import_sweep(results, sweep, uri, (config.get("tracking") or {}).get("mlflow_artifacts", "link"))
    write_json(mlflow_out, record)
    print(
        f"sweep {sweep.name}: MLflow experiment {record['experiment']!r} ({len(record['runs'])} runs: "
        f"{len(record['imported'])} imported, {len(record['updated'])} updated) in {record['tracking_uri']}; "
        f"TensorBoard HParams in {hparams_out}"
    )


def write_hparams(results: str | Path, sweep: Sweep, out: Path) -> None:
    """Each finished run's swept keys and final metrics as an HParams session in `out`/<run>/."""
    out.mkdir(parents=True, exist_ok=True)
    for row in collect(results, sweep):
        if row["status"] in IMPORTED:
            params = {k: row.get(k) for k in sweep.keys}
            metrics = {m: row.get(m) for m in metric_names(sweep)}
            events.hparams(out / row["run_name"], {**params, "status": row["status"]}, metrics)
