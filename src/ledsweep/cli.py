"""The `ledsweep` command (`[project.scripts]`) and its subcommands; scripts/*.py are thin wrappers around them."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import compare, distributed, run, verify, worker
from .config import ConfigError, load_config
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, exit_code, one_line, report_unexpected, setup_logging
from .resume import ALLOW_LAYOUT_CHANGE
from .runfolder import RunFolder, RunLock, atomic_write_text, check_run_location
from .summarize import read_documents, summarize

log = logging.getLogger("ledsweep")


def main(argv: list[str] | None = None) -> int:
    """`ledsweep COMMAND [ARGS]`: one console script for every command."""
    commands = {
        "train": (train_main, "train and evaluate one run from one YAML config (scripts/train_baseline.py)"),
        "summarize": (summarize_main, "summarize documents with a run's checkpoint (scripts/summarize.py)"),
        "verify": (verify.main, "audit a finished run: drift and a replay (scripts/verify_run.py)"),
        "compare": (
            lambda a, prog: compare.main(a, compare=True, prog=prog),
            "a sweep's runs, best first (scripts/compare.py)",
        ),
        "aggregate": (compare.main, "a sweep's comparison tables, or write them (scripts/aggregate.py)"),
    }
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in commands:
        usage = "usage: ledsweep {" + ",".join(commands) + "} ...\n\n"
        usage += "".join(f"  {name:<10} {text}\n" for name, (_, text) in commands.items())
        help_asked = argv[:1] in (["-h"], ["--help"])
        if help_asked:
            print(usage, end="")
            return 0
        print(
            usage + (f"\nerror: unknown command {argv[0]!r}" if argv else "\nerror: a command is needed"),
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    command, _ = commands[argv[0]]
    return command(argv[1:], prog=f"ledsweep {argv[0]}")


def train_main(argv: list[str] | None = None, callbacks: tuple = (), prog: str = "train_baseline.py") -> int:
    """`train_baseline.py`; `callbacks`: more TrainerCallbacks for rank 0's training (bench/ times steps)."""
    parser = argparse.ArgumentParser(
        prog=prog,
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
        os.environ[ALLOW_LAYOUT_CHANGE] = "1"  # read where the resume is decided (resume.check_resume_layout)
    if not distributed.active():
        return _train_main(args, stages, None, callbacks)
    distributed.init()  # one of several ranks started by torchrun
    if not distributed.is_main():
        return worker.follow(args.config, args.output_dir, args.threads, args.stop_after_step)
    followers = worker.Followers()
    rc = EXIT_FAILED
    try:
        rc = _train_main(args, stages, followers, callbacks)
    finally:
        followers.done(rc)  # when rank 0 stopped before training: the others exit too
    if rc != EXIT_FAILED:
        distributed.finish()
    return rc


def _train_main(args, stages: tuple[str, ...], followers: worker.Followers | None, callbacks: tuple = ()) -> int:
    cfg = None
    try:
        cfg = load_config(args.config, output_dir=args.output_dir)
        check_run_location(cfg.run_dir)  # before anything is written under output_dir
        RunLock(cfg.run_dir).check_free()  # another process on this run: refuse at once, not after preparing
        if "train" not in stages and cfg.run_dir.is_dir():
            run.check_recorded_config(cfg, RunFolder(cfg.run_dir))  # again under the lock (run_stages)
        if "train" in stages:
            run.check_optimizer(cfg.training.optim)
        run.preflight(cfg, stages)
        keep = None  # evaluate only: the data its checkpoint was trained on, never prepared anew
        if "train" not in stages:
            trained = RunFolder(cfg.run_dir)
            keep = (trained.read_json(trained.meta, default={}).get("prepared_data") or {}).get("fingerprint")
        prepared = run.prepare_for(cfg, args.prepared_dir, args.threads, keep)  # before any run folder exists
        run.preflight_prepared(cfg, stages, prepared)
        return run.run_stages(
            cfg,
            stages,
            args.overwrite,
            prepared,
            args.threads,
            args.stop_after_step,
            followers=followers,
            callbacks=callbacks,
        )
    except Exception as e:
        rc = exit_code(e)
        if rc == EXIT_BAD_INPUT:
            print(f"error: {one_line(e)}", file=sys.stderr)
            folder = RunFolder(cfg.run_dir) if cfg and isinstance(e, ConfigError) else None
            if folder and folder.config.is_file() and not folder.is_complete():  # a workflow run whose input broke
                run.record_if_free(folder, cfg, "preflight", str(e))
        elif not getattr(e, "ledsweep_failure_json", None):  # not yet reported (run_stages reports its own)
            report_unexpected(e)
        return rc


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def summarize_main(argv: list[str] | None = None, prog: str = "summarize.py") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Summarize documents with a saved checkpoint.")
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
            atomic_write_text(args.output, "".join(lines))
        else:
            for line in lines:
                sys.stdout.write(line)
    except Exception as e:
        report_unexpected(e)
        return EXIT_FAILED
    return 0
