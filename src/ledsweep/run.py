"""One run's stages (train, evaluate) on its prepared data, in its run folder, under the folder's lock: what
`train_baseline.py` and the workflow's evaluate job both do, and every check that can refuse the run first."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from . import data, evaluate, metrics, resume, train
from . import model as model_mod
from .config import ConfigError, RunConfig, config_sha256, differing_keys, load_config
from .errors import EXIT_INTERRUPTED, RunFolderError, TrainingInterrupted, one_line
from .prepare import default_num_proc, ensure_prepared
from .runfolder import RunFolder, RunLock, RunLocked, check_run_location
from .schema import BUILTIN_OPTIMIZERS
from .worker import Followers

log = logging.getLogger("ledsweep")


def preflight(cfg: RunConfig, stages: tuple[str, ...]) -> None:
    """Every check that can fail on bad input, before any run folder is created."""
    need = ("train", "validation") if "train" in stages else ()
    data.check_sources(cfg.data, need=need + (("test",) if "evaluate" in stages else ()))
    if "train" in stages:
        model_mod.check_model_source(cfg)
        train.resolve_precision(cfg.training.precision)
        check_trackers(cfg.training.report_to)
    if "evaluate" in stages and cfg.evaluation.bertscore_model:
        metrics.resolve_bertscore_model(cfg.evaluation.bertscore_model)
    if "evaluate" in stages and cfg.evaluation.extra_metrics:  # an uncached or broken module: now, not after training
        metrics.load_extra_metrics(cfg.evaluation.extra_metrics)


def preflight_prepared(cfg: RunConfig, stages: tuple[str, ...], prepared: Path) -> None:
    """The checks that need the prepared data (its tokenizer), before any run folder is created: a
    model.factory model is built once and checked (a PreTrainedModel, an encoder-decoder, positions that hold
    the configured lengths; ConfigError naming the factory). It is built on the meta device (no memory, no
    weights), or for real where the code cannot run there."""
    if "train" not in stages or not cfg.model.factory:
        return
    import torch

    tok = data.load_tokenizer(prepared)
    try:
        with torch.device("meta"):
            model_mod.new_model(cfg, tok)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - code that cannot run on the meta device: its real errors come next
        model_mod.new_model(cfg, tok)


def run_stages(cfg: RunConfig, stages: tuple[str, ...], *args, run_dir: Path | None = None, **kwargs) -> int:
    """`_run_stages` (same arguments) holding the run folder's exclusive lock for the whole step.

    Before the lock: the folder's place is checked (a file in the way, inside another run's folder).
    Under it: an evaluate-only step refuses a config other than the one the run recorded."""
    folder = Path(run_dir) if run_dir else cfg.run_dir
    check_run_location(folder)
    if "train" in stages:
        check_optimizer(cfg.training.optim)
    if "train" not in stages and not folder.is_dir():
        raise RunFolderError(f"{folder}: no such run folder to evaluate (run the train stage first)")
    with RunLock(folder, what="+".join(stages)):
        if "train" not in stages:
            check_recorded_config(cfg, RunFolder(folder))
        return _run_stages(cfg, stages, *args, run_dir=run_dir, **kwargs)


def check_trackers(names: list[str]) -> None:
    """training.report_to: each tracker's package installed here (the Trainer would fail at its start)."""
    if not names:
        return
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    missing = [n for n in names if n not in get_available_reporting_integrations()]
    if missing:
        raise ConfigError(f"training.report_to: {', '.join(missing)}: not installed here (pip install {missing[0]})")


def check_optimizer(name: str) -> None:
    """training.optim must be usable here (its package installed), not only a name transformers knows."""
    if name in BUILTIN_OPTIMIZERS:
        return
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        try:
            Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=tmp, optim=name, report_to=[]))
        except (ImportError, ValueError) as e:
            raise ConfigError(f"training.optim: {name!r} cannot be used here: {one_line(e)}") from None


def check_recorded_config(cfg: RunConfig, run: RunFolder) -> None:
    """Evaluate only what was trained: `cfg` must equal the run's config.yaml (but for run_name/output_dir)."""
    if not run.config.is_file():
        raise RunFolderError(f"{run.config}: missing; the run folder records no config to evaluate against")
    try:
        recorded = load_config(run.config)
    except ConfigError as e:
        raise RunFolderError(f"{run.config}: the run's recorded config is not valid: {e}") from None
    keys = differing_keys(recorded.to_dict(), cfg.to_dict())
    if keys:
        shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
        raise RunFolderError(
            f"--config differs from the config {run.path} was trained with ({run.config}) in {shown}; "
            f"evaluate with --config {run.config}, or retrain"
        )


def _run_stages(
    cfg: RunConfig,
    stages: tuple[str, ...],
    overwrite: bool,
    prepared: Path,
    threads: int | None = None,
    stop_after: int | None = None,
    restart_on_data_change: bool | None = None,
    run_dir: Path | None = None,
    followers: Followers | None = None,
    callbacks: tuple = (),
) -> int:
    """Train and/or evaluate `cfg` on its prepared data (a `prepare.ensure_prepared` / prepare_data folder)
    in `run_dir` (default: `<output_dir>/<run_name>`; the workflow passes the folder of its outputs).

    `restart_on_data_change` (default: `overwrite`): a resumed run whose data changed starts over
    instead of being refused. `followers`: the other ranks of a torchrun launch, told when to train.
    `callbacks`: more TrainerCallbacks (`train.train`)."""
    if restart_on_data_change is None:
        restart_on_data_change = overwrite

    if "train" in stages:
        run = resume.prepare_run_folder(cfg, overwrite=overwrite, run_dir=run_dir)
    else:
        run = RunFolder(run_dir or cfg.run_dir)
        if not (run.checkpoint / "config.json").is_file():
            raise RunFolderError(f"{run.checkpoint}: no trained checkpoint to evaluate (run the train stage first)")
        if run.is_complete():
            if not overwrite:
                raise RunFolderError(
                    f"{run.path} is a finished run (summary.json exists); pass --overwrite to re-evaluate"
                )
            run.summary.unlink()
        run.remove_temp_files()
    stage = "train"
    try:
        if "train" in stages and followers:  # under torchrun: the other ranks join training now
            followers.tell({"run_dir": str(run.path), "prepared": str(prepared), "restart": restart_on_data_change})
        meta = (
            train.train(cfg, run, prepared, threads, stop_after, restart_on_data_change, callbacks=callbacks)
            if "train" in stages
            else None
        )
        stage = "evaluate"
        if "evaluate" in stages:
            evaluate.evaluate(cfg, run, prepared, meta, threads)
    except TrainingInterrupted as e:
        log.warning("%s", e)
        return EXIT_INTERRUPTED
    except Exception as e:
        run.record_failure(stage, f"{type(e).__name__}: {e}")
        log.error("run %s failed in %s: %s (details in %s)", cfg.run_name, stage, e, run.failure)
        raise
    return 0


def prepare_for(cfg: RunConfig, prepared_dir: str | None, threads: int | None, keep: str | None = None) -> Path:
    """The run's prepared data under `prepared_dir` (default <output_dir>/prepared), reused or built;
    `keep`: see `prepare.ensure_prepared`."""
    root = Path(prepared_dir) if prepared_dir else Path(cfg.output_dir) / data.PREPARED_DIRNAME
    path, _ = ensure_prepared(cfg, root, default_num_proc(cfg, threads), keep=keep)
    return path


def record_if_free(run: RunFolder, cfg: RunConfig, stage: str, reason: str) -> None:
    """failure.json, only in a run of this very config that no other process holds (else not ours to mark)."""
    try:
        if config_sha256(load_config(run.config)) != config_sha256(cfg):
            return
    except ConfigError:
        return
    try:
        with RunLock(run.path, what="record failure", orphan_wait=0):
            run.record_failure(stage, reason)
    except RunLocked:
        pass
