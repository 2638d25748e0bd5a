"""Train one run with transformers' Seq2SeqTrainer: seeded, resumable, signal-safe.

Resume state lives in `<run>/resume/` (never a workflow output, so Snakemake does not delete
it when a job fails). A checkpoint counts only once `ledsweep-checkpoint-complete` is written
inside it, after the Trainer has saved everything else; half-written ones are removed.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import shutil
import signal
import time
from pathlib import Path

from . import data as data_mod
from . import faults
from . import model as model_mod
from . import provenance
from .config import SCRATCH, ConfigError, RunConfig, config_sha256, dump_yaml
from .runfolder import COMPLETE_MARKER, RunFolder, RunFolderError, atomic_write_text, now_iso, read_jsonl, sha256_file
from .runfolder import write_json

log = logging.getLogger("ledsweep")


class TrainingInterrupted(RuntimeError):
    """Stopped by SIGTERM/SIGUSR1 after saving a resume checkpoint (Slurm time limit, preemption)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- run folder
def prepare_run_folder(cfg: RunConfig, overwrite: bool = False) -> RunFolder:
    """Create or reuse `<output_dir>/<run_name>`; never clobber a finished run or another config."""
    run = RunFolder(cfg.run_dir)
    if run.is_complete():
        if not overwrite:
            raise RunFolderError(
                f"{run.path} is a finished run (summary.json exists); pass --overwrite to redo it "
                f"or --output-dir to write elsewhere"
            )
        run.summary.unlink()  # first: the folder must stop looking complete before anything else goes
        for path in (run.resume, run.checkpoint):
            shutil.rmtree(path, ignore_errors=True)
        for path in (run.meta, run.predictions, run.log_history, run.failure):
            path.unlink(missing_ok=True)
    elif run.config.is_file():
        from .config import load_config

        try:
            previous = config_sha256(load_config(run.config))
        except ConfigError:
            previous = None
        if previous != config_sha256(cfg) and not overwrite:
            raise RunFolderError(
                f"{run.path} holds an unfinished run with a different config ({run.config}); "
                f"pass --overwrite to discard it, or use another run_name/--output-dir"
            )
    stale = [a for a in run.read_json(run.attempts, default=[]) if a.get("config_sha256") != config_sha256(cfg)]
    if stale:  # resume state of another config (e.g. the workflow rewrote config.yaml): start over
        log.warning("discarding resume state of a different config in %s", run.resume)
        shutil.rmtree(run.resume, ignore_errors=True)
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_temp_files()
    text = dump_yaml(cfg.to_dict())
    if not run.config.is_file() or run.config.read_text() != text:
        atomic_write_text(run.config, text)  # untouched when equal: keeps Snakemake's mtimes stable
    return run


def checkpoint_problem(path: Path) -> str | None:
    """Why a resume checkpoint cannot be used, or None: marker, trainer state and weights must be whole."""
    if not (path / COMPLETE_MARKER).is_file():
        return "no completeness marker (killed while saving?)"
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as e:
        return f"trainer_state.json unreadable ({e})"
    from safetensors import safe_open

    try:
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        return f"model.safetensors unreadable ({e})"
    return None


def latest_checkpoint(resume_dir: Path) -> Path | None:
    """Newest usable checkpoint; unusable ones (killed mid-write, truncated) are deleted."""
    if not resume_dir.is_dir():
        return None
    found = []
    for path in resume_dir.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not m or not path.is_dir():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            found.append((int(m.group(1)), path))
        else:
            log.warning("skipping incomplete checkpoint %s: %s (removed)", path.name, problem)
            shutil.rmtree(path, ignore_errors=True)
    return max(found)[1] if found else None


# ----------------------------------------------------------------------------- callbacks
def _callbacks(run: RunFolder, trainer, stop_after: int | None = None):
    from transformers import TrainerCallback

    class StepLosses(TrainerCallback):
        """Every optimizer step's training loss, kept for audits (resume/step_losses.jsonl, flushed with
        each checkpoint, so a resumed run keeps exactly the steps its checkpoint covers). A NaN or
        infinite loss stops the run."""

        def __init__(self):
            self.pending: list[dict] = []
            trainer.micro_losses = []

        def on_train_begin(self, args, state, control, **kw):
            kept = [r for r in read_jsonl(run.step_losses_partial) if r["step"] <= state.global_step]
            atomic_write_text(run.step_losses_partial, "".join(json.dumps(r) + "\n" for r in kept))

        def on_step_end(self, args, state, control, **kw):
            loss = sum(trainer.micro_losses)
            trainer.micro_losses.clear()
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"training loss is {loss} at step {state.global_step}")
            self.pending.append({"step": state.global_step, "loss": loss})

        def flush(self):
            with open(run.step_losses_partial, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.pending)
            self.pending.clear()

        def on_save(self, args, state, control, **kw):
            self.flush()

    class StepLog(TrainerCallback):
        """One line per logging step (step, loss, lr, tokens/s); NaN/inf loss stops the run."""

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
                    state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", float("nan")),
                    logs.get("grad_norm", float("nan")), tps / 1000, 1000 * dt / steps,
                )
                self.t0, self.tokens0, self.step0 = now, state.num_input_tokens_seen, state.global_step
            elif "eval_loss" in logs:
                log.info("step %d/%d | eval_loss %.4f", state.global_step, state.max_steps, logs["eval_loss"])

    class SignalCheckpoint(TrainerCallback):
        """Save a resume checkpoint and stop: on SIGTERM/SIGUSR1 (time limit, preemption, scancel,
        `sbatch --signal`), or on its own shortly before the Slurm job's end time. The latter is what
        works on clusters with proctrack/cgroup, where Slurm's SIGTERM reaches only the Snakemake
        process that srun started, never its children."""

        def __init__(self):
            self.received = None
            self.deadline = slurm_deadline()
            if self.deadline:
                log.info("Slurm job ends at %s: will checkpoint and stop %d s before",
                         time.strftime("%H:%M:%S", time.localtime(self.deadline + stop_margin())), stop_margin())
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
            if not self.received and stop_after and state.global_step >= stop_after:
                self.received = f"stop after step {stop_after}"
            if self.received:
                control.should_save = True
                control.should_training_stop = True

    class MarkComplete(TrainerCallback):
        """Write the completeness marker after the Trainer has saved a checkpoint."""

        def on_save(self, args, state, control, **kw):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            faults.hit("save", state.global_step)
            atomic_write_text(ckpt / COMPLETE_MARKER, now_iso() + "\n")
            faults.hit("after_save", state.global_step)

    return StepLosses(), StepLog(), SignalCheckpoint(), MarkComplete()


# ----------------------------------------------------------------------------- Slurm deadline
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


# ----------------------------------------------------------------------------- training
def resolve_precision(precision: str) -> str:
    import torch

    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("training.precision: fp16 needs a CUDA GPU; use fp32 or bf16 on CPU")
    return precision


def set_threads(cfg: RunConfig, fallback: int | None = None) -> int:
    """torch threads: the config's num_threads, else `fallback` (the job's CPUs), else this process's CPUs."""
    import torch

    n = cfg.num_threads or fallback or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    return n


def _collator(tokenizer, model):
    """Dynamic padding for LED: sources to the batch's longest rounded up to the attention window (LED
    pads there itself otherwise, and warns), labels only to the batch's longest (-100). Labels are not
    rounded up: every decoder position costs compute, and summaries are often much shorter than a window
    (demo: 9-token summaries padded to 32 cost ~12% of each training step)."""
    import torch

    window = model.config.attention_window
    window = max(window) if isinstance(window, (list, tuple)) else window
    pad_id, left = tokenizer.pad_token_id, tokenizer.padding_side == "left"

    def pad(seqs, value, length):
        if left:
            return torch.tensor([[value] * (length - len(s)) + list(s) for s in seqs], dtype=torch.long)
        return torch.tensor([list(s) + [value] * (length - len(s)) for s in seqs], dtype=torch.long)

    def collate(features):
        ids = [f["input_ids"] for f in features]
        length = -(-max(len(s) for s in ids) // window) * window
        batch = {
            "input_ids": pad(ids, pad_id, length),
            "attention_mask": pad([f.get("attention_mask", [1] * len(f["input_ids"])) for f in features], 0, length),
        }
        if "labels" in features[0]:
            labels = [f["labels"] for f in features]
            batch["labels"] = pad(labels, -100, max(len(s) for s in labels))
            batch["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        batch["global_attention_mask"] = model_mod.global_attention_mask(batch["input_ids"])
        return batch

    return collate


def _attempts(cfg: RunConfig, run: RunFolder, resumed_from: Path | None) -> list[dict]:
    attempts = run.read_json(run.attempts, default=[])
    attempts.append({
        "start_time": now_iso(),
        "config_sha256": config_sha256(cfg),
        "slurm_job_id": provenance.slurm_job_id(),
        "resumed_from_step": int(resumed_from.name.split("-")[1]) if resumed_from else None,
    })
    write_json(run.attempts, attempts)
    return attempts


def _meta(cfg: RunConfig, run: RunFolder, attempts: list[dict], env: dict, git: dict, **extra) -> dict:
    files = data_mod.data_files(cfg.data)
    return {
        "run_name": cfg.run_name,
        "start_time": attempts[0]["start_time"],
        **env,
        "slurm_job_ids": [a["slurm_job_id"] for a in attempts if a["slurm_job_id"]],
        "attempts": len(attempts),
        "attempt_history": attempts,
        "resumes": sum(1 for a in attempts if a["resumed_from_step"] is not None),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "config_sha256": config_sha256(cfg),
        "data_files": files,
        "data_sha256": provenance.data_hashes(files),
        **extra,
    }


def _trainer_class():
    from transformers import Seq2SeqTrainer

    class LedTrainer(Seq2SeqTrainer):
        """Seq2SeqTrainer that records each micro-batch's loss (for per-step loss history)."""

        micro_losses: list[float]

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            self.micro_losses.append(loss.detach().float().item())
            return loss

    return LedTrainer


def train(cfg: RunConfig, run: RunFolder, threads: int | None = None, stop_after: int | None = None) -> dict:
    """Train (or resume) the run; save the final model to `checkpoint/`; write meta.json.

    `stop_after`: checkpoint and stop after that optimizer step (TrainingInterrupted), for audit replays."""
    import torch
    from transformers import Seq2SeqTrainingArguments, enable_full_determinism, set_seed
    from transformers.trainer_callback import PrinterCallback

    threads = set_threads(cfg, threads)
    precision = resolve_precision(cfg.training.precision)
    t = cfg.training
    splits = data_mod.load_splits(cfg.data, need=("train", "validation"))
    set_seed(cfg.seed)  # before the tokenizer and model are built: same seed -> same weights
    if t.full_determinism:
        enable_full_determinism(cfg.seed, warn_only=True)
    if cfg.model.name == SCRATCH:
        tok = data_mod.train_bpe_tokenizer(
            splits["train"].documents + splits["train"].summaries, cfg.model.vocab_size, cfg.data.max_source_length
        )
        model = model_mod.build_scratch(cfg, tok)
    else:
        model, tok = model_mod.load_pretrained(cfg.model.name, cfg.model.trust_remote_code)
    model_mod.configure_generation(model, cfg)
    if t.gradient_checkpointing:
        model.config.use_cache = False

    train_ds = data_mod.tokenize(splits["train"], tok, cfg.data)
    eval_ds = data_mod.tokenize(splits["validation"], tok, cfg.data) if "validation" in splits else None
    resume_from = latest_checkpoint(run.resume)
    attempts = _attempts(cfg, run, resume_from)
    env, git = provenance.environment(), provenance.git_state()
    if git["diff"]:
        atomic_write_text(run.path / "git.diff", git["diff"])
    write_json(run.meta, _meta(cfg, run, attempts, env, git, precision=precision))
    atomic_write_text(run.path / "requirements.txt", "\n".join(provenance.installed_packages()) + "\n")

    args = Seq2SeqTrainingArguments(
        output_dir=str(run.resume),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=t.learning_rate,
        max_steps=t.max_steps or -1,
        num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        label_smoothing_factor=t.label_smoothing_factor,
        optim=t.optim,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=t.gradient_checkpointing or None,  # transformers 5 name
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding",
        eval_strategy="steps" if t.eval_steps and eval_ds else "no",
        eval_steps=t.eval_steps,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        log_level="warning",
    )
    trainer = _trainer_class()(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
        data_collator=_collator(tok, model), processing_class=tok,
    )
    step_losses, step_log, on_signal, marker = _callbacks(run, trainer, stop_after)
    trainer.remove_callback(PrinterCallback)  # its dict prints duplicate our step lines
    for cb in (step_losses, step_log, on_signal, marker):
        trainer.add_callback(cb)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "run %s: %s, %.2fM parameters, %d train examples, precision %s, %d threads%s",
        cfg.run_name, cfg.model.name, n_params / 1e6, len(train_ds), precision, threads,
        f", resuming from {resume_from.name}" if resume_from else "",
    )
    t0 = time.perf_counter()
    # Trainer.train() starts with a full gc.collect() (accelerate's free_memory): frozen, the ~0.4 M
    # objects of the imports are skipped (0.25 s per run on 2 CPU cores)
    gc.freeze()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        gc.unfreeze()
    train_seconds = time.perf_counter() - t0
    if on_signal.received:
        attempts = run.read_json(run.attempts)
        attempts[-1].update(end_time=now_iso(), stopped=on_signal.received, stopped_at_step=trainer.state.global_step,
                            train_seconds=round(train_seconds, 3))
        write_json(run.attempts, attempts)
        raise TrainingInterrupted(
            f"{on_signal.received} at step {trainer.state.global_step}: resume checkpoint saved in {run.resume}"
        )

    history = trainer.state.log_history
    atomic_write_text(run.log_history, "".join(json.dumps(h) + "\n" for h in history))
    step_losses.flush()
    atomic_write_text(run.step_losses, run.step_losses_partial.read_text())
    _save_final(trainer, tok, run)
    train_losses = [h["loss"] for h in history if "loss" in h]
    attempts = run.read_json(run.attempts)
    attempts[-1]["end_time"] = now_iso()
    attempts[-1]["train_seconds"] = round(train_seconds, 3)
    write_json(run.attempts, attempts)
    meta = _meta(
        cfg, run, attempts, env, git, precision=precision, num_parameters=n_params,
        global_step=trainer.state.global_step, final_train_loss=train_losses[-1] if train_losses else None,
        train_runtime_seconds=round(sum(a.get("train_seconds", 0) for a in attempts), 3),
        train_samples_per_second=result.metrics.get("train_samples_per_second"),
        input_tokens_seen=trainer.state.num_input_tokens_seen,
        weights_sha256=sha256_file(run.checkpoint / "model.safetensors"),
    )
    write_json(run.meta, meta)
    return meta


def _save_final(trainer, tokenizer, run: RunFolder) -> None:
    """Save weights + tokenizer + generation config to a temp folder, then swap it in."""
    tmp = run.path / ".checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # model.safetensors, config.json, generation_config.json, tokenizer
    tokenizer.save_pretrained(str(tmp))
    for leftover in ("training_args.bin",):
        (tmp / leftover).unlink(missing_ok=True)
    if run.checkpoint.exists():
        shutil.rmtree(run.checkpoint)
    os.replace(tmp, run.checkpoint)
