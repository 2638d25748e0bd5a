"""Successive halving in the workflow: what its rules need beyond plain training (workflow/rules/halving.smk,
the jobs in `ledsweep.jobs`).

    train_rung      results/<run>/rungs/<step>.json   train (resume) to the rung's step, score the validation split
    halving_decision (a Snakemake checkpoint)         results/sweeps/<sweep>/halving/rung<k>.json: who goes on
    train           a run stopped at a rung: its checkpoint at that step becomes trained/checkpoint;
                    a run that went on trains to the full budget as any run does

Training always uses the full budget's schedule (training.max_steps is the last rung) and stops at a rung
with a resume checkpoint (`train(stop_after=step)`), so a run that goes on resumes from it exactly: its final
weights are bitwise those of an uninterrupted run of the same config. No state lives outside files: a
killed `snakemake` starts again where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from . import metrics, search
from . import model as model_mod
from .data import load_prepared
from .evaluate import generate_and_score_loss
from .model import set_threads
from .runfolder import COMPLETE_MARKER, RunFolder, atomic_write_text, link_or_copy, read_jsonl, sha256_file, write_json

log = logging.getLogger("ledsweep")

# what a rung's resume checkpoint holds beyond the model and tokenizer (left out of an exported checkpoint)
TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", COMPLETE_MARKER)


def rung_checkpoint(trained: RunFolder, step: int) -> Path:
    """The rung's checkpoint, kept apart from resume/'s checkpoints: save_total_limit never rotates it away,
    so a run that a later decision stops (`halving.keep` lowered after the sweep) still has it (issue 21.10).
    Under resume/, so it goes with the resume state when that is discarded (other training keys or data)."""
    return trained.resume / "rungs" / f"checkpoint-{step}"


def keep_rung(trained: RunFolder, step: int) -> Path:
    """The rung checkpoint, hard links to resume/checkpoint-<step> made once it is complete (then rung_checkpoint)."""
    kept, live = rung_checkpoint(trained, step), trained.resume / f"checkpoint-{step}"
    if complete(kept) or not complete(live):
        return kept
    tmp = kept.with_name(f".{kept.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(live.iterdir()):  # the completeness marker last
        if path.is_file() and path.name != COMPLETE_MARKER:
            link_or_copy(path, tmp / path.name)
    link_or_copy(live / COMPLETE_MARKER, tmp / COMPLETE_MARKER)
    shutil.rmtree(kept, ignore_errors=True)
    os.replace(tmp, kept)
    return kept


def rung_meta(trained: RunFolder, step: int) -> Path:
    """meta.json of the training that reached the rung (in resume/, which no rule owns)."""
    return trained.resume / f"meta-{step}.json"


def complete(path: Path) -> bool:
    """A checkpoint folder whose writing finished (its completeness marker exists)."""
    return (path / COMPLETE_MARKER).is_file()


def score_rung(cfg, checkpoint: Path, prepared: Path, threads: int | None) -> dict:
    """Loss and ROUGE (and BERTScore with a scorer model) of a rung checkpoint on the validation split,
    decoded with the run's own generation settings."""
    import torch

    set_threads(cfg, threads)
    val = load_prepared(prepared, "validation", ("input_ids", "labels", "length", "reference"))
    if val is None:
        raise ValueError(f"{prepared}: no validation split: halving measures runs on it")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = model_mod.load_trained(checkpoint, cfg)
    model_mod.configure_generation(model, cfg)
    model.to(device)
    references = val["reference"]
    preds, loss = generate_and_score_loss(model, tok, val, cfg, device)
    scores = {"loss": loss, **metrics.rouge(preds, references, workers=cfg.evaluation.rouge_workers)}
    if cfg.evaluation.bertscore_model:
        e = cfg.evaluation
        scores.update(
            metrics.BertScore(e.bertscore_model, e.bertscore_num_layers, e.bertscore_batch_size)(preds, references)
        )
    return {"split": "validation", "num_examples": len(preds), "metrics": scores}


def reached(decisions: list[str], run_name: str) -> dict:
    """Where halving left a run, from the decisions it went through (in rung order): {status, rung, rungs,
    step, decision}; status `stopped` (at the rung of the last decision) or `completed` (the full budget)."""
    last = None
    for path in decisions:
        last, d = path, search.read_decision(path)
        if run_name in d["stopped"]:
            return {
                "status": "stopped",
                "rung": d["rung"],
                "rungs": len(d["rungs"]),
                "step": d["step"],
                "decision": path,
            }
        if run_name not in d["kept"]:
            raise ValueError(f"{path}: {run_name} did not enter rung {d['rung']}")
    d = search.read_decision(last)
    return {
        "status": "completed",
        "rung": len(d["rungs"]),
        "rungs": len(d["rungs"]),
        "step": d["rungs"][-1],
        "decision": last,
    }


def finish_stopped(trained: RunFolder, where: dict) -> None:
    step = where["step"]
    ckpt = rung_checkpoint(trained, step)
    if not complete(ckpt):
        raise FileNotFoundError(f"{ckpt}: the rung checkpoint is missing or incomplete; rerun the rung")
    tmp = trained.path / ".checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for path in sorted(ckpt.iterdir()):
        if path.is_file() and path.name not in TRAINER_STATE and not path.name.startswith("rng_state"):
            shutil.copy2(path, tmp / path.name)
    if trained.checkpoint.exists():
        shutil.rmtree(trained.checkpoint)
    os.replace(tmp, trained.checkpoint)
    state = json.loads((ckpt / "trainer_state.json").read_text())
    history = state.get("log_history", [])
    atomic_write_text(trained.log_history, "".join(json.dumps(h) + "\n" for h in history))
    losses = [r for r in read_jsonl(trained.step_losses_partial) if r["step"] <= step]
    atomic_write_text(trained.step_losses, "".join(json.dumps(r) + "\n" for r in losses))
    attempts = trained.read_json(trained.attempts, default=[])
    meta = trained.read_json(rung_meta(trained, step))
    if not meta:
        raise FileNotFoundError(f"{rung_meta(trained, step)}: the record of the rung's training is missing; rerun it")
    train_losses = [h["loss"] for h in history if "loss" in h]
    meta.update(
        attempts=len(attempts),
        attempt_history=attempts,
        resumes=sum(1 for a in attempts if a.get("resumed_from_step") is not None),
        slurm_job_ids=[a["slurm_job_id"] for a in attempts if a.get("slurm_job_id")],
        global_step=state.get("global_step", step),
        final_train_loss=train_losses[-1] if train_losses else None,
        train_runtime_seconds=round(sum(a.get("train_seconds", 0) for a in attempts), 3),
        input_tokens_seen=state.get("num_input_tokens_seen"),
        weights_sha256=sha256_file(trained.checkpoint / "model.safetensors"),
        halving=where,
    )
    write_json(trained.meta, meta)
