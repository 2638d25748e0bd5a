"""Shared helpers: run the real CLIs in fresh processes on a seconds-long tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = REPO / "tests" / "configs" / "tiny_run.yaml"


def run_cli(script: str, *args, cwd=REPO, env: dict | None = None, timeout: int = 300, check: bool = False):
    """Run scripts/<script> in a fresh process; return the CompletedProcess (text)."""
    proc = subprocess.run(
        [PY, str(REPO / "scripts" / script), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


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


@pytest.fixture(scope="session")
def baseline(tmp_path_factory) -> Path:
    """One finished tiny run (fresh process), shared by the read-only tests."""
    tmp = tmp_path_factory.mktemp("baseline")
    cfg = write_config(tmp / "tiny.yaml", tmp / "results")
    run_cli("train_baseline.py", "--config", cfg, check=True)
    return tmp / "results" / "tiny_run"
