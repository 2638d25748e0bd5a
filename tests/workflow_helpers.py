"""Run the real Snakemake workflow in a scratch working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import PY, REPO

# the local profile, each train/evaluate job on 1 thread: two jobs at a time on the 2 cores
LOCAL = ("--profile", "profiles/local", "--set-threads", "train=1", "evaluate=1")


def make_workdir(path: Path, sweep_config: str | Path, extra: dict[str, str] | None = None) -> Path:
    """A working directory that looks like a checkout: workflow/, profiles/, data/, config/."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "profiles", "data", "scripts", "src", "examples"):
        (path / name).symlink_to(REPO / name)
    (path / "config").mkdir()
    shutil.copy(REPO / "tests" / "configs" / "tiny_run.yaml", path / "config" / "tiny_run.yaml")
    shutil.copy(sweep_config, path / "config" / "config.yaml")
    for rel, text in (extra or {}).items():
        (path / rel).write_text(text)
    return path


def snakemake(workdir: Path, *args, targets=(), timeout: int = 600, env: dict | None = None):
    """`python -m snakemake TARGETS ARGS` in workdir; killed hard at the timeout (Snakemake ignores SIGTERM).

    Targets go first: options such as --forcerun and --set-threads take lists that would swallow them.
    """
    proc = subprocess.Popen(
        [PY, "-m", "snakemake", *map(str, targets), *map(str, args)],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, _ = proc.communicate()
        raise AssertionError(
            f"snakemake {' '.join(map(str, args))} timed out after {timeout}s\n{out[-6000:]}"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def jobs_run(output: str) -> list[str]:
    """'rule NAME:' / 'localrule NAME:' headers of the jobs Snakemake executed."""
    return [ln.split()[-1].rstrip(":") for ln in output.splitlines() if ln.startswith(("rule ", "localrule "))]
