"""Train one run with transformers' Seq2SeqTrainer: seeded, resumable, signal-safe.

Resume state lives in `<run>/resume/` (never a workflow output, so Snakemake does not delete
it when a job fails). A checkpoint counts only once `ledsweep-checkpoint-complete` is written
inside it, after the Trainer has saved everything else; half-written ones are removed.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from . import model as model_mod
from . import provenance, runfolder
from .config import SCRATCH, ConfigError, RunConfig, config_sha256, dump_yaml, train_config_sha256
from .distributed import STOP_FILE
from .runfolder import COMPLETE_MARKER, RunFolder, RunFolderError, atomic_write_text, now_iso, sha256_file, write_json

log = logging.getLogger("ledsweep")


class TrainingInterrupted(RuntimeError):
    """Stopped by SIGTERM/SIGUSR1 after saving a resume checkpoint (Slurm time limit, preemption)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- run folder
def prepare_run_folder(cfg: RunConfig, overwrite: bool = False, run_dir: Path | None = None) -> RunFolder:
    """Create or reuse the run folder (`run_dir`, by default `<output_dir>/<run_name>`); never clobber a
    finished run or another config."""
    run = RunFolder(run_dir or cfg.run_dir)
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
    discard_other_training(run, cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_temp_files()
    text = dump_yaml(cfg.to_dict())
    if not run.config.is_file() or run.config.read_text() != text:
        atomic_write_text(run.config, text)  # untouched when equal: keeps Snakemake's mtimes stable
    return run


def discard_other_training(run: RunFolder, cfg: RunConfig) -> None:
    """Resume state trained with other training keys is removed (a decoding-only change keeps it)."""
    want = train_config_sha256(cfg)
    if any(a.get("train_config_sha256") != want for a in run.read_json(run.attempts, default=[])):
        log.warning("discarding resume state of a different training config in %s", run.resume)
        shutil.rmtree(run.resume, ignore_errors=True)


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


def finished_training(checkpoint: Path | None, max_steps: int | None) -> bool:
    """True when `checkpoint` was saved at the end of training: its step reached `max_steps` (the config's;
    without one, the step count the Trainer planned). Resuming from it would train again: the Trainer takes
    one more step when max_steps is not a multiple of the steps per epoch (issue 21.1)."""
    if checkpoint is None:
        return False
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    target = max_steps or state.get("max_steps") or 0
    return target > 0 and state.get("global_step", 0) >= target


def load_finished(trainer, checkpoint: Path) -> None:
    """The trainer as it was when the finished training saved `checkpoint`: its weights (tied ones tied
    again) and its state (step, log history, tokens seen); nothing is trained."""
    from safetensors.torch import load_file
    from transformers.trainer_callback import TrainerState

    weights = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = trainer.model.load_state_dict(weights, strict=False)
    trainer.model.tie_weights()
    state = trainer.model.state_dict()
    loaded = {state[k].data_ptr() for k in weights if k in state}
    untied = [k for k in missing if state[k].data_ptr() not in loaded]  # tied ones share a loaded tensor
    if unexpected or untied:
        raise RuntimeError(f"{checkpoint}: weights do not fit the model (missing {untied}, unexpected {unexpected})")
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))


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
    """torch threads: the config's num_threads, else `fallback` (the job's CPUs), else this process's CPUs
    (shared by the processes torchrun started on this node)."""
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if "LOCAL_RANK" in os.environ else 1
    n = cfg.num_threads or fallback or max(1, len(os.sched_getaffinity(0)) // local)
    torch.set_num_threads(n)
    return n


def collator(tokenizer, model):
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


class DataChanged(ConfigError):
    """A resumed run whose prepared data (data files or tokenizer) differs from its first attempt's."""


LAYOUT_KEYS = ("world_size", "num_nodes", "per_device_train_batch_size", "gradient_accumulation_steps")
LAYOUT_RECORD = (*LAYOUT_KEYS, "effective_batch_size")  # what each attempt records of its layout
ALLOW_LAYOUT_CHANGE = "LEDSWEEP_ALLOW_LAYOUT_CHANGE"  # =1: resume on another process layout (--allow-layout-change)


def _attempts(
    cfg: RunConfig, run: RunFolder, resumed_from: Path | None, manifest: dict, layout: dict | None = None
) -> list[dict]:
    attempts = run.read_json(run.attempts, default=[])
    attempts.append(
        {
            "start_time": now_iso(),
            "train_config_sha256": train_config_sha256(cfg),
            "data_fingerprint": manifest["fingerprint"],
            "data_sha256": data_hashes(manifest),
            "tokenizer_sha256": manifest["tokenizer_sha256"],
            "slurm_job_id": provenance.slurm_job_id(),
            "resumed_from_step": int(resumed_from.name.split("-")[1]) if resumed_from else None,
            "layout": {k: (layout or {}).get(k) for k in LAYOUT_RECORD},
        }
    )
    write_json(run.attempts, attempts)
    return attempts


def data_hashes(manifest: dict) -> dict[str, str]:
    """data file path -> sha256, as the prepared data's manifest recorded them when it was prepared."""
    return {f["path"]: f["sha256"] for f in manifest["data_files"].values()}


def data_changes(data_sha256: dict | None, tokenizer_sha256: str | None, manifest: dict) -> str:
    """What differs between the data a run recorded (`data_sha256`, `tokenizer_sha256`) and the prepared data
    `manifest` describes: 'data/train.jsonl and the tokenizer' (the files whose sha256 moved, then the tokenizer)."""
    recorded, now = data_sha256 or {}, data_hashes(manifest)
    changed = [p for p in sorted(set(recorded) | set(now)) if recorded.get(p) != now.get(p)]
    if tokenizer_sha256 and tokenizer_sha256 != manifest["tokenizer_sha256"]:
        changed.append("the tokenizer")
    return " and ".join(changed) or "the prepared data"


def recorded_data_changes(meta: dict, manifest: dict) -> str:
    """`data_changes` against what meta.json recorded of the run's data."""
    return data_changes(meta.get("data_sha256"), (meta.get("prepared_data") or {}).get("tokenizer_sha256"), manifest)


def check_resume_layout(run: RunFolder, layout: dict) -> None:
    """A resume keeps the process layout the run trained with (issue 21.3): another number of processes or
    nodes, batch or accumulation trains on other batches (2 processes: twice the batch). ConfigError naming
    both layouts, unless LEDSWEEP_ALLOW_LAYOUT_CHANGE=1 (train_baseline.py --allow-layout-change) asks for it;
    each attempt's layout is in meta.json's attempt_history either way."""
    previous = [a["layout"] for a in run.read_json(run.attempts, default=[]) if a.get("layout")]
    if not previous:
        return
    was, now = previous[-1], {k: layout.get(k) for k in LAYOUT_RECORD}
    if all(was.get(k) == now[k] for k in LAYOUT_KEYS):
        return

    def text(d: dict) -> str:
        return (
            f"{d['world_size']} process(es) on {d['num_nodes']} node(s), batch {d['per_device_train_batch_size']} "
            f"x accumulation {d['gradient_accumulation_steps']} (effective {d['effective_batch_size']})"
        )

    if os.environ.get(ALLOW_LAYOUT_CHANGE) == "1":
        log.warning("run %s resumes on another layout, as asked: %s, was %s", run.name, text(now), text(was))
        return
    raise ConfigError(
        f"{run.path}: trained on {text(was)}, would resume on {text(now)}: another layout trains on other "
        f"batches; resume on the same layout, start over (--overwrite), or pass --allow-layout-change"
    )


def check_resume_data(run: RunFolder, manifest: dict, restart_on_change: bool) -> None:
    """Resume never mixes data: the first attempt's data fingerprint must be today's.

    On a change: refuse (DataChanged, naming what changed), or, when `restart_on_change` (the workflow
    re-running train because its data changed; --overwrite), discard the resume state and start over."""
    attempts = run.read_json(run.attempts, default=[])
    first = next((a.get("data_fingerprint") for a in attempts if a.get("data_fingerprint")), None)
    if first is None or first == manifest["fingerprint"] or not run.resume.is_dir():
        return
    # what the first attempt trained on: its own record (the workflow's meta.json is gone by now: Snakemake
    # removes a train job's outputs before it runs, and every file read as changed), else meta.json's
    first_record = next((a for a in attempts if a.get("data_sha256")), None)
    if first_record:
        what = data_changes(first_record["data_sha256"], first_record.get("tokenizer_sha256"), manifest)
    else:
        what = recorded_data_changes(run.read_json(run.meta, default={}), manifest)
    if not restart_on_change:
        raise DataChanged(
            f"{run.path}: {what} changed since this run started (its resume checkpoints were trained on the old "
            f"data); pass --overwrite to start it again from step 0, or restore the data"
        )
    log.warning("%s changed since %s started: discarding its resume state and starting from step 0", what, run.name)
    shutil.rmtree(run.resume, ignore_errors=True)
    run.meta.unlink(missing_ok=True)


def _meta(
    cfg: RunConfig, attempts: list[dict], env: dict, git: dict, manifest: dict, decoding: bool = True, **extra
) -> dict:
    files = manifest["data_files"]
    return {
        "run_name": cfg.run_name,
        "trained_by": cfg.run_name,
        "start_time": attempts[0]["start_time"],
        **env,
        "slurm_job_ids": [a["slurm_job_id"] for a in attempts if a["slurm_job_id"]],
        "attempts": len(attempts),
        "attempt_history": attempts,
        "resumes": sum(1 for a in attempts if a["resumed_from_step"] is not None),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        # the whole config (a training-only config has no decoding keys: the workflow's link step adds it)
        "config_sha256": config_sha256(cfg) if decoding else None,
        # the bytes prepare_run_folder wrote: the tables check config.yaml without a YAML parse
        "config_yaml_sha256": runfolder.text_sha256(dump_yaml(cfg.to_dict())) if decoding else None,
        "train_config_sha256": train_config_sha256(cfg),
        "data_files": {split: f["path"] for split, f in files.items()},
        "data_sha256": data_hashes(manifest),  # hashed once, when prepared
        "prepared_data": {
            "key": manifest["key"],
            "fingerprint": manifest["fingerprint"],
            "tokenizer_sha256": manifest["tokenizer_sha256"],
            "rows": manifest["rows"],
        },
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


def load_prepared(prepared: Path, split: str, columns: tuple[str, ...] = ("input_ids", "labels")):
    """A prepared split, memory-mapped from disk (None if the data has no such split)."""
    import datasets

    path = Path(prepared) / split
    if not path.is_dir():
        return None
    return datasets.load_from_disk(str(path)).select_columns(list(columns))


def load_tokenizer(prepared: Path):
    from transformers import AutoTokenizer

    from .prepare import TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(str(Path(prepared) / TOKENIZER_DIR))


def _build_model(cfg: RunConfig, tok):
    """A new LED sized by the config, or the pretrained weights; seeded first: same seed -> same weights."""
    from transformers import enable_full_determinism, set_seed

    set_seed(cfg.seed)
    if cfg.training.full_determinism:
        enable_full_determinism(cfg.seed, warn_only=True)
    if cfg.model.name == SCRATCH:
        model = model_mod.build_scratch(cfg, tok)
    else:
        model, _ = model_mod.load_pretrained(cfg.model.name, cfg.model.trust_remote_code, tokenizer=False)
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
        report_to="none",
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
) -> dict:
    """Train (or resume) the run on its prepared data; save the final model to `checkpoint/`; write meta.json.

    `stop_after`: checkpoint and stop after that optimizer step (TrainingInterrupted), for audit replays.
    `restart_on_data_change`: see `check_resume_data`. `decoding=False`: `cfg` is a `training_config`
    (the workflow's train rule), whose decoding sections are placeholders."""
    from transformers.trainer_callback import PrinterCallback

    from . import distributed
    from .data import check_prepared, read_manifest

    distributed.init()
    threads = set_threads(cfg, threads)
    precision = resolve_precision(cfg.training.precision)
    manifest = read_manifest(prepared)
    check_prepared(prepared, manifest)
    tok = load_tokenizer(prepared)
    model = _build_model(cfg, tok)
    train_ds = load_prepared(prepared, "train")
    eval_ds = load_prepared(prepared, "validation")
    layout = distributed.run_layout(cfg.training.per_device_train_batch_size, cfg.training.gradient_accumulation_steps)
    env, git = {**provenance.environment(), **layout}, provenance.git_state()

    # rank 0 alone reads and writes the run folder; the others get its resume decision (or its error)
    setup: tuple[str, object] = ("ok", None)
    if distributed.is_main():
        try:
            check_resume_data(run, manifest, restart_on_data_change)
            resume_from = latest_checkpoint(run.resume)
            if resume_from:
                check_resume_layout(run, layout)
            attempts = _attempts(cfg, run, resume_from, manifest, layout)
            if git["diff"]:
                atomic_write_text(run.path / "git.diff", git["diff"])
            write_json(run.meta, _meta(cfg, attempts, env, git, manifest, decoding, precision=precision))
            atomic_write_text(run.path / "requirements.txt", "\n".join(provenance.installed_packages()) + "\n")
            setup = ("ok", str(resume_from) if resume_from else None)
        except Exception as e:
            distributed.share(("failed", f"{type(e).__name__} on rank 0: {e}"))
            raise
    kind, value = distributed.share(setup)
    if kind == "failed":
        raise RuntimeError(value)
    resume_from = Path(value) if value else None

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
    from .callbacks import MarkComplete, StepLog, StepLosses, StopOnSignal

    step_losses, on_signal = StepLosses(run, trainer), StopOnSignal(stop_after, run.path / STOP_FILE)
    trainer.remove_callback(PrinterCallback)  # its dict prints duplicate our step lines
    for cb in (step_losses, StepLog(), on_signal, MarkComplete()):
        trainer.add_callback(cb)
    if distributed.is_main() and (why := distributed.uneven_epoch(len(train_ds), layout)):
        log.warning("run %s: %s", cfg.run_name, why)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "run %s: %s, %.2fM parameters, %d train examples (prepared data %s), precision %s, %d threads%s%s",
        cfg.run_name,
        cfg.model.name,
        n_params / 1e6,
        len(train_ds),
        manifest["key"],
        precision,
        threads,
        f", {layout['world_size']} processes on {layout['num_nodes']} node(s), effective batch "
        f"{layout['effective_batch_size']}"
        if layout["world_size"] > 1
        else "",
        f", resuming from {resume_from.name}" if resume_from else "",
    )
    t0 = time.perf_counter()
    # Trainer.train() starts with a full gc.collect() (accelerate's free_memory): frozen, the ~0.4 M
    # objects of the imports are skipped (0.25 s per run on 2 CPU cores)
    gc.freeze()
    try:
        if finished_training(resume_from, cfg.training.max_steps):  # a finished training is not trained again
            log.info("run %s: %s is the end of training; nothing left to train", cfg.run_name, resume_from.name)
            load_finished(trainer, resume_from)
            result = None
        else:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        gc.unfreeze()
    train_seconds = time.perf_counter() - t0
    if on_signal.received and not distributed.is_main():
        raise TrainingInterrupted(f"{on_signal.received} at step {trainer.state.global_step}")
    if on_signal.received:
        attempts = run.read_json(run.attempts)
        attempts[-1].update(
            end_time=now_iso(),
            stopped=on_signal.received,
            stopped_at_step=trainer.state.global_step,
            train_seconds=round(train_seconds, 3),
        )
        write_json(run.attempts, attempts)
        raise TrainingInterrupted(
            f"{on_signal.received} at step {trainer.state.global_step}: resume checkpoint saved in {run.resume}"
        )
    if not distributed.is_main():  # rank 0 saves the final weights and meta.json
        return {}
    return _finish(
        cfg, run, trainer, tok, step_losses, (env, git, manifest, decoding), precision, n_params, result, train_seconds
    )


def _finish(cfg, run, trainer, tok, step_losses, provenance_args, precision, n_params, result, train_seconds):
    """After the last step: histories, the final checkpoint, and meta.json with its hashes."""
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
        cfg,
        attempts,
        *provenance_args,
        precision=precision,
        num_parameters=n_params,
        global_step=trainer.state.global_step,
        final_train_loss=train_losses[-1] if train_losses else None,
        train_runtime_seconds=round(sum(a.get("train_seconds", 0) for a in attempts), 3),
        train_samples_per_second=result.metrics.get("train_samples_per_second") if result else None,
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
