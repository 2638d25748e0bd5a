"""Command-line entry points (scripts/*.py are thin wrappers around these)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, RunConfig, differing_keys, load_config
from .runfolder import RunFolder, RunFolderError, RunLock, check_run_location

log = logging.getLogger("ledsweep")
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 143


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname).1s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def preflight(cfg: RunConfig, stages: tuple[str, ...]) -> None:
    """Every check that can fail on bad input, before any run folder is created."""
    from . import data, metrics
    from . import model as model_mod
    from .train import resolve_precision

    need = ("train", "validation") if "train" in stages else ()
    data.check_sources(cfg.data, need=need + (("test",) if "evaluate" in stages else ()))
    if "train" in stages:
        model_mod.check_model_source(cfg)
        resolve_precision(cfg.training.precision)
    if "evaluate" in stages and cfg.evaluation.bertscore_model:
        metrics.resolve_bertscore_model(cfg.evaluation.bertscore_model)
    if "evaluate" in stages and cfg.evaluation.extra_metrics:  # an uncached or broken module: now, not after training
        metrics.load_extra_metrics(cfg.evaluation.extra_metrics)


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


# need nothing beyond torch; any other optimizer is built once before training to see that it can be
BUILTIN_OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop")


def check_optimizer(name: str) -> None:
    """training.optim must be usable here (its package installed), not only a name transformers knows."""
    if name in BUILTIN_OPTIMIZERS:
        return
    import tempfile

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
) -> int:
    """Train and/or evaluate `cfg` on its prepared data (a `prepare.ensure_prepared` / prepare_data folder)
    in `run_dir` (default: `<output_dir>/<run_name>`; the workflow passes the folder of its outputs).

    `restart_on_data_change` (default: `overwrite`): a resumed run whose data changed starts over
    instead of being refused."""
    from . import evaluate, train

    if restart_on_data_change is None:
        restart_on_data_change = overwrite

    if "train" in stages:
        run = train.prepare_run_folder(cfg, overwrite=overwrite, run_dir=run_dir)
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
        if "train" in stages:  # under torchrun: the other ranks join training now (see train_main)
            _release_ranks(("train", str(run.path), str(prepared), restart_on_data_change))
        meta = (
            train.train(cfg, run, prepared, threads, stop_after, restart_on_data_change) if "train" in stages else None
        )
        stage = "evaluate"
        if "evaluate" in stages:
            evaluate.evaluate(cfg, run, prepared, meta, threads)
    except train.TrainingInterrupted as e:
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
    from . import data
    from .prepare import default_num_proc, ensure_prepared

    root = Path(prepared_dir) if prepared_dir else Path(cfg.output_dir) / data.PREPARED_DIRNAME
    path, _ = ensure_prepared(cfg, root, default_num_proc(cfg, threads), keep=keep)
    return path


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train_baseline.py",
        description="Train and evaluate one LED run from one YAML config; writes <output_dir>/<run_name>/.",
    )
    parser.add_argument("--config", required=True, help="run config YAML (e.g. config/led_baseline.yaml)")
    parser.add_argument("--output-dir", help="parent folder of the run folder (overrides output_dir in the config)")
    parser.add_argument("--overwrite", action="store_true", help="redo a finished run (deletes its results first)")
    parser.add_argument(
        "--stage",
        choices=("all", "train", "evaluate"),
        default="all",
        help="train only (checkpoint/ + meta.json), evaluate only (summary.json), or both (default)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads when the config leaves num_threads unset (recorded in meta.json)",
    )
    parser.add_argument(
        "--stop-after-step",
        type=positive_int,
        metavar="K",
        help="checkpoint and stop after optimizer step K, exit 143 (for audit replays: verify_run.py)",
    )
    parser.add_argument(
        "--allow-layout-change",
        action="store_true",
        help="resume on another number of processes, nodes, batch size or accumulation than the run trained "
        "with (refused otherwise: it trains on other batches); each attempt's layout is in meta.json",
    )
    parser.add_argument(
        "--prepared-dir",
        metavar="DIR",
        help="cache of prepared (tokenized) data, shared by runs with the same data settings "
        "(default: <output_dir>/prepared, the workflow's results/prepared)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    stages = ("train", "evaluate") if args.stage == "all" else (args.stage,)
    if args.allow_layout_change:
        from .train import ALLOW_LAYOUT_CHANGE

        os.environ[ALLOW_LAYOUT_CHANGE] = "1"  # read where the resume is decided (train.check_resume_layout)
    from . import distributed

    if distributed.active():  # one of several ranks started by torchrun
        distributed.init()
        if not distributed.is_main():
            return _train_rank(args)
        global _released
        _released = False
        rc = EXIT_FAILED
        try:
            rc = _train_main(args, stages)
        finally:
            _release_ranks(("exit", rc))  # when rank 0 stopped before training: the others exit too
        if rc != EXIT_FAILED:
            distributed.finish()
        return rc
    return _train_main(args, stages)


# rank 0 of a torchrun launch tells the other ranks once, through `distributed.share`, what to do
_released = True


def _release_ranks(message: tuple) -> None:
    global _released
    if _released:
        return
    from . import distributed

    _released = True
    distributed.share(message)


def _train_rank(args) -> int:
    """Rank > 0 of `torchrun ... train_baseline.py`: wait for rank 0 (checks, data, run folder, lock), train
    alongside it, and exit; evaluation is rank 0's alone. Exit status as rank 0's for what it did not do."""
    from . import distributed, train

    message = distributed.share(None)
    if message[0] == "exit":
        return message[1]
    _, run_dir, prepared, restart = message
    rc = 0
    try:
        cfg = load_config(args.config, output_dir=args.output_dir)
        train.train(cfg, RunFolder(run_dir), Path(prepared), args.threads, args.stop_after_step, restart)
    except train.TrainingInterrupted:
        rc = EXIT_INTERRUPTED
    except Exception as e:
        log.error("rank %d: %s: %s", distributed.rank(), type(e).__name__, one_line(e))
        return EXIT_FAILED
    distributed.finish()
    return rc


def _train_main(args, stages: tuple[str, ...]) -> int:
    cfg = None
    try:
        cfg = load_config(args.config, output_dir=args.output_dir)
        check_run_location(cfg.run_dir)  # before anything is written under output_dir
        RunLock(cfg.run_dir).check_free()  # another process on this run: refuse at once, not after preparing
        if "train" not in stages and cfg.run_dir.is_dir():
            check_recorded_config(cfg, RunFolder(cfg.run_dir))  # again under the lock (run_stages)
        if "train" in stages:
            check_optimizer(cfg.training.optim)
        preflight(cfg, stages)
        keep = None  # evaluate only: the data its checkpoint was trained on, never prepared anew
        if "train" not in stages:
            trained = RunFolder(cfg.run_dir)
            keep = (trained.read_json(trained.meta, default={}).get("prepared_data") or {}).get("fingerprint")
        prepared = prepare_for(cfg, args.prepared_dir, args.threads, keep)  # before any run folder exists
        return run_stages(cfg, stages, args.overwrite, prepared, args.threads, args.stop_after_step)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        run = RunFolder(cfg.run_dir) if cfg else None
        if run and run.config.is_file() and not run.is_complete():  # a workflow run whose input broke
            _record_if_free(run, cfg, "preflight", str(e))
        return EXIT_BAD_INPUT
    except RunFolderError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:
        if not getattr(e, "ledsweep_failure_json", None):  # not yet reported (run_stages reports its own)
            report_unexpected(e)
        return EXIT_FAILED


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def one_line(message: object) -> str:
    """A message as one line: multi-line problem lists joined with '; '."""
    return "; ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


def report_unexpected(e: BaseException) -> None:
    """A failure outside any run folder (so no run log): the traceback on stderr, then one line naming it."""
    import traceback

    traceback.print_exception(e, file=sys.stderr)
    print(f"error: {one_line(f'{type(e).__name__}: {e}')}", file=sys.stderr)


def _record_if_free(run: RunFolder, cfg: RunConfig, stage: str, reason: str) -> None:
    """failure.json, only in a run of this very config that no other process holds (else not ours to mark)."""
    from .config import config_sha256
    from .runfolder import RunLocked

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


def summarize_main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="summarize.py", description="Summarize documents with a saved checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="a run's checkpoint/ folder")
    parser.add_argument(
        "--input", required=True, help="JSONL/JSON/CSV/Parquet file with a text column, or - for stdin lines"
    )
    parser.add_argument("--text-column", default="document", help="column holding the documents")
    parser.add_argument("--output", help="write JSONL here, atomically once every summary is made (default: stdout)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="documents per generate() call (>= 1)")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, help="override the checkpoint's generation config (>= 1)"
    )
    parser.add_argument("--num-beams", type=positive_int, help="override the checkpoint's generation config (>= 1)")
    args = parser.parse_args(argv)
    from .summarize import read_documents, summarize

    ckpt = Path(args.checkpoint)
    try:
        if not (ckpt / "config.json").is_file():
            raise ConfigError(f"--checkpoint: {ckpt} is not a checkpoint folder (no config.json)")
        if not any((ckpt / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
            raise ConfigError(f"--checkpoint: {ckpt} has no weights (model.safetensors)")
        if args.output and Path(args.output).is_dir():
            raise ConfigError(f"--output: {args.output} is a folder; give a file name")
        docs = read_documents(args.input, args.text_column)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    setup_logging()
    try:
        lines = (
            json.dumps({"document": doc, "summary": summary}, ensure_ascii=False) + "\n"
            for doc, summary in zip(docs, summarize(ckpt, docs, args.batch_size, args.max_new_tokens, args.num_beams))
        )
        if args.output:  # nothing is written until every summary exists: an existing file stays whole
            from .runfolder import atomic_write_text

            atomic_write_text(args.output, "".join(lines))
        else:
            for line in lines:
                sys.stdout.write(line)
    except Exception as e:
        report_unexpected(e)
        return EXIT_FAILED
    return 0
