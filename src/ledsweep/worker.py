"""The ranks of one run, one way: every rank of a torchrun launch trains through `train_rank(spec)`.

Two launches lead there:
  * the workflow's train job starts torchrun itself (`train_ranks`); each rank reads the spec from a file
    (`python -m ledsweep.worker SPEC`) and rank 0 writes the outcome, since torchrun's exit status does not
    keep it;
  * a user starts `torchrun ... train_baseline.py`: rank 0 does the checks, the data and the run folder, and
    tells the other ranks the spec (`Followers.tell`), or that there is nothing to train.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from . import distributed
from .config import ConfigError, RunConfig, load_config, training_config
from .distributed import STOP_FILE, Layout, launch_command, slurm_first_node
from .errors import EXIT_FAILED, LaunchError, exit_code, job_outcome, one_line, setup_logging
from .runfolder import RunFolder, atomic_write_text, write_json
from .train import train

log = logging.getLogger("ledsweep")
RESULT_FILE = ".ddp-result.json"


def train_rank(spec: dict, cfg: RunConfig | None = None) -> int:
    """This rank's part of training the run in `spec` ({config: the training keys, run_dir, prepared, threads,
    stop_after, restart, failure_dir}) or of `cfg` when given; rank 0 records a failure in `failure_dir`."""

    def record(reason: str) -> None:
        if distributed.is_main():
            RunFolder(spec["failure_dir"]).record_failure("train", reason)

    with job_outcome(f"rank {distributed.rank()}: run {Path(spec['failure_dir']).name} in train", record) as outcome:
        if cfg is None:
            cfg = training_config(spec["config"], source=f"{spec['run_dir']}: training config")
        train(
            cfg,
            RunFolder(spec["run_dir"]),
            Path(spec["prepared"]),
            spec.get("threads"),
            spec.get("stop_after"),
            restart_on_data_change=spec.get("restart", True),
            decoding=spec.get("config") is None,
            events_dir=Path(spec["failure_dir"]),  # the run folder: its records and its TensorBoard curves
        )
    if outcome.rc != EXIT_FAILED:  # after a failure another rank may never reach the group again
        distributed.finish()
    return outcome.rc


def worker_main(spec_path: str) -> int:
    """One rank of a workflow train job (`python -m ledsweep.worker SPEC`)."""
    setup_logging()
    spec = json.loads(Path(spec_path).read_text())
    distributed.init()
    rc = train_rank(spec)
    if distributed.is_main():
        write_json(Path(spec["run_dir"]) / RESULT_FILE, {"rc": rc})
    return rc


class Followers:
    """Rank 0 of a `torchrun ... train_baseline.py` launch tells the other ranks once what to do: train a spec,
    or exit with rank 0's status when it stopped before training (`done`). Outside torchrun: no-ops."""

    def __init__(self) -> None:
        self.told = not distributed.active()

    def tell(self, spec: dict) -> None:
        if not self.told:
            self.told = True
            distributed.share(spec)

    def done(self, rc: int) -> None:
        self.tell({"exit": rc})


def follow(config_path: str, output_dir: str | None, threads: int | None, stop_after: int | None) -> int:
    """Rank > 0 of `torchrun ... train_baseline.py`: wait for rank 0 (checks, data, run folder, lock), train
    alongside it, and exit with rank 0's status when it did not train; evaluation is rank 0's alone."""
    told = distributed.share(None)
    if "exit" in told:
        return told["exit"]
    spec = {**told, "threads": threads, "stop_after": stop_after, "failure_dir": told["run_dir"]}
    try:
        cfg = load_config(config_path, output_dir=output_dir)
    except ConfigError as e:
        log.error("rank %d: %s", distributed.rank(), one_line(e))
        return exit_code(e)
    return train_rank(spec, cfg)


def train_ranks(
    trained: RunFolder, layout: Layout, config: dict, prepared: Path, threads: int | None, stop_after: int | None, mpi
) -> int:
    """Train with torchrun: `layout.nproc_per_node` ranks on this node (`--standalone`), or one `srun` task per
    node of the job, each a torchrun joining a c10d rendezvous on the job's first node. Called under the
    run lock. SIGTERM/SIGUSR1 here become a stop file that every rank checks after each step (torchrun would
    give its workers only 30 s to save after a signal)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    first_node = None
    if layout.nnodes > 1:
        if mpi is None:
            raise LaunchError(
                f"train: nodes={layout.nnodes} needs the resources mpi (e.g. 'srun'), tasks={layout.nnodes} "
                "and tasks_per_gpu=0, so that the job's batch step starts one torchrun per node "
                "(see profiles/default/config.yaml)"
            )
        first_node = slurm_first_node(job_id)
    spec = trained.path / ".ddp-spec.json"
    write_json(
        spec,
        {
            "config": config,
            "run_dir": str(trained.path.resolve()),
            "failure_dir": str(trained.path.parent.resolve()),
            "prepared": str(Path(prepared).resolve()),
            "threads": max(1, (threads or 1) // layout.nproc_per_node),
            "stop_after": stop_after,
            "restart": True,
        },
    )
    result = trained.path / RESULT_FILE
    result.unlink(missing_ok=True)
    cmd = launch_command(layout, spec, job_id, first_node)
    log.info(
        "train: %d processes (%d node(s) x %d): %s",
        layout.world_size,
        layout.nnodes,
        layout.nproc_per_node,
        " ".join(cmd),
    )

    def stop(signum, frame):
        name = signal.Signals(signum).name
        log.warning("%s received: every rank saves a resume checkpoint after this step", name)
        atomic_write_text(trained.path / STOP_FILE, f"{name}\n")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(cmd, stdout=sys.stdout, stderr=sys.stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        rc = proc.wait()
    except OSError as e:
        raise LaunchError(f"train: cannot start {cmd[0]}: {e}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        outcome = json.loads(result.read_text())["rc"]
    except (OSError, ValueError, KeyError):
        reason = f"torchrun exited {rc} and rank 0 reported no outcome (a rank crashed or was killed; see the log)"
        RunFolder(trained.path.parent).record_failure("train", reason)
        log.error("run %s: %s", trained.path.parent.name, reason)
        return EXIT_FAILED
    if outcome == 0 and rc != 0:
        log.warning("torchrun exited %d after rank 0 finished training", rc)
    return outcome


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
