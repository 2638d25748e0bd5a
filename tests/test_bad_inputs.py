"""Every invalid run config under tests/bad_inputs/runs/ is refused before any training.

Each file starts with `# expect: <text>`: the error must contain it (it names the key or file),
the exit code must be 2, within seconds, and nothing may be written under the output folder.
The whole corpus goes through `train_baseline.py`'s entry point in this process (`cli.train_main`);
a few cases also run as real processes (the script, its imports, its exit status).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import REPO, main_in_process, run_cli

from ledsweep import cli

CASES = sorted((REPO / "tests" / "bad_inputs" / "runs").glob("*.yaml"))
AS_PROCESSES = ["lr_nan", "missing_data_file", "yaml_python_tag"]


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert set(AS_PROCESSES) <= {c.stem for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_run_config_is_refused(case, tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.chdir(REPO)  # the corpus names the demo data by relative paths, as the script runs them
    t0 = time.perf_counter()
    proc = main_in_process(
        cli.train_main, "--config", case, "--output-dir", tmp_path / "results", capsys=capsys, caplog=caplog,
        monkeypatch=monkeypatch,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected(case) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists(), "a refused config must not create a run folder"
    assert not Path("/tmp/ledsweep-pwned").exists()
    assert elapsed < 30, f"refusal took {elapsed:.1f} s"


@pytest.mark.parametrize("name", AS_PROCESSES)
def test_bad_run_config_is_refused_by_the_script(name, tmp_path):
    case = REPO / "tests" / "bad_inputs" / "runs" / f"{name}.yaml"
    proc = run_cli("train_baseline.py", "--config", case, "--output-dir", tmp_path / "results", timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected(case) in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()
    assert not Path("/tmp/ledsweep-pwned").exists()
