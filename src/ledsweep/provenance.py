"""What a run ran on: host, device, Slurm job, versions, git state (for meta.json)."""

from __future__ import annotations

import os
import platform
import resource
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
    """The Slurm job id; an array task as `<array job id>_<task id>`, as squeue and sacct name it (the
    task's own SLURM_JOB_ID is another number)."""
    job = os.environ.get("SLURM_JOB_ID")
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array or job}_{task}" if job and task else job


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


def slurm_usage(job_ids: list[str]) -> dict | None:
    """What Slurm accounted for these jobs, in one sacct call: their number, elapsed seconds (summed), CPU- and
    GPU-hours (allocated x elapsed) and the peak memory of any of their steps. None without Slurm accounting."""
    if not job_ids:
        return None
    cmd = ["sacct", "-n", "-P", "-j", ",".join(map(str, job_ids)), "--format=JobID,ElapsedRaw,AllocTRES,MaxRSS"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_sacct(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def parse_sacct(text: str) -> dict:
    """`sacct -n -P --format=JobID,ElapsedRaw,AllocTRES,MaxRSS` lines -> the totals of `slurm_usage`. A job's
    allocation line (no '.' in its id) has its elapsed time and TRES; its steps (.batch, .0, ...) the memory."""
    jobs: dict[str, tuple[int, int, int]] = {}
    peak = 0.0
    for line in text.splitlines():
        job_id, elapsed, tres, max_rss = (line.split("|") + ["", "", "", ""])[:4]
        if "." not in job_id:
            alloc = dict(kv.split("=", 1) for kv in tres.split(",") if "=" in kv)
            jobs[job_id] = (int(elapsed or 0), int(alloc.get("cpu", 0)), int(alloc.get("gres/gpu", 0)))
        peak = max(peak, _megabytes(max_rss))
    seconds = sum(e for e, _, _ in jobs.values())
    return {
        "jobs": len(jobs),
        "elapsed_seconds": seconds,
        "cpu_hours": round(sum(e * c for e, c, _ in jobs.values()) / 3600, 4),
        "gpu_hours": round(sum(e * g for e, _, g in jobs.values()) / 3600, 4),
        "max_rss_mb": round(peak, 1),
    }


def _megabytes(value: str) -> float:
    """sacct's MaxRSS ('220796K', '1.5G', '') in MB."""
    if not value:
        return 0.0
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}
    unit = value[-1].upper()
    return float(value[:-1]) * scale[unit] if unit in scale else float(value) / 1024**2


def peak_rss_mb() -> float:
    """The peak resident memory of this process or any child it waited for (torchrun's ranks), in MB."""
    kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(kb / 1024, 1)
