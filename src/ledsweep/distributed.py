"""Several processes for one run: PyTorch's own launcher (`torchrun`) and the Trainer's DDP.

Inside a process (rank) of a `torchrun` launch:
  * `active()` is true when torchrun started this process with a world size > 1 (LOCAL_RANK set:
    what accelerate, and so the Trainer, also look at); `init()` creates the process group (NCCL on
    GPUs, gloo on CPU) and a gloo *control* group for the run's own small messages;
  * only rank 0 (`is_main()`) writes files; `share(obj)` broadcasts rank 0's value, `agree(flag)` is
    true on every rank when it is true on any (the stop decision of each step), `barrier()` waits.

Launching (the workflow's train job, `worker.train_ranks`): `launch_command` builds
  * one node: `python -m torch.distributed.run --standalone --nproc-per-node=N -m ledsweep.worker SPEC`;
  * several nodes: `srun --jobid=J --nodes=K --ntasks=K --ntasks-per-node=1 python -m torch.distributed.run
    --nnodes=K --nproc-per-node=N --rdzv-backend=c10d --rdzv-id=J --rdzv-endpoint=<first node>:<port> ...`,
    the first node taken from the job's node list (`squeue -j J -o %N` + `scontrol show hostnames`:
    the jobstep executor strips SLURM_JOB_NODELIST from a rule's environment).
SPEC is a JSON file with what the workers need (`worker.worker_main`).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import LaunchError

log = logging.getLogger("ledsweep")
RDZV_BASE_PORT = 29500
_control = None  # the gloo group of the run's own messages (the world group on CPU)


# ----------------------------------------------------------------------------- inside a rank
def active() -> bool:
    """This process is one of several ranks started by torchrun."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def world_size() -> int:
    return int(os.environ["WORLD_SIZE"]) if active() else 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if active() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Create the process group (once); a no-op in a single process. The Trainer (accelerate) then uses it."""
    global _control
    if not active() or _control is not None:
        return
    import datetime as dt

    import torch
    import torch.distributed as dist

    # generous: rank 0 alone prepares the data while the others wait in `share`
    timeout = dt.timedelta(seconds=int(os.environ.get("LEDSWEEP_DIST_TIMEOUT", "7200")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
            dist.init_process_group("nccl", timeout=timeout)
        else:
            dist.init_process_group("gloo", timeout=timeout)
    _control = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    if not is_main():  # one copy of each log line: rank 0's; the others report warnings and errors only
        logging.getLogger("ledsweep").setLevel(logging.WARNING)


def share(obj=None):
    """Rank 0's `obj` on every rank (pickled; small objects only)."""
    if not active():
        return obj
    import torch.distributed as dist

    init()
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not active():
        return [obj]
    import torch.distributed as dist

    init()
    out = [None] * world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def agree(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (one tiny all-reduce)."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def mean(value: float) -> float:
    """The mean of `value` over the ranks (float64, the same on every rank)."""
    if not active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=_control)
    return t.item() / world_size()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        init()
        dist.barrier(group=_control)


def finish() -> None:
    """Leave the process group (at the end of a rank's work)."""
    global _control
    if active() and _control is not None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        _control = None


def rank_info() -> dict:
    """This rank's place: rank, local rank, host and device (gathered into meta.json)."""
    import socket

    import torch

    if torch.cuda.is_available():
        idx = torch.cuda.current_device() if active() else 0
        device = f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
    else:
        device = "cpu"
    return {"rank": rank(), "local_rank": local_rank(), "host": socket.gethostname(), "device": device}


def run_layout(per_device_batch: int, accumulation: int) -> dict:
    """meta.json's record of the layout: world size, nodes, each rank's device, effective batch size.
    A collective: every rank calls it."""
    ranks = gather(rank_info())
    hosts = list(dict.fromkeys(r["host"] for r in ranks))
    return {
        "world_size": world_size(),
        "num_nodes": len(hosts),
        "nodes": hosts,
        "rank_devices": [f"{r['host']}:{r['device']}" for r in ranks],
        "per_device_train_batch_size": per_device_batch,
        "gradient_accumulation_steps": accumulation,
        "effective_batch_size": per_device_batch * accumulation * world_size(),
    }


def uneven_epoch(examples: int, layout: dict) -> str | None:
    """Why several processes do not train as one process with the same global batch (accumulation x world
    size), or None. They agree exactly when each epoch's examples divide into full global batches; otherwise
    DDP's sampler pads the last one with repeated examples where accumulation takes a shorter step, and the
    two differ from the first epoch edge on (issue 21.4: 3 x 5 on 64 examples, 7.2e-3 relative after it)."""
    world, batch = layout["world_size"], layout["per_device_train_batch_size"]
    if world <= 1 or examples % (world * batch) == 0:
        return None
    return (
        f"{examples} training examples are not a multiple of {world} processes x batch {batch}: from the first "
        f"epoch edge on, this run differs from 1 process x accumulation {world} (DDP pads each epoch's last "
        f"batch); choose the batch, the process count or data.max_train_samples so that they divide"
    )


# ----------------------------------------------------------------------------- launching
@dataclass
class Layout:
    """Processes of one run: `nnodes` nodes x `nproc_per_node` processes (one per GPU, or CPU processes)."""

    nnodes: int = 1
    nproc_per_node: int = 1

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _count(value, name: str) -> int | None:
    if value in (None, "", 0):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"resource {name}: expected an integer, got {value!r}") from None
    if n < 1:
        raise LaunchError(f"resource {name}: expected an integer >= 1, got {n}")
    return n


def layout_from_resources(resources) -> Layout:
    """The run's layout from the train rule's resources (a dict or Snakemake's Resources):

    * `nodes` (default 1): nodes of the job (sbatch --nodes);
    * GPUs per node: the count in `gres` ("gpu:4", "gpu:a100:4"; per node), else `gpu` (sbatch --gpus:
      a per-job total) divided by the nodes;
    * `ddp_procs`: processes per node, overriding the GPU count (CPU runs: gloo, as in CI).
    One process per node and one node: no torchrun (the job trains in its own process)."""
    get = resources.get
    nnodes = _count(get("nodes"), "nodes") or 1
    gpus = None
    gres = get("gres") or ""
    m = re.fullmatch(r"gpu(?::[A-Za-z0-9_.]+)?:(\d+)", str(gres))
    if m:
        gpus = int(m.group(1))
    elif _count(get("gpu"), "gpu"):
        total = _count(get("gpu"), "gpu")
        if total % nnodes:
            raise LaunchError(f"resource gpu: {total} GPUs do not split evenly over {nnodes} nodes; use gres: gpu:<n>")
        gpus = total // nnodes
    procs = _count(get("ddp_procs"), "ddp_procs") or gpus or 1
    return Layout(nnodes, procs)


def slurm_first_node(job_id: str | None) -> str:
    """The first host of Slurm job `job_id` (the c10d rendezvous host); LaunchError saying what is missing."""
    if not job_id:
        raise LaunchError(
            "several nodes need a Slurm job: SLURM_JOB_ID is not set (run through the slurm executor with "
            "resources nodes, mpi, tasks; see profiles/default/config.yaml)"
        )

    def ask(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise LaunchError(f"cannot find the nodes of Slurm job {job_id}: {shlex.join(cmd)}: {e}") from None
        if out.returncode != 0 or not out.stdout.strip():
            raise LaunchError(
                f"cannot find the nodes of Slurm job {job_id}: {shlex.join(cmd)} exited {out.returncode}: "
                f"{out.stderr.strip() or 'no output'}"
            )
        return out.stdout.strip()

    nodelist = ask("squeue", "-h", "-j", str(job_id), "-o", "%N")
    return ask("scontrol", "show", "hostnames", nodelist).split()[0]


def rdzv_port(job_id: str) -> int:
    """A port per job (two jobs on one node do not collide), in 29500-31499."""
    digits = re.sub(r"\D", "", str(job_id)) or "0"
    return RDZV_BASE_PORT + int(digits) % 2000


def launch_command(
    layout: Layout, spec: Path, job_id: str | None = None, first_node: str | None = None, python: str | None = None
) -> list[str]:
    """The command that starts every rank of the run (see the module docstring)."""
    python = python or sys.executable
    worker = ["-m", "ledsweep.worker", str(spec)]
    if layout.nnodes == 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={layout.nproc_per_node}"] + (
            worker
        )
    if not job_id or not first_node:
        raise LaunchError("several nodes need the Slurm job id and its first node")
    n = layout.nnodes
    return [
        "srun",
        f"--jobid={job_id}",
        f"--nodes={n}",
        f"--ntasks={n}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={n}",
        f"--nproc-per-node={layout.nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-id={job_id}",
        f"--rdzv-endpoint={first_node}:{rdzv_port(job_id)}",
        *worker,
    ]


STOP_FILE = ".ddp-stop"  # in a run's trained folder: a signal reached the launcher; every rank stops after this step
