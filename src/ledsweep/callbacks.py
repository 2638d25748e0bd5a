"""The Trainer callbacks of a run: per-step losses, one log line per logging step, stopping on a signal or
before the Slurm deadline, and the completeness marker of each resume checkpoint.

Imports transformers (the callbacks subclass TrainerCallback): only `train.train` imports this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

from . import distributed, events, faults
from .errors import NonFiniteLoss
from .runfolder import COMPLETE_MARKER, RunFolder, atomic_write_text, now_iso, read_jsonl

log = logging.getLogger("ledsweep")


class StepLosses(TrainerCallback):
    """Every optimizer step's training loss, kept for audits (resume/step_losses.jsonl, flushed with each
    checkpoint, so a resumed run keeps exactly the steps its checkpoint covers). A NaN or infinite loss
    stops the run. `trainer.micro_losses` is filled by LedTrainer.training_step. With several ranks a
    step's loss is the mean over the ranks (every rank takes part; rank 0 writes)."""

    def __init__(self, run: RunFolder, trainer):
        self.run, self.trainer = run, trainer
        self.pending: list[dict] = []
        trainer.micro_losses = []

    def on_train_begin(self, args, state, control, **kw):
        if not distributed.is_main():
            return
        kept = [r for r in read_jsonl(self.run.step_losses_partial) if r["step"] <= state.global_step]
        atomic_write_text(self.run.step_losses_partial, "".join(json.dumps(r) + "\n" for r in kept))

    def on_step_end(self, args, state, control, **kw):
        loss = distributed.mean(sum(self.trainer.micro_losses))
        self.trainer.micro_losses.clear()
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"training loss is {loss} at step {state.global_step}")
        self.pending.append({"step": state.global_step, "loss": loss})

    def flush(self):
        if not distributed.is_main():
            self.pending.clear()
            return
        with open(self.run.step_losses_partial, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.pending)
        self.pending.clear()

    def on_save(self, args, state, control, **kw):
        self.flush()


class StepLog(TrainerCallback):
    """One line per logging step: step, loss, lr, grad norm, tokens/s, ms/step (and eval loss lines)."""

    def __init__(self):
        self.t0, self.tokens0, self.step0 = time.perf_counter(), 0, 0

    def on_train_begin(self, args, state, control, **kw):
        self.t0, self.tokens0, self.step0 = time.perf_counter(), state.num_input_tokens_seen, state.global_step

    def on_step_begin(self, args, state, control, **kw):
        faults.hit("step", state.global_step + 1)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        now = time.perf_counter()
        dt = max(now - self.t0, 1e-9)
        if "loss" in logs:
            tps = (state.num_input_tokens_seen - self.tokens0) / dt
            steps = max(state.global_step - self.step0, 1)
            log.info(
                "step %d/%d | loss %.4f | lr %.2e | grad_norm %.3f | %.1fk tok/s | %.0f ms/step",
                state.global_step,
                state.max_steps,
                logs["loss"],
                logs.get("learning_rate", float("nan")),
                logs.get("grad_norm", float("nan")),
                tps / 1000,
                1000 * dt / steps,
            )
            self.t0, self.tokens0, self.step0 = now, state.num_input_tokens_seen, state.global_step
        elif "eval_loss" in logs:
            log.info("step %d/%d | eval_loss %.4f", state.global_step, state.max_steps, logs["eval_loss"])


class StopOnSignal(TrainerCallback):
    """Save a resume checkpoint and stop: on SIGTERM/SIGUSR1 (time limit, preemption, scancel, `sbatch
    --signal`), on its own shortly before the Slurm job's end time, or after step `stop_after` (audit
    replays). The deadline is what works on clusters with proctrack/cgroup, where Slurm's SIGTERM reaches
    only the Snakemake process that srun started, never its children. `received` says why it stopped.

    With several ranks every rank stops after the same step: the decision is agreed each step (any rank's
    reason stops all), the deadline is rank 0's, and a stop file (`stop_file`, written by the launcher
    of a workflow job when it gets a signal) counts as a signal."""

    def __init__(self, stop_after: int | None = None, stop_file: Path | None = None):
        self.received: str | None = None
        self.stop_after = stop_after
        self.stop_file = stop_file
        self.deadline = distributed.share(slurm_deadline() if distributed.is_main() else None)
        if self.deadline:
            log.info(
                "Slurm job ends at %s: will checkpoint and stop %d s before",
                time.strftime("%H:%M:%S", time.localtime(self.deadline + stop_margin())),
                stop_margin(),
            )
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame):  # may run twice: Slurm and srun both send SIGTERM
        if not self.received:
            self.received = signal.Signals(signum).name
            log.warning("%s received: saving a resume checkpoint after this step", self.received)

    def on_step_end(self, args, state, control, **kw):
        if not self.received and self.deadline and time.time() > self.deadline:
            self.received = "job end time near"
            log.warning("Slurm job end time is near: saving a resume checkpoint after this step")
        if not self.received and self.stop_after and state.global_step >= self.stop_after:
            self.received = f"stop after step {self.stop_after}"
        if not self.received and self.stop_file is not None and self.stop_file.exists():
            self.received = self.stop_file.read_text().strip() or "stop requested"
            log.warning("%s (stop file): saving a resume checkpoint after this step", self.received)
        if distributed.active() and distributed.agree(self.received is not None) and not self.received:
            self.received = "stopped by another rank"
        if self.received:
            control.should_save = True
            control.should_training_stop = True


class TensorBoardCurves(TrainerCallback):
    """Live curves in the run folder (`events`): loss, learning rate, grad norm, tokens/s and eval loss at each
    logging step, flushed with every checkpoint. Rank 0 alone writes. Resumed from step N: see `events`."""

    def __init__(self, folder: Path):
        self.folder, self.writer = folder, None

    def on_train_begin(self, args, state, control, **kw):
        if distributed.is_main():
            self.writer = events.writer(self.folder, purge_step=state.global_step + 1)

    def on_log(self, args, state, control, logs=None, **kw):
        if self.writer is not None:
            for tag, value in events.scalars(logs or {}, events.TRAIN_TAGS).items():
                self.writer.add_scalar(tag, value, state.global_step)

    def on_save(self, args, state, control, **kw):
        if self.writer is not None:
            self.writer.flush()

    def on_train_end(self, args, state, control, **kw):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class MarkComplete(TrainerCallback):
    """Write the completeness marker after the Trainer has saved a checkpoint: with several ranks, once every
    rank has written its part (its RNG state), by rank 0."""

    def on_save(self, args, state, control, **kw):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        faults.hit("save", state.global_step)
        distributed.barrier()
        if distributed.is_main():
            atomic_write_text(ckpt / COMPLETE_MARKER, now_iso() + "\n")
        faults.hit("after_save", state.global_step)


def stop_margin() -> int:
    """Seconds before the Slurm job's end time at which training checkpoints and stops itself."""
    return int(os.environ.get("LEDSWEEP_STOP_BEFORE_END", "180"))


def slurm_deadline() -> float | None:
    """Epoch time at which to stop (job end time minus the margin), or None outside Slurm."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or stop_margin() <= 0:
        return None
    import datetime as dt
    import subprocess

    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=20)
        end = dt.datetime.fromisoformat(out.stdout.strip()).timestamp()  # local time, like squeue
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None  # no squeue, unlimited or unknown end time
    return end - stop_margin()
