"""What a training continues from, and what it may not change: the run folder it claims, the newest complete
resume checkpoint (`<run>/resume/`, never a workflow output, so Snakemake does not delete it when a job fails),
and the record of each attempt, against which the data and the process layout of a resume are checked.

A checkpoint counts only once `ledsweep-checkpoint-complete` is written inside it, after the Trainer has saved
everything else; half-written ones are removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from . import events, provenance
from .config import ConfigError, RunConfig, config_sha256, dump_yaml, load_config, train_config_sha256
from .data import data_changes, data_hashes, recorded_data_changes
from .model import load_weights
from .runfolder import COMPLETE_MARKER, RunFolder, RunFolderError, atomic_write_text, now_iso, write_json

log = logging.getLogger("ledsweep")


def prepare_run_folder(cfg: RunConfig, overwrite: bool = False, run_dir: Path | None = None) -> RunFolder:
    """Create or reuse the run folder (`run_dir`, by default `<output_dir>/<run_name>`); never clobber a
    finished run or another config."""
    run = RunFolder(run_dir or cfg.run_dir)
    if run.is_complete():
        if not overwrite:
            raise RunFolderError(
                f"{run.path} is a finished run (summary.json exists); pass --overwrite to redo it "
                f"or --output-dir to write elsewhere"
            )
        run.summary.unlink()  # first: the folder must stop looking complete before anything else goes
        for path in (run.resume, run.checkpoint):
            shutil.rmtree(path, ignore_errors=True)
        for path in (run.meta, run.predictions, run.log_history, run.failure):
            path.unlink(missing_ok=True)
        events.remove(run.path)
    elif run.config.is_file():
        try:
            previous = config_sha256(load_config(run.config))
        except ConfigError:
            previous = None
        if previous != config_sha256(cfg) and not overwrite:
            raise RunFolderError(
                f"{run.path} holds an unfinished run with a different config ({run.config}); "
                f"pass --overwrite to discard it, or use another run_name/--output-dir"
            )
    discard_other_training(run, cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_temp_files()
    text = dump_yaml(cfg.to_dict())
    if not run.config.is_file() or run.config.read_text() != text:
        atomic_write_text(run.config, text)  # untouched when equal: keeps Snakemake's mtimes stable
    return run


def discard_other_training(run: RunFolder, cfg: RunConfig) -> None:
    """Resume state trained with other training keys is removed (a decoding-only change keeps it)."""
    want = train_config_sha256(cfg)
    if any(a.get("train_config_sha256") != want for a in run.read_json(run.attempts, default=[])):
        log.warning("discarding resume state of a different training config in %s", run.resume)
        shutil.rmtree(run.resume, ignore_errors=True)


def checkpoint_problem(path: Path) -> str | None:
    """Why a resume checkpoint cannot be used, or None: marker, trainer state and weights must be whole."""
    if not (path / COMPLETE_MARKER).is_file():
        return "no completeness marker (killed while saving?)"
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        return f"trainer_state.json unreadable ({e})"
    from safetensors import safe_open

    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        return f"model.safetensors unreadable ({e})"
    return None


def latest_checkpoint(resume_dir: Path) -> Path | None:
    """Newest usable checkpoint; unusable ones (killed mid-write, truncated) are deleted."""
    if not resume_dir.is_dir():
        return None
    found = []
    for path in resume_dir.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not m or not path.is_dir():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            found.append((int(m.group(1)), path))
        else:
            log.warning("skipping incomplete checkpoint %s: %s (removed)", path.name, problem)
            shutil.rmtree(path, ignore_errors=True)
    return max(found)[1] if found else None


def finished_training(checkpoint: Path | None, max_steps: int | None) -> bool:
    """True when `checkpoint` was saved at the end of training: its step reached `max_steps` (the config's;
    without one, the step count the Trainer planned). Resuming from it would train again: the Trainer takes
    one more step when max_steps is not a multiple of the steps per epoch (issue 21.1)."""
    if checkpoint is None:
        return False
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    target = max_steps or state.get("max_steps") or 0
    return target > 0 and state.get("global_step", 0) >= target


def load_finished(trainer, checkpoint: Path) -> None:
    """The trainer as it was when the finished training saved `checkpoint`: its weights (tied ones tied
    again) and its state (step, log history, tokens seen); nothing is trained."""
    from transformers.trainer_callback import TrainerState

    load_weights(trainer.model, checkpoint / "model.safetensors")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))


class DataChanged(ConfigError):
    """A resumed run whose prepared data (data files or tokenizer) differs from its first attempt's."""


LAYOUT_KEYS = ("world_size", "num_nodes", "per_device_train_batch_size", "gradient_accumulation_steps")


LAYOUT_RECORD = (*LAYOUT_KEYS, "effective_batch_size")  # what each attempt records of its layout


ALLOW_LAYOUT_CHANGE = "LEDSWEEP_ALLOW_LAYOUT_CHANGE"  # =1: resume on another process layout (--allow-layout-change)


def record_attempt(
    cfg: RunConfig,
    run: RunFolder,
    resumed_from: Path | None,
    manifest: dict,
    layout: dict | None = None,
    model_code: dict | None = None,
) -> list[dict]:
    attempts = run.read_json(run.attempts, default=[])
    attempts.append(
        {
            "start_time": now_iso(),
            "train_config_sha256": train_config_sha256(cfg),
            "data_fingerprint": manifest["fingerprint"],
            "data_sha256": data_hashes(manifest),
            "tokenizer_sha256": manifest["tokenizer_sha256"],
            "model_code": model_code,
            "slurm_job_id": provenance.slurm_job_id(),
            "resumed_from_step": int(resumed_from.name.split("-")[1]) if resumed_from else None,
            "layout": {k: (layout or {}).get(k) for k in LAYOUT_RECORD},
        }
    )
    write_json(run.attempts, attempts)
    return attempts


def check_resume_layout(run: RunFolder, layout: dict) -> None:
    """A resume keeps the process layout the run trained with (issue 21.3): another number of processes or
    nodes, batch or accumulation trains on other batches (2 processes: twice the batch). ConfigError naming
    both layouts, unless LEDSWEEP_ALLOW_LAYOUT_CHANGE=1 (train_baseline.py --allow-layout-change) asks for it;
    each attempt's layout is in meta.json's attempt_history either way."""
    previous = [a["layout"] for a in run.read_json(run.attempts, default=[]) if a.get("layout")]
    if not previous:
        return
    was, now = previous[-1], {k: layout.get(k) for k in LAYOUT_RECORD}
    if all(was.get(k) == now[k] for k in LAYOUT_KEYS):
        return

    def text(d: dict) -> str:
        return (
            f"{d['world_size']} process(es) on {d['num_nodes']} node(s), batch {d['per_device_train_batch_size']} "
            f"x accumulation {d['gradient_accumulation_steps']} (effective {d['effective_batch_size']})"
        )

    if os.environ.get(ALLOW_LAYOUT_CHANGE) == "1":
        log.warning("run %s resumes on another layout, as asked: %s, was %s", run.name, text(now), text(was))
        return
    raise ConfigError(
        f"{run.path}: trained on {text(was)}, would resume on {text(now)}: another layout trains on other "
        f"batches; resume on the same layout, start over (--overwrite), or pass --allow-layout-change"
    )


def check_resume_data(run: RunFolder, manifest: dict, restart_on_change: bool, model_code: dict | None = None) -> None:
    """Resume never mixes data or model code: the first attempt's data fingerprint (and, with model.factory,
    its code's sha256) must be today's.

    On a change: refuse (DataChanged, naming what changed), or, when `restart_on_change` (the workflow
    re-running train because its data or code changed; --overwrite), discard the resume state and start over."""
    attempts = run.read_json(run.attempts, default=[])
    first = next((a.get("data_fingerprint") for a in attempts if a.get("data_fingerprint")), None)
    if first is None or not run.resume.is_dir():
        return
    changed = []
    code_was, code_now = attempts[0].get("model_code") or {}, model_code or {}
    if code_was.get("sha256") != code_now.get("sha256"):
        changed.append(f"the model code ({code_now.get('file') or code_was.get('file')})")
    if first != manifest["fingerprint"]:
        # what the first attempt trained on: its own record (the workflow's meta.json is gone by now: Snakemake
        # removes a train job's outputs before it runs, and every file read as changed), else meta.json's
        first_record = next((a for a in attempts if a.get("data_sha256")), None)
        if first_record:
            changed.append(data_changes(first_record["data_sha256"], first_record.get("tokenizer_sha256"), manifest))
        else:
            changed.append(recorded_data_changes(run.read_json(run.meta, default={}), manifest))
    if changed:
        _restart_or_refuse(run, " and ".join(changed), restart_on_change)


def _restart_or_refuse(run: RunFolder, what: str, restart: bool) -> None:
    if not restart:
        raise DataChanged(
            f"{run.path}: {what} changed since this run started (its resume checkpoints were trained before the "
            f"change); pass --overwrite to start it again from step 0, or undo the change"
        )
    log.warning("%s changed since %s started: discarding its resume state and starting from step 0", what, run.name)
    shutil.rmtree(run.resume, ignore_errors=True)
    run.meta.unlink(missing_ok=True)
