"""Successive halving in the workflow: the jobs of its rules (workflow/rules/halving.smk).

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

from . import search
from .runfolder import COMPLETE_MARKER, RunFolder, atomic_write_text, now_iso, read_jsonl, sha256_file, write_json

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
    from .jobs import _link_or_copy

    kept, live = rung_checkpoint(trained, step), trained.resume / f"checkpoint-{step}"
    if _complete(kept) or not _complete(live):
        return kept
    tmp = kept.with_name(f".{kept.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(live.iterdir()):  # the completeness marker last
        if path.is_file() and path.name != COMPLETE_MARKER:
            _link_or_copy(path, tmp / path.name)
    _link_or_copy(live / COMPLETE_MARKER, tmp / COMPLETE_MARKER)
    shutil.rmtree(kept, ignore_errors=True)
    os.replace(tmp, kept)
    return kept


def rung_meta(trained: RunFolder, step: int) -> Path:
    """meta.json of the training that reached the rung (in resume/, which no rule owns)."""
    return trained.resume / f"meta-{step}.json"


def _complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


# ----------------------------------------------------------------------------- rule train_rung
def train_rung_job(snakemake) -> int:
    """rule train_rung: train the run to the rung's step (resuming; as many processes as rule train would use,
    `jobs.train_in_job`), then score the rung checkpoint on the validation split."""
    from .cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, setup_logging
    from .config import ConfigError, from_dict, training_part
    from .jobs import _offline, _to_log, train_in_job
    from .runfolder import RunFolderError, RunLock

    out, step = Path(snakemake.output[0]), int(snakemake.wildcards.step)
    trained = RunFolder(out.parent.parent / "trained")
    ckpt = keep_rung(trained, step)
    if not _complete(ckpt):
        code = train_in_job(
            snakemake, stop_after=step, trained_dir=trained.path, config=training_part(snakemake.params.config)
        )
        ckpt = keep_rung(trained, step)
        if not _complete(ckpt):  # interrupted before the rung (time limit, signal) or failed: say so, retry resumes
            return code if code else EXIT_FAILED
    if not rung_meta(trained, step).is_file():  # also when killed just after the rung checkpoint (issue 21.8)
        # trained/meta.json (the record of the training that reached the rung) is also the train rule's output,
        # which Snakemake removes before that job runs: keep it where a stopped run's finish step finds it
        if not trained.meta.is_file():
            log.error("%s: missing; the training that reached step %d left no record: rerun it", trained.meta, step)
            return EXIT_FAILED
        shutil.copy2(trained.meta, rung_meta(trained, step))
    _offline()
    _to_log(snakemake.log[0], "a")
    setup_logging()
    try:
        cfg = from_dict(snakemake.params.config, source=f"{out}: run config")
        with RunLock(trained.path.parent, what=f"score rung step {step}"):
            result = score_rung(cfg, ckpt, Path(snakemake.input.prepared), snakemake.threads)
        result.update(run_name=cfg.run_name, step=step, checkpoint=str(ckpt), time=now_iso())
        write_json(out, result)
        log.info("run %s at step %d: %s", cfg.run_name, step, json.dumps(result["metrics"]))
    except (ConfigError, RunFolderError) as e:
        log.error("%s", e)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:
        RunFolder(trained.path.parent).record_failure(f"train_rung {step}", f"{type(e).__name__}: {e}")
        log.exception("run %s failed scoring rung step %d", trained.path.parent.name, step)
        return EXIT_FAILED
    return 0


def score_rung(cfg, checkpoint: Path, prepared: Path, threads: int | None) -> dict:
    """Loss and ROUGE (and BERTScore with a scorer model) of a rung checkpoint on the validation split,
    decoded with the run's own generation settings."""
    import torch

    from . import metrics
    from . import model as model_mod
    from .evaluate import generate_and_score_loss
    from .train import load_prepared, set_threads

    set_threads(cfg, threads)
    val = load_prepared(prepared, "validation", ("input_ids", "labels", "length", "reference"))
    if val is None:
        raise ValueError(f"{prepared}: no validation split: halving measures runs on it")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = model_mod.load_pretrained(str(checkpoint))
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


# ----------------------------------------------------------------------------- checkpoint halving_decision
def decision_job(snakemake) -> int:
    """checkpoint halving_decision: the rung results of the runs that entered -> who goes on (a file)."""
    from . import metrics_registry
    from .cli import setup_logging
    from .jobs import _to_log

    _to_log(snakemake.log[0])
    setup_logging()
    h = snakemake.params.halving
    halving = search.Halving(tuple(h["rungs"]), h["keep"], h["metric"])
    rung = int(snakemake.wildcards.rung)
    results = [json.loads(Path(p).read_text()) for p in snakemake.input]
    scores = {r["run_name"]: r["metrics"].get(halving.metric) for r in results}
    higher = metrics_registry.get(halving.metric).higher_is_better
    ranking, kept, stopped = search.decide(scores, halving, higher)
    decision = {
        "sweep": snakemake.wildcards.sweep,
        "rung": rung,
        "rungs": list(halving.rungs),
        "step": halving.rungs[rung - 1],
        "next_step": halving.rungs[rung],
        "metric": halving.metric,
        "higher_is_better": higher,
        "keep": halving.keep,
        "entered": len(ranking),
        "ranking": [{"run_name": n, halving.metric: scores[n]} for n in ranking],
        "kept": kept,
        "stopped": stopped,
        "time": now_iso(),
    }
    write_json(snakemake.output[0], decision)
    log.info(
        "sweep %s rung %d (step %d): %d of %d go on to step %d by %s: %s",
        decision["sweep"],
        rung,
        decision["step"],
        len(kept),
        len(ranking),
        decision["next_step"],
        halving.metric,
        ", ".join(kept),
    )
    return 0


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


def train_or_stop_job(snakemake) -> int:
    """rule train, for every run: a run that halving stopped gets its rung checkpoint as trained/; others train
    (to the full budget, resuming from their last rung) and, in a halving sweep, record the rung they reached."""
    from .jobs import train_job

    decisions = list(snakemake.input.get("decisions", []))
    if not decisions:
        return train_job(snakemake)
    run_name = Path(snakemake.output.meta).parent.parent.name
    where = reached(decisions, run_name)
    if where["status"] == "stopped":
        return finish_stopped_job(snakemake, where)
    code = train_job(snakemake)
    if code == 0:
        meta = json.loads(Path(snakemake.output.meta).read_text())
        write_json(snakemake.output.meta, {**meta, "halving": where})
    return code


def finish_stopped_job(snakemake, where: dict) -> int:
    """A run that halving stopped: trained/checkpoint and trained/meta.json from its rung checkpoint."""
    from .cli import EXIT_FAILED, setup_logging
    from .jobs import _to_log
    from .runfolder import RunLock

    _to_log(snakemake.log[0], "a")
    setup_logging()
    trained = RunFolder(Path(snakemake.output.meta).parent)
    try:
        with RunLock(trained.path.parent, what="finish a stopped run"):
            finish_stopped(trained, where)
    except Exception as e:
        log.exception("run %s: cannot finish it at its rung: %s", trained.path.parent.name, e)
        return EXIT_FAILED
    log.info(
        "run %s stopped by halving at rung %d (step %d): %s",
        trained.path.parent.name,
        where["rung"],
        where["step"],
        where["decision"],
    )
    return 0


def finish_stopped(trained: RunFolder, where: dict) -> None:
    step = where["step"]
    ckpt = rung_checkpoint(trained, step)
    if not _complete(ckpt):
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
