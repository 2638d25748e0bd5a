"""Train one run with transformers' Seq2SeqTrainer: seeded, resumable (`resume`), signal-safe (`callbacks`)."""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import distributed, factory, provenance
from . import model as model_mod
from .config import RunConfig, config_sha256, dump_yaml, train_config_sha256
from .data import (
    check_prepared,
    data_hashes,
    load_prepared,
    load_tokenizer,
    read_manifest,
)
from .distributed import STOP_FILE
from .errors import TrainingInterrupted
from .model import resolve_precision, set_threads
from .resume import (
    check_resume_data,
    check_resume_layout,
    finished_training,
    latest_checkpoint,
    load_finished,
    record_attempt,
)
from .runfolder import RunFolder, atomic_write_text, now_iso, sha256_file, text_sha256, write_json

log = logging.getLogger("ledsweep")


# ----------------------------------------------------------------------------- run folder


# ----------------------------------------------------------------------------- Slurm deadline


# ----------------------------------------------------------------------------- training


def collator(tokenizer, model):
    """Dynamic padding: sources to the batch's longest, rounded up to LED's attention window (LED pads there
    itself otherwise, and warns), labels only to the batch's longest (-100). Labels are not
    rounded up: every decoder position costs compute, and summaries are often much shorter than a window
    (demo: 9-token summaries padded to 32 cost ~12% of each training step)."""
    import torch

    window = model_mod.pad_multiple(model) or 1
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
        batch.update(model_mod.extra_inputs(model, batch["input_ids"]))
        return batch

    return collate


@dataclass
class RunRecord:
    """What meta.json records of a training besides its results (`_meta`)."""

    cfg: RunConfig
    env: dict
    git: dict
    manifest: dict
    decoding: bool
    precision: str
    model_code: dict | None = None  # model.factory: its file and sha256 (factory.record)


def _meta(record: RunRecord, attempts: list[dict], **extra) -> dict:
    cfg, git, manifest = record.cfg, record.git, record.manifest
    files = manifest["data_files"]
    return {
        "run_name": cfg.run_name,
        "trained_by": cfg.run_name,
        "start_time": attempts[0]["start_time"],
        **record.env,
        "slurm_job_ids": [a["slurm_job_id"] for a in attempts if a["slurm_job_id"]],
        "attempts": len(attempts),
        "attempt_history": attempts,
        "resumes": sum(1 for a in attempts if a["resumed_from_step"] is not None),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        # the whole config (a training-only config has no decoding keys: the workflow's link step adds it)
        "config_sha256": config_sha256(cfg) if record.decoding else None,
        # the bytes prepare_run_folder wrote: the tables check config.yaml without a YAML parse
        "config_yaml_sha256": text_sha256(dump_yaml(cfg.to_dict())) if record.decoding else None,
        "train_config_sha256": train_config_sha256(cfg),
        "data_files": {split: f["path"] for split, f in files.items()},
        "data_sha256": data_hashes(manifest),  # hashed once, when prepared
        "prepared_data": {
            "key": manifest["key"],
            "fingerprint": manifest["fingerprint"],
            "tokenizer_sha256": manifest["tokenizer_sha256"],
            "rows": manifest["rows"],
        },
        "precision": record.precision,
        "model_code": record.model_code,
        **extra,
    }


def trainer_class():
    from transformers import Seq2SeqTrainer

    class LedTrainer(Seq2SeqTrainer):
        """Seq2SeqTrainer that records each micro-batch's loss (for per-step loss history) and, with
        group_by_length, uses a length-grouped sampler seeded from the run's seed and the epoch."""

        micro_losses: list[float]
        train_lengths: list[int] | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """The training loss as the Trainer means it: summed over the label tokens of the micro-batch and
            divided by the tokens of the whole optimizer step (all accumulation steps, all ranks), times
            the number of ranks (DDP averages gradients). LED's forward takes **kwargs, so the Trainer
            passes it `num_items_in_batch` and skips its own scaling, but LED ignores it (a mean over each
            micro-batch): with accumulation or several ranks the loss and gradients came out k times too
            large. Evaluation (no `num_items_in_batch`) and label smoothing keep the Trainer's path."""
            if num_items_in_batch is None or self.label_smoother is not None or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            import torch.nn.functional as F

            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            logits = outputs["logits"]
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100, reduction="sum"
            ) / num_items_in_batch.to(logits.device)
            if self.args.average_tokens_across_devices:
                loss = loss * (self.accelerator.num_processes if self.args.n_gpu <= 1 else self.args.n_gpu)
            return (loss, outputs) if return_outputs else loss

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            self.micro_losses.append(loss.detach().float().item())
            return loss

        def _get_train_sampler(self, train_dataset=None):
            if self.train_lengths is None:
                return super()._get_train_sampler(train_dataset)
            return SeededLengthGroupedSampler(
                self.train_lengths,
                self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size,
                seed=self.args.data_seed,
            )

    return LedTrainer


class SeededLengthGroupedSampler:
    """transformers' length grouping (mega-batches of 50 batches, sorted by length, longest first), drawn
    from a generator seeded with `seed + epoch`, never the global RNG: the Trainer calls `set_epoch`
    (through accelerate's data loader) before each epoch, so a resumed run draws exactly the same order."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _build_model(cfg: RunConfig, tok):
    """The run's model (`model.new_model`), seeded first: same seed -> same weights."""
    from transformers import enable_full_determinism, set_seed

    set_seed(cfg.seed)
    if cfg.training.full_determinism:
        enable_full_determinism(cfg.seed, warn_only=True)
    model = model_mod.new_model(cfg, tok)
    model_mod.configure_generation(model, cfg)
    if cfg.training.gradient_checkpointing:
        model.config.use_cache = False
    return model


def _training_args(cfg: RunConfig, run: RunFolder, precision: str, has_eval: bool):
    import torch
    from transformers import Seq2SeqTrainingArguments

    t = cfg.training
    return Seq2SeqTrainingArguments(
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
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding",
        eval_strategy="steps" if t.eval_steps and has_eval else "no",
        eval_steps=t.eval_steps,
        prediction_loss_only=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        report_to=t.report_to or "none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # LED uses every parameter in each step (DDP: no extra graph walk)
        log_level="warning",
    )


def train(
    cfg: RunConfig,
    run: RunFolder,
    prepared: Path,
    threads: int | None = None,
    stop_after: int | None = None,
    restart_on_data_change: bool = False,
    decoding: bool = True,
    callbacks: tuple = (),
    events_dir: Path | None = None,
) -> dict:
    """Train (or resume) the run on its prepared data; save the final model to `checkpoint/`; write meta.json.

    `stop_after`: checkpoint and stop after that optimizer step (TrainingInterrupted), for audit replays.
    `restart_on_data_change`: see `check_resume_data`. `decoding=False`: `cfg` is a `training_config`
    (the workflow's train rule), whose decoding sections are placeholders. `callbacks`: more TrainerCallbacks,
    called after the run's own (bench/ times steps with one). `events_dir`: where the TensorBoard curves go
    (default: `run`; the workflow's `trained/` folder: the run folder above it)."""
    from transformers.trainer_callback import PrinterCallback

    from .callbacks import (  # transformers: only when training
        MarkComplete,
        StepLog,
        StepLosses,
        StopOnSignal,
        TensorBoardCurves,
    )

    distributed.init()
    threads = set_threads(cfg, threads)
    precision = resolve_precision(cfg.training.precision)
    manifest = read_manifest(prepared)
    check_prepared(prepared, manifest)
    tok = load_tokenizer(prepared)
    model = _build_model(cfg, tok)
    train_ds, eval_ds = load_prepared(prepared, "train"), load_prepared(prepared, "validation")
    layout = distributed.run_layout(cfg.training.per_device_train_batch_size, cfg.training.gradient_accumulation_steps)
    code = factory.record(cfg.model.factory) if cfg.model.factory else None
    record = RunRecord(
        cfg, {**provenance.environment(), **layout}, provenance.git_state(), manifest, decoding, precision, code
    )
    resume_from = _claim_attempt(run, record, layout, restart_on_data_change)
    trainer = trainer_class()(
        model=model,
        args=_training_args(cfg, run, precision, eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator(tok, model),
        processing_class=tok,
    )
    set_threads(cfg, threads)  # again: accelerate's multi-CPU set-up may have changed it
    if cfg.training.group_by_length:  # one small column, read once (not the token ids)
        trainer.train_lengths = load_prepared(prepared, "train", ("length",))["length"]
    step_losses, on_signal = StepLosses(run, trainer), StopOnSignal(stop_after, run.path / STOP_FILE)
    trainer.remove_callback(PrinterCallback)  # its dict prints duplicate our step lines
    curves = TensorBoardCurves(events_dir or run.path)
    for cb in (step_losses, StepLog(), on_signal, curves, MarkComplete(), *callbacks):
        trainer.add_callback(cb)
    if distributed.is_main() and (why := distributed.uneven_epoch(len(train_ds), layout)):
        log.warning("run %s: %s", cfg.run_name, why)
    n_params = sum(p.numel() for p in model.parameters())
    _log_start(cfg, n_params, len(train_ds), manifest["key"], precision, threads, layout, resume_from)
    t0 = time.perf_counter()
    result = _train_from(trainer, cfg, resume_from)
    train_seconds = time.perf_counter() - t0
    if on_signal.received:
        _stopped(run, trainer, on_signal.received, train_seconds)
    if not distributed.is_main():  # rank 0 saves the final weights and meta.json
        return {}
    return _finish(run, trainer, tok, step_losses, record, n_params, result, train_seconds)


def _claim_attempt(run: RunFolder, record: RunRecord, layout: dict, restart_on_data_change: bool) -> Path | None:
    """Rank 0 alone reads and writes the run folder: checks the resume (data, layout), records the attempt and
    the provenance; the other ranks get its resume decision, or its error. The checkpoint to resume from."""
    setup: tuple[str, object] = ("ok", None)
    if distributed.is_main():
        try:
            check_resume_data(run, record.manifest, restart_on_data_change, record.model_code)
            resume_from = latest_checkpoint(run.resume)
            if resume_from:
                check_resume_layout(run, layout)
            attempts = record_attempt(record.cfg, run, resume_from, record.manifest, layout, record.model_code)
            if record.git["diff"]:
                atomic_write_text(run.path / "git.diff", record.git["diff"])
            write_json(run.meta, _meta(record, attempts))
            atomic_write_text(run.path / "requirements.txt", "\n".join(provenance.installed_packages()) + "\n")
            setup = ("ok", str(resume_from) if resume_from else None)
        except Exception as e:
            distributed.share(("failed", f"{type(e).__name__} on rank 0: {e}"))
            raise
    kind, value = distributed.share(setup)
    if kind == "failed":
        raise RuntimeError(value)
    return Path(value) if value else None


def _log_start(cfg, n_params, examples, data_key, precision, threads, layout, resume_from) -> None:
    processes = (
        f", {layout['world_size']} processes on {layout['num_nodes']} node(s), effective batch "
        f"{layout['effective_batch_size']}"
        if layout["world_size"] > 1
        else ""
    )
    log.info(
        "run %s: %s, %.2fM parameters, %d train examples (prepared data %s), precision %s, %d threads%s%s",
        cfg.run_name,
        cfg.model.name,
        n_params / 1e6,
        examples,
        data_key,
        precision,
        threads,
        processes,
        f", resuming from {resume_from.name}" if resume_from else "",
    )


def _train_from(trainer, cfg: RunConfig, resume_from: Path | None):
    """trainer.train(), resuming; a finished training is not trained again (its result is None)."""
    # Trainer.train() starts with a full gc.collect() (accelerate's free_memory): frozen, the ~0.4 M
    # objects of the imports are skipped (0.25 s per run on 2 CPU cores)
    gc.freeze()
    try:
        if finished_training(resume_from, cfg.training.max_steps):
            log.info("run %s: %s is the end of training; nothing left to train", cfg.run_name, resume_from.name)
            load_finished(trainer, resume_from)
            return None
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        gc.unfreeze()


def _stopped(run: RunFolder, trainer, signal_name: str, train_seconds: float) -> None:
    """A signal stopped training after a resume checkpoint: rank 0 records it in the attempt; every rank raises."""
    step = trainer.state.global_step
    if not distributed.is_main():
        raise TrainingInterrupted(f"{signal_name} at step {step}")
    attempts = run.read_json(run.attempts)
    attempts[-1].update(
        end_time=now_iso(), stopped=signal_name, stopped_at_step=step, train_seconds=round(train_seconds, 3)
    )
    write_json(run.attempts, attempts)
    raise TrainingInterrupted(f"{signal_name} at step {step}: resume checkpoint saved in {run.resume}")


def _finish(run, trainer, tok, step_losses, record: RunRecord, n_params, result, train_seconds) -> dict:
    """After the last step: histories, the final checkpoint, and meta.json with its hashes."""
    history = trainer.state.log_history
    atomic_write_text(run.log_history, "".join(json.dumps(h) + "\n" for h in history))
    step_losses.flush()
    atomic_write_text(run.step_losses, run.step_losses_partial.read_text())
    _save_final(trainer, tok, run, record)
    train_losses = [h["loss"] for h in history if "loss" in h]
    attempts = run.read_json(run.attempts)
    attempts[-1]["end_time"] = now_iso()
    attempts[-1]["train_seconds"] = round(train_seconds, 3)
    write_json(run.attempts, attempts)
    meta = _meta(
        record,
        attempts,
        num_parameters=n_params,
        global_step=trainer.state.global_step,
        final_train_loss=train_losses[-1] if train_losses else None,
        train_runtime_seconds=round(sum(a.get("train_seconds", 0) for a in attempts), 3),
        train_samples_per_second=result.metrics.get("train_samples_per_second") if result else None,
        input_tokens_seen=trainer.state.num_input_tokens_seen,
        weights_sha256=sha256_file(run.checkpoint / "model.safetensors"),
        peak_rss_mb=provenance.peak_rss_mb(),
    )
    write_json(run.meta, meta)
    return meta


def _save_final(trainer, tokenizer, run: RunFolder, record: RunRecord) -> None:
    """Save weights + tokenizer + generation config (+ how a factory builds the model again) to a temp folder,
    then swap it in."""
    tmp = run.path / ".checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))  # model.safetensors, config.json, generation_config.json, tokenizer
    tokenizer.save_pretrained(str(tmp))
    if record.model_code:
        how = {**record.model_code, "model_config": asdict(record.cfg.model)}
        atomic_write_text(tmp / factory.RECORD_FILE, json.dumps(how, indent=2, sort_keys=True) + "\n")
    for leftover in ("training_args.bin",):
        (tmp / leftover).unlink(missing_ok=True)
    if run.checkpoint.exists():
        shutil.rmtree(run.checkpoint)
    os.replace(tmp, run.checkpoint)
