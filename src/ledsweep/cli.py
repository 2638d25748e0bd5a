"""Command-line entry points (scripts/*.py are thin wrappers around these)."""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

from .config import ConfigError, RunConfig, load_config
from .runfolder import RunFolder, RunFolderError

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
    data.load_splits(cfg.data, need=need + (("test",) if "evaluate" in stages else ()))
    if "train" in stages:
        model_mod.check_model_source(cfg)
        resolve_precision(cfg.training.precision)
    if "evaluate" in stages and cfg.evaluation.bertscore_model:
        metrics.resolve_bertscore_model(cfg.evaluation.bertscore_model)


def run_stages(cfg: RunConfig, stages: tuple[str, ...], overwrite: bool, threads: int | None = None,
               stop_after: int | None = None) -> int:
    from . import evaluate, train

    if "train" in stages:
        run = train.prepare_run_folder(cfg, overwrite=overwrite)
    else:
        run = RunFolder(cfg.run_dir)
        if not (run.checkpoint / "config.json").is_file():
            raise RunFolderError(f"{run.checkpoint}: no trained checkpoint to evaluate (run the train stage first)")
        if run.is_complete():
            if not overwrite:
                raise RunFolderError(f"{run.path} is a finished run (summary.json exists); pass --overwrite to re-evaluate")
            run.summary.unlink()
        run.remove_temp_files()
    stage = "train"
    try:
        meta = train.train(cfg, run, threads, stop_after) if "train" in stages else None
        stage = "evaluate"
        if "evaluate" in stages:
            evaluate.evaluate(cfg, run, meta, threads)
    except train.TrainingInterrupted as e:
        log.warning("%s", e)
        return EXIT_INTERRUPTED
    except Exception as e:
        run.record_failure(stage, f"{type(e).__name__}: {e}")
        log.error("run %s failed in %s: %s (details in %s)", cfg.run_name, stage, e, run.failure)
        raise
    return 0


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train_baseline.py",
        description="Train and evaluate one LED run from one YAML config; writes <output_dir>/<run_name>/.",
    )
    parser.add_argument("--config", required=True, help="run config YAML (e.g. config/led_baseline.yaml)")
    parser.add_argument("--output-dir", help="parent folder of the run folder (overrides output_dir in the config)")
    parser.add_argument("--overwrite", action="store_true", help="redo a finished run (deletes its results first)")
    parser.add_argument(
        "--stage", choices=("all", "train", "evaluate"), default="all",
        help="train only (checkpoint/ + meta.json), evaluate only (summary.json), or both (default)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads when the config leaves num_threads unset (recorded in meta.json)"
    )
    parser.add_argument(
        "--stop-after-step", type=int, metavar="K",
        help="checkpoint and stop after optimizer step K, exit 143 (for audit replays: verify_run.py)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    stages = ("train", "evaluate") if args.stage == "all" else (args.stage,)
    cfg = None
    try:
        cfg = load_config(args.config, output_dir=args.output_dir)
        preflight(cfg, stages)
        return run_stages(cfg, stages, args.overwrite, args.threads, args.stop_after_step)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        run = RunFolder(cfg.run_dir) if cfg else None
        if run and run.config.is_file() and not run.is_complete():  # a workflow run whose input broke
            run.record_failure("preflight", str(e))
        return EXIT_BAD_INPUT
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:  # already recorded in failure.json and logged
        return EXIT_FAILED


def summarize_main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(prog="summarize.py", description="Summarize documents with a saved checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="a run's checkpoint/ folder")
    parser.add_argument("--input", required=True, help="JSONL/CSV/Parquet file with a text column, or - for stdin lines")
    parser.add_argument("--text-column", default="document", help="column holding the documents")
    parser.add_argument("--output", help="write JSONL here (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, help="override the checkpoint's generation config")
    parser.add_argument("--num-beams", type=int, help="override the checkpoint's generation config")
    args = parser.parse_args(argv)
    setup_logging()
    ckpt = Path(args.checkpoint)
    if not (ckpt / "config.json").is_file():
        print(f"error: --checkpoint: {ckpt} is not a checkpoint folder (no config.json)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        docs = _read_documents(args.input, args.text_column)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .summarize import summarize

    with open(args.output, "w", encoding="utf-8") if args.output else nullcontext(sys.stdout) as f:
        for doc, summary in zip(docs, summarize(ckpt, docs, args.batch_size, args.max_new_tokens, args.num_beams)):
            f.write(json.dumps({"document": doc, "summary": summary}, ensure_ascii=False) + "\n")
    return 0


def _read_documents(source: str, column: str) -> list[str]:
    if source == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    from .data import _read_rows

    rows = _read_rows(Path(source), "--input")
    if not rows or column not in rows[0]:
        raise ConfigError(f"--input: {source} has no '{column}' column (use --text-column)")
    return [str(r[column]) for r in rows]
