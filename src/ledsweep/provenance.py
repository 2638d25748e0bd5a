"""What a run ran on: host, device, Slurm job, versions, git state (for meta.json)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "accelerate",
    "safetensors",
    "rouge-score",
    "bert-score",
    "numpy",
    "snakemake",
)


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def installed_packages() -> list[str]:
    """Every installed distribution as 'name==version', sorted (a requirements.txt)."""
    seen = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            seen.setdefault(name.lower(), f"{name}=={dist.version}")
    return sorted(seen.values(), key=str.lower)


def git_state(repo: Path | None = None) -> dict:
    """Commit and dirty flag of the code that runs (the ledsweep checkout), plus the diff when dirty."""
    repo = repo or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "diff": None}
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    diff = git("diff", "HEAD") if status.strip() else None
    return {"commit": commit.strip(), "dirty": bool(status.strip()), "diff": diff}


def device_info() -> dict:
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        name = torch.cuda.get_device_name(0)
        return {"device": f"cuda ({name} x{n})", "device_type": "cuda", "gpu_name": name, "gpu_count": n}
    return {"device": "cpu", "device_type": "cpu", "gpu_name": None, "gpu_count": 0}


def slurm_job_id() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def environment() -> dict:
    import torch

    return {
        "hostname": socket.gethostname(),
        **device_info(),
        "slurm_job_id": slurm_job_id(),
        "num_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": package_versions(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
    }
