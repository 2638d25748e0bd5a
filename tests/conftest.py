"""Shared helpers and fixtures: the real CLIs in fresh processes on a seconds-long tiny config.

Two tiers (README, "Tests"): `make test` runs `-m "not slow"`, `make test-all` everything. Both run on
pytest-xdist workers: a session fixture that trains or runs a sweep is built once for all workers
(`once`), and tests that share a module's expensive fixture run on one worker (`xdist_group`, below).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = REPO / "tests" / "configs" / "tiny_run.yaml"
TINY_SWEEP = REPO / "tests" / "configs" / "tiny_sweep.yaml"

# Tests that use one of these fixtures (built once per module or session) go to one xdist worker together,
# so the fixture is built once and its sweeps never compete with each other for the 2 cores.
GROUP_BY_FIXTURE = {
    "small_sweeps": "small-sweeps",
    "tiny_sweep": "tiny-sweep",
    "halving_sweep": "halving",
    "decoding_sweep": "decoding",
    "two_processes": "ddp",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = next((g for f, g in GROUP_BY_FIXTURE.items() if f in item.fixturenames), None)
        if item.get_closest_marker("slurm"):
            group = "slurm"  # one 2-CPU Slurm node: its tests take turns
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def run_cli(
    script: str,
    *args,
    cwd=REPO,
    env: dict | None = None,
    timeout: int = 300,
    check: bool = False,
    prepared: Path | None = None,
):
    """Run scripts/<script> in a fresh process; return the CompletedProcess (text).

    `prepared`: a --prepared-dir to share (the session's `prepared` fixture) instead of preparing the data
    again under the run's output_dir."""
    extra = ["--prepared-dir", str(prepared)] if prepared else []
    proc = subprocess.run(
        [PY, str(REPO / "scripts" / script), *map(str, args), *extra],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def main_in_process(main, *args, capsys, caplog, monkeypatch) -> subprocess.CompletedProcess:
    """A CLI entry point (`cli.train_main`, `cli.summarize_main`) called in this process, seconds faster than a
    fresh one: its exit status, and in `.stderr` the lines a process would show there (printed or logged)."""
    from ledsweep import cli

    monkeypatch.setattr(cli, "setup_logging", lambda: None)  # records go to caplog, read back below
    caplog.set_level(logging.INFO, logger="ledsweep")
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        rc = e.code
    lines = capsys.readouterr().err.splitlines()
    lines += [f"{r.levelname[0]} {r.getMessage()}" for r in caplog.records]
    caplog.clear()
    return subprocess.CompletedProcess(["in-process", *map(str, args)], rc, "", "\n".join(lines))


def write_config(path: Path, output_dir: Path, **overrides) -> Path:
    """The tiny test config with absolute data paths, output_dir and dotted-key overrides."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["output_dir"] = str(output_dir)
    for split in ("train", "validation", "test"):
        cfg["data"][f"{split}_file"] = str(REPO / "data" / "demo" / f"{split}.jsonl")
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        if value is None and leaf in node:
            del node[leaf]
        else:
            node[leaf] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def summary_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())["metrics"]


def once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `<pytest temp root>/<name>`, filled by `build(folder)` once per pytest run and shared by
    every xdist worker (the others wait for it). A build that failed is tried again by the next caller."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common parent (pytest-N/), not this worker's popen-gwK/
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def copy_tree(src: Path, dst: Path) -> Path:
    """A copy of a finished run or workflow folder (symlinks kept, mtimes kept: Snakemake sees nothing new)."""
    return Path(shutil.copytree(src, dst, symlinks=True))


@pytest.fixture
def in_process(capsys, caplog, monkeypatch):
    """`in_process(cli.train_main, "--config", path)`: `main_in_process` with this test's captures."""
    return lambda main, *args: main_in_process(main, *args, capsys=capsys, caplog=caplog, monkeypatch=monkeypatch)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A prepared-data cache shared by the whole session (`run_cli(..., prepared=prepared)`): the tiny
    data settings are tokenized once, not once per test folder (ensure_prepared locks per key)."""
    return once(tmp_path_factory, "prepared", lambda folder: None)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, prepared) -> Path:
    """One finished tiny run (fresh process), shared read-only by the session; copy it to change it."""

    def build(tmp: Path) -> None:
        cfg = write_config(tmp / "tiny.yaml", tmp / "results")
        run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)

    return once(tmp_path_factory, "baseline", build) / "results" / "tiny_run"


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """The tiny 2 x 2 sweep (tests/configs/tiny_sweep.yaml) run once through the local profile, rule all
    (tables and plots): a workflow folder to read. Tests that change it work on `copy_tree` of it."""
    from workflow_helpers import LOCAL, make_workdir, snakemake

    def build(tmp: Path) -> None:
        wd = make_workdir(tmp / "wd", TINY_SWEEP)
        proc = snakemake(wd, *LOCAL)
        assert proc.returncode == 0, proc.stdout[-6000:]

    return once(tmp_path_factory, "tiny_sweep", build) / "wd"


def tiny_model(kind: str, folder: Path, tok=None) -> str:
    """A tiny BART, T5, LongT5 or PEGASUS-X saved with `tok` (default: a BPE tokenizer trained offline on the
    demo documents) in `folder`: a local model folder for model.name, made in a second."""
    from transformers import AutoModelForSeq2SeqLM, BartConfig, LongT5Config, PegasusXConfig, T5Config

    from ledsweep.tokenization import train_bpe_tokenizer

    if tok is None:
        rows = [json.loads(line) for line in (REPO / "data" / "demo" / "train.jsonl").read_text().splitlines()]
        tok = train_bpe_tokenizer([[r["document"] for r in rows[:200]]], vocab_size=400, max_length=1024)
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    bart_like = dict(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=1024,
    )  # fmt: skip
    t5_like = dict(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)
    starts = dict(decoder_start_token_id=tok.pad_token_id)  # T5 and PEGASUS-X decode from <pad>
    config = {
        "bart": lambda: BartConfig(
            **bart_like,
            **ids,
            bos_token_id=tok.bos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            forced_eos_token_id=None,
        ),  # fmt: skip
        "t5": lambda: T5Config(**t5_like, **ids, **starts),
        "longt5": lambda: LongT5Config(**t5_like, local_radius=8, **ids, **starts),
        "pegasus_x": lambda: PegasusXConfig(**bart_like, block_size=16, num_global_tokens=4, **ids, **starts),
    }[kind]()
    AutoModelForSeq2SeqLM.from_config(config).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return str(folder)


SMALL_SWEEPS = """
sweeps:
  one:    # one run: the standard run folder through every rule
    base: config/tiny_run.yaml
    grid:
      seed: [1]
  half:   # successive halving: two sampled runs scored at step 6, the better one goes on to step 12
    base: config/tiny_run.yaml
    set: {evaluation.bertscore_model: null}
    sample: {n: 2, seed: 0, space: {training.learning_rate: {loguniform: [1.0e-3, 3.0e-3]}}}
    halving: {rungs: [6, 12], keep: 0.5, metric: loss}
  models: # beyond LED: two local model folders, each with its own tokenizer (its own prepared data)
    base: config/tiny_run.yaml
    set: {evaluation.bertscore_model: null}
    grid:
      model.name: [models/bart, models/t5]
  variant: # your own model code (examples/bart_variant.py), through the workflow
    base: config/tiny_run.yaml
    set: {evaluation.bertscore_model: null, model.factory: "examples/bart_variant.py:build"}
    grid:
      model.factory_args: [{embedding_gain: 0.5}]
"""


@pytest.fixture(scope="session")
def small_sweeps(tmp_path_factory) -> Path:
    """SMALL_SWEEPS run once through the local profile, rule all: the fast tier's real Snakemake runs (every
    rule: prepare_data, run_config, train_rung, halving_decision, train, link_checkpoint, evaluate, aggregate,
    plots). Read-only: tests that change it work on `copy_tree` of it."""
    from workflow_helpers import LOCAL, make_workdir, snakemake

    def build(tmp: Path) -> None:
        (tmp / "sweeps.yaml").write_text(SMALL_SWEEPS)
        wd = make_workdir(tmp / "wd", tmp / "sweeps.yaml")
        for kind in ("bart", "t5"):
            tiny_model(kind, wd / "models" / kind)
        proc = snakemake(wd, *LOCAL, "--set-threads", "train_rung=1")
        assert proc.returncode == 0, proc.stdout[-6000:]

    return once(tmp_path_factory, "small_sweeps", build) / "wd"
