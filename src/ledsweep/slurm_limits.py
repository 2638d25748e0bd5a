"""Requests no partition can run, refused before anything is submitted (issue 26.2).

Slurm accepts a job that asks for more CPUs, memory, GPUs or time than any partition has and leaves it
`PENDING (PartitionConfig)` for ever, while Snakemake waits without a word; the Slurm plugin's partition file
only warns. The workflow's `onstart` compares every job it is about to submit with the partitions and stops
with one line per rule naming the resource and the largest value available.

Partitions come from the site's partition file when the profile names one (the plugin's format:
`slurm-partition-config: partitions.yaml`, or SNAKEMAKE_SLURM_PARTITIONS), else from `sinfo`.
No torch here: the Snakefile imports it.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

UNLIMITED = math.inf


@dataclass(frozen=True)
class Partition:
    """What one job can get from a partition: CPUs and memory of a node, GPUs of a node, the time limit."""

    name: str
    cpus: float = UNLIMITED
    mem_mb: float = UNLIMITED
    gpus: float = 0
    minutes: float = UNLIMITED


# a job's request -> (what the message calls it, the partition's field)
RESOURCES = {"cpus": ("CPUs", "cpus"), "mem_mb": ("MB of memory", "mem_mb"), "gpus": ("GPUs", "gpus"),
             "runtime": ("minutes", "minutes")}  # fmt: skip


def minutes(text: str) -> float:
    """Slurm's time ('infinite', 'UNLIMITED', '30', '2:00:00', '1-12:00:00') in minutes."""
    text = str(text).strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return UNLIMITED
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days and len(parts) < 3:  # days-hours[:minutes]
        parts = parts + [0] * (3 - len(parts))
    h, m, s = [0] * (3 - len(parts)) + parts if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + h * 60 + m + s / 60


def parse_sinfo(text: str) -> list[Partition]:
    """`sinfo -h -o '%P|%c|%m|%G|%l'` lines (one per partition and node kind) -> the largest of each."""
    found: dict[str, Partition] = {}
    for line in text.splitlines():
        name, cpus, mem, gres, limit = (line.split("|") + [""] * 5)[:5]
        name = name.rstrip("*")
        gpus = sum(int(n) for n in re.findall(r"gpu(?::[^:(,]+)?:(\d+)", gres))
        p = Partition(name, float(cpus.rstrip("+") or 0), float(mem.rstrip("+") or 0), gpus, minutes(limit))
        if name in found:  # nodes of another kind: a job may land on the larger one
            q = found[name]
            p = Partition(name, max(p.cpus, q.cpus), max(p.mem_mb, q.mem_mb), max(p.gpus, q.gpus), p.minutes)
        found[name] = p
    return list(found.values())


def read_partition_file(path: str | Path) -> list[Partition]:
    """The Slurm plugin's partition file (`partitions: {name: {max_threads, max_mem_mb, max_gpu,
    max_runtime}}`; a limit left out is unlimited, GPUs none)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    out = []
    for name, lim in (data.get("partitions") or {}).items():
        lim = lim or {}
        out.append(
            Partition(
                name,
                float(lim.get("max_threads", UNLIMITED)),
                float(lim.get("max_mem_mb", UNLIMITED)),
                float(lim.get("max_gpu", 0)),
                minutes(lim["max_runtime"]) if "max_runtime" in lim else UNLIMITED,
            )
        )
    return out


def query_partitions() -> list[Partition] | None:
    """The cluster's partitions from sinfo (None where sinfo does not answer)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P|%c|%m|%G|%l"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_sinfo(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def fits(request: dict, p: Partition) -> bool:
    return all((request.get(key) or 0) <= getattr(p, field) for key, (_, field) in RESOURCES.items())


def request_problem(rule: str, request: dict, partitions: list[Partition]) -> str | None:
    """None when some partition can run `request` ({cpus, mem_mb, gpus, runtime}); else one line naming the rule,
    the resource that stops it and the largest value available: among the partitions that could give everything
    else (a 5,000-minute GPU job: the GPU partitions' time limit), else among all of them."""
    if not partitions or any(fits(request, p) for p in partitions):
        return None
    for pool in ("others", "all"):
        for key, (unit, field) in RESOURCES.items():
            asked = request.get(key) or 0
            rest = {k: v for k, v in request.items() if k != key}
            candidates = [p for p in partitions if pool == "all" or fits(rest, p)]
            if candidates and asked > getattr(best := max(candidates, key=lambda p: getattr(p, field)), field):
                return (
                    f"rule {rule} asks for {asked:g} {unit} ({key}); the most a partition offers is "
                    f"{getattr(best, field):g} (partition {best.name}): lower it in your profile "
                    f"(set-resources/set-threads) or choose another cluster"
                )
    shown = ", ".join(f"{k}={v:g}" for k, v in request.items() if v)
    return f"rule {rule} asks for {shown}: no single partition has all of it ({', '.join(p.name for p in partitions)})"


def array_stall_problem(
    array_rules: str | None, remote_jobs: dict[str, int], jobs: int | None, per_timespan: int | None
) -> str | None:
    """Job arrays hang snakemake-executor-plugin-slurm 2.8.0 when Snakemake hands it fewer of a rule's ready jobs
    than are ready: it waits for the rest, which are never handed over again, and nothing is submitted any more
    (upstream issue 473). Snakemake hands over fewer only when `jobs` (jobs in flight) or `max-jobs-per-timespan`
    cuts the batch, which cannot happen while both are at least the number of jobs going to Slurm.

    array_rules: the plugin's slurm-array-jobs ("train,evaluate", "all" or None); remote_jobs: jobs to run per rule.
    """
    rules = {r.strip() for r in (array_rules or "").replace(";", ",").split(",") if r.strip()}
    arrayed = sum(n for rule, n in remote_jobs.items() if rule in rules or "all" in rules)
    total = sum(remote_jobs.values())
    low = {
        name: v for name, v in (("jobs", jobs), ("max-jobs-per-timespan", per_timespan)) if v is not None and v < total
    }
    if not arrayed or not low:
        return None
    return (
        f"{total} Slurm jobs to run, {arrayed} of them as job arrays (slurm-array-jobs: {array_rules}), but "
        + " and ".join(f"{name} is {v}" for name, v in low.items())
        + ": the Slurm plugin would leave the jobs it is not handed at once unsubmitted and the sweep would hang "
        + f"(snakemake-executor-plugin-slurm issue 473). Set {' and '.join(low)} to at least {total} in your "
        + "profile (Slurm's own per-user limits still apply), or name fewer rules in slurm-array-jobs"
    )
