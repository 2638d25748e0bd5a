"""What each workflow rule does, given plain values: the rule's script unpacks `snakemake` (paths, params,
threads, resources as a dict) and calls one function here. Snakemake owns the paths: a run folder is the
folder of the rule's outputs, the prepared data is the rule's input, the log is the rule's log.

Every job runs offline (rule prefetch filled the HF cache), logs to its rule's log, and exits with the
project's one failure policy (`errors.job_outcome`): 0 done, 1 failed, 2 bad input, 143 stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from . import halving, metrics_registry, search
from .config import dump_yaml, from_dict, load_config, training_config, training_part
from .data import failure_path
from .distributed import STOP_FILE, layout_from_resources
from .errors import EXIT_FAILED, ConfigError, job_outcome, log_to
from .prepare import prepare_data
from .resume import discard_other_training
from .run import preflight_prepared, run_stages
from .runfolder import RunFolder, RunLock, atomic_write_text, now_iso, write_json
from .train import train
from .worker import train_ranks

log = logging.getLogger("ledsweep")


def _job(log_path: str, mode: str = "w") -> None:
    """Offline (everything was prefetched into the HF cache by rule prefetch), logging to the rule's log."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    log_to(log_path, mode)


def prepare_data_job(spec: dict, out: str, log_path: str, threads: int) -> int:
    """rule prepare_data: a data spec -> results/prepared/<key>/ (tokenized splits + manifest). A failure is
    also written where the tables look (`data.failure_path`): every run of this data fails with it."""
    _job(log_path)
    failure = failure_path(Path(out))

    def record(reason: str) -> None:
        write_json(
            failure, {"status": "failed", "stage": "prepare_data", "reason": reason, "log": log_path, "time": now_iso()}
        )

    with job_outcome(f"prepare_data {Path(out).name}", record) as outcome:
        try:
            manifest = prepare_data(spec, Path(out), num_proc=threads)
        except ConfigError as e:  # bad input is not a traceback, but every run of this data still fails with it
            record(str(e))
            raise
        failure.unlink(missing_ok=True)
        log.info("prepared data %s in %.1f s: %s", manifest["key"], manifest["seconds"], manifest["rows"])
    return outcome.rc


def _train(
    config: dict, trained: RunFolder, prepared: str, threads: int, resources: dict, stop_after: int | None = None
) -> int:
    """Train the training keys `config` into `trained` (results/<run>/trained/), resuming from trained/resume/
    (not an output: a retried job resumes from it). The resources choose the processes
    (`distributed.layout_from_resources`: gpu/gres, nodes, ddp_procs): one trains here, several via torchrun.
    `stop_after`: checkpoint and stop after that optimizer step (exit 143: a halving rung)."""

    def record(reason: str) -> None:
        RunFolder(trained.path.parent).record_failure("train", reason)

    with job_outcome(f"run {trained.path.parent.name} in train", record) as outcome:
        cfg = training_config(config, source=f"{trained.path}: training config")
        layout = layout_from_resources(resources)
        preflight_prepared(cfg, ("train",), Path(prepared))
        trained.path.mkdir(parents=True, exist_ok=True)
        with RunLock(trained.path.parent, what="train"):  # the run folder's lock, as train_baseline.py takes it
            trained.remove_temp_files()
            (trained.path / STOP_FILE).unlink(missing_ok=True)  # a stop request of an earlier attempt
            discard_other_training(trained, cfg)
            atomic_write_text(trained.path / "train_config.yaml", dump_yaml(config))
            if layout.distributed:
                outcome.rc = train_ranks(trained, layout, config, prepared, threads, stop_after, resources.get("mpi"))
            else:
                train(
                    cfg,
                    trained,
                    Path(prepared),
                    threads,
                    stop_after,
                    restart_on_data_change=True,
                    decoding=False,
                    events_dir=trained.path.parent,
                )
    return outcome.rc


def train_job(
    config: dict, trained_dir: str, prepared: str, log_path: str, threads: int, resources: dict, decisions=()
) -> int:
    """rule train: the training keys of a run + prepared data -> results/<run>/trained/. Only the first run of
    each group that differs in decoding keys alone trains (rule link_checkpoint shares it). In a halving sweep
    (`decisions`: the rung decisions the run went through), a run that halving stopped gets its rung
    checkpoint as trained/; the others train to the full budget and record the rung they reached."""
    _job(log_path, "a")  # a retried job keeps the history of its attempts
    trained = RunFolder(trained_dir)
    where = halving.reached(list(decisions), trained.path.parent.name) if decisions else None
    if where and where["status"] == "stopped":
        with job_outcome(f"run {trained.path.parent.name}: finish it at its rung") as outcome:
            with RunLock(trained.path.parent, what="finish a stopped run"):
                halving.finish_stopped(trained, where)
            log.info(
                "run %s stopped by halving at rung %d (step %d): %s",
                trained.path.parent.name,
                where["rung"],
                where["step"],
                where["decision"],
            )
        return outcome.rc
    rc = _train(config, trained, prepared, threads, resources)
    if rc == 0 and where:
        write_json(trained.meta, {**json.loads(trained.meta.read_text()), "halving": where})
    return rc


def train_rung_job(
    config: dict, out: str, step: int, trained_dir: str, prepared: str, log_path: str, threads: int, resources: dict
) -> int:
    """rule train_rung: train the run to the rung's step (resuming; as many processes as rule train would use),
    then score the rung checkpoint on the validation split -> results/<run>/rungs/<step>.json."""
    _job(log_path, "a")
    trained = RunFolder(trained_dir)
    ckpt = halving.keep_rung(trained, step)
    if not halving.complete(ckpt):
        code = _train(training_part(config), trained, prepared, threads, resources, stop_after=step)
        ckpt = halving.keep_rung(trained, step)
        if not halving.complete(ckpt):  # interrupted before the rung (time limit, signal) or failed: retry resumes
            return code or EXIT_FAILED
    if not halving.rung_meta(trained, step).is_file():  # also when killed just after the rung checkpoint
        # trained/meta.json (the record of the training that reached the rung) is also the train rule's output,
        # which Snakemake removes before that job runs: keep it where a stopped run's finish step finds it
        if not trained.meta.is_file():
            log.error("%s: missing; the training that reached step %d left no record: rerun it", trained.meta, step)
            return EXIT_FAILED
        shutil.copy2(trained.meta, halving.rung_meta(trained, step))

    def record(reason: str) -> None:
        RunFolder(trained.path.parent).record_failure(f"train_rung {step}", reason)

    with job_outcome(f"run {trained.path.parent.name} scoring rung step {step}", record) as outcome:
        cfg = from_dict(config, source=f"{out}: run config")
        with RunLock(trained.path.parent, what=f"score rung step {step}"):
            result = halving.score_rung(cfg, ckpt, Path(prepared), threads)
        result.update(run_name=cfg.run_name, step=step, checkpoint=str(ckpt), time=now_iso())
        write_json(out, result)
        log.info("run %s at step %d: %s", cfg.run_name, step, json.dumps(result["metrics"]))
    return outcome.rc


def decision_job(results: list[str], rules: dict, sweep: str, rung: int, out: str, log_path: str) -> int:
    """checkpoint halving_decision: the rung results of the runs that entered -> who goes on (a file)."""
    log_to(log_path)
    h = search.Halving(tuple(rules["rungs"]), rules["keep"], rules["metric"])
    scores = {
        r["run_name"]: r["metrics"].get(h.metric) for r in map(json.loads, map(Path.read_text, map(Path, results)))
    }
    higher = metrics_registry.get(h.metric).higher_is_better
    ranking, kept, stopped = search.decide(scores, h, higher)
    write_json(
        out,
        {
            "sweep": sweep,
            "rung": rung,
            "rungs": list(h.rungs),
            "step": h.rungs[rung - 1],
            "next_step": h.rungs[rung],
            "metric": h.metric,
            "higher_is_better": higher,
            "keep": h.keep,
            "entered": len(ranking),
            "ranking": [{"run_name": n, h.metric: scores[n]} for n in ranking],
            "kept": kept,
            "stopped": stopped,
            "time": now_iso(),
        },
    )
    log.info(
        "sweep %s rung %d (step %d): %d of %d go on to step %d by %s: %s",
        sweep,
        rung,
        h.rungs[rung - 1],
        len(kept),
        len(ranking),
        h.rungs[rung],
        h.metric,
        ", ".join(kept),
    )
    return 0


def evaluate_job(config: str, run_dir: str, prepared: str, log_path: str, threads: int) -> int:
    """rule evaluate: one run's checkpoint/ + prepared test split -> predictions.jsonl + summary.json (the
    failure itself is recorded in failure.json by `run.run_stages`)."""
    _job(log_path)
    with job_outcome(f"run {Path(run_dir).name} in evaluate") as outcome:
        outcome.rc = run_stages(
            load_config(config),
            ("evaluate",),
            overwrite=True,
            prepared=Path(prepared),
            threads=threads,
            run_dir=Path(run_dir),
        )
    return outcome.rc
