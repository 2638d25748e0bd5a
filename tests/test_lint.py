"""The workflow passes `snakemake --lint` and `snakefmt --check` (as the Snakemake catalog expects); the package
keeps its shape (issue 23): layered imports, no Snakemake job object in the library, short modules."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out


def test_snakefmt_check_passes():
    proc = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "workflow"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check_and_format_are_clean():
    """The Python code passes `ruff check` and `ruff format --check` (config in pyproject.toml)."""
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run([str(BIN / "ruff"), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_imports_read_bottom_up():
    """The import-linter layers contract of pyproject.toml holds (no circles, nothing imports upward)."""
    proc = subprocess.run([str(BIN / "lint-imports")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "0 broken" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_library_never_sees_snakemakes_job_object_and_modules_stay_short():
    """A rule's script unpacks `snakemake` and passes plain values: nothing in src/ reads `snakemake.<attr>`.
    No module of src/, workflow/scripts/, scripts/ is above 450 lines (ruff C901 bounds each function)."""
    src = sorted((REPO / "src" / "ledsweep").glob("*.py"))
    job_object = [
        f"{p.name}:{i}"
        for p in src
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if "snakemake." in line and "snakemake.org" not in line
    ]
    assert not job_object, job_object
    modules = src + sorted((REPO / "workflow" / "scripts").glob("*.py")) + sorted((REPO / "scripts").glob("*.py"))
    long = {str(p.relative_to(REPO)): n for p in modules if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long
