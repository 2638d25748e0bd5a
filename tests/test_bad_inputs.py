"""Every invalid run config under tests/bad_inputs/runs/ is refused before any training.

Each file starts with `# expect: <text>`: the error must contain it (it names the key or file),
the exit code must be 2, within seconds, and nothing may be written under the output folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

CASES = sorted((REPO / "tests" / "bad_inputs" / "runs").glob("*.yaml"))


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_run_config_is_refused(case, tmp_path):
    t0 = time.perf_counter()
    proc = run_cli("train_baseline.py", "--config", case, "--output-dir", tmp_path / "results", timeout=60)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected(case) in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists(), "a refused config must not create a run folder"
    assert not Path("/tmp/ledsweep-pwned").exists()
    assert elapsed < 30, f"refusal took {elapsed:.1f} s"
