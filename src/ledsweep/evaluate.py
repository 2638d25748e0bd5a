"""Evaluate a trained run on its test split: eval loss, batched generation, ROUGE, BERTScore, extra metrics.

Writes `predictions.jsonl`, then `summary.json` last and atomically.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from . import events, faults, metrics, metrics_registry, provenance
from . import model as model_mod
from .config import ConfigError, RunConfig, config_sha256, train_config_sha256
from .data import check_prepared, load_prepared, read_manifest, recorded_data_changes
from .model import set_threads
from .runfolder import RunFolder, atomic_write_text, now_iso, write_json

log = logging.getLogger("ledsweep")


def generate_and_score_loss(model, tok, test, cfg: RunConfig, device) -> tuple[list[str], float]:
    """Generation in batches of similar length (longest first; predictions returned in the split's order)
    + token-weighted teacher-forced loss. `test` is the prepared, memory-mapped split: one batch of token
    ids is in memory at a time."""
    import torch
    from tqdm.auto import tqdm

    lengths = test["length"]
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    preds: list[str] = [""] * len(lengths)
    loss_sum, n_tokens = 0.0, 0
    bs = cfg.training.per_device_eval_batch_size
    window = model_mod.pad_multiple(model)
    model.eval()
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    with torch.no_grad():
        for idx in tqdm(batches, desc="evaluate", unit="batch", mininterval=10, disable=None):
            rows = test[idx]
            batch = tok.pad({"input_ids": rows["input_ids"]}, pad_to_multiple_of=window, return_tensors="pt").to(device)
            extra = model_mod.extra_inputs(model, batch["input_ids"])
            lab = tok.pad({"input_ids": rows["labels"]}, return_tensors="pt")["input_ids"]
            lab[lab == tok.pad_token_id] = -100
            lab = lab.to(device)
            out = model(**batch, **extra, labels=lab)
            n = int((lab != -100).sum())
            loss_sum += out.loss.float().item() * n
            n_tokens += n
            gen = model.generate(**batch, **extra, generation_config=model.generation_config)
            for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
                preds[i] = text.strip()
    return preds, loss_sum / max(n_tokens, 1)


def check_trained_with(cfg: RunConfig, meta: dict, run: RunFolder) -> None:
    """The checkpoint must come from this config's training keys (decoding keys may differ: that is what
    a decoding variant is). ConfigError naming the run otherwise."""
    recorded = meta.get("train_config_sha256")
    if recorded and recorded != train_config_sha256(cfg):
        raise ConfigError(
            f"{run.path}: its checkpoint was trained with other training keys than {run.config} holds now "
            f"(train_config_sha256 {recorded[:12]} in meta.json, {train_config_sha256(cfg)[:12]} now); retrain it"
        )


def check_trained_data(meta: dict, manifest: dict, run: RunFolder) -> None:
    """Evaluation uses exactly the data and tokenizer the checkpoint was trained with (issue 21.2): the
    prepared data's fingerprint must be the one meta.json recorded. ConfigError naming what changed."""
    recorded = (meta.get("prepared_data") or {}).get("fingerprint")
    if recorded and recorded != manifest["fingerprint"]:
        raise ConfigError(
            f"{run.path}: {recorded_data_changes(meta, manifest)} changed since its checkpoint was trained; evaluate it on "
            f"the data it was trained on (restore it), or retrain the run"
        )


def evaluate(
    cfg: RunConfig, run: RunFolder, prepared: Path, train_meta: dict | None = None, threads: int | None = None
) -> dict:
    """Score `run.checkpoint` on the prepared test split; write predictions.jsonl and summary.json."""
    import torch
    from transformers import set_seed

    set_threads(cfg, threads)
    set_seed(cfg.seed)
    manifest = read_manifest(prepared)
    check_prepared(prepared, manifest)
    test = load_prepared(prepared, "test", ("input_ids", "labels", "length", "reference"))
    references = test["reference"]
    bert = None
    if cfg.evaluation.bertscore_model:  # build first: a missing scorer model fails before generation
        e = cfg.evaluation
        bert = metrics.BertScore(e.bertscore_model, e.bertscore_num_layers, e.bertscore_batch_size)
    # extra metrics (`evaluate` modules) load before generation too: a missing one fails at once
    extra = metrics.load_extra_metrics(cfg.evaluation.extra_metrics) if cfg.evaluation.extra_metrics else {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    meta = train_meta or run.read_json(run.meta, default={})
    check_trained_with(cfg, meta, run)
    check_trained_data(meta, manifest, run)
    model, tok = model_mod.load_trained(run.checkpoint)
    model_mod.configure_generation(model, cfg)  # this run's decoding (variants share one trained model)
    model.to(device)

    t0 = time.perf_counter()
    preds, loss = generate_and_score_loss(model, tok, test, cfg, device)
    t_gen = time.perf_counter() - t0
    faults.hit("evaluate")
    scores = metrics.rouge(preds, references, workers=cfg.evaluation.rouge_workers)
    t_rouge = time.perf_counter() - t0 - t_gen
    if bert is not None:
        scores.update(bert(preds, references))
    else:
        scores.update(bertscore=None, bertscore_precision=None, bertscore_recall=None)
    t_bert = time.perf_counter() - t0 - t_gen - t_rouge
    scores.update(metrics.extra_metrics(extra, preds, references))
    t_eval = time.perf_counter() - t0
    exact = sum(p == r.strip() for p, r in zip(preds, references)) / len(preds)

    atomic_write_text(
        run.predictions,
        "".join(
            json.dumps({"index": i, "prediction": p, "reference": r}, ensure_ascii=False) + "\n"
            for i, (p, r) in enumerate(zip(preds, references))
        ),
    )
    train_seconds = meta.get("train_runtime_seconds") or 0.0
    summary = {
        "run_name": cfg.run_name,
        # a run that successive halving stopped at a rung: evaluated at the step it reached
        "status": "stopped" if (meta.get("halving") or {}).get("status") == "stopped" else "completed",
        "metrics": metrics_registry.summary_metrics({"loss": loss, **scores, "exact_match": exact}, extra),
        "num_test_examples": len(preds),
        "test_split": manifest["data_files"].get("test", {}).get("path") or f"{manifest['spec']['dataset_name']}:test",
        "prepared_data": manifest["key"],
        "config_sha256": config_sha256(cfg),
        "trained_by": meta.get("trained_by", cfg.run_name),
        **({"halving": meta["halving"]} if meta.get("halving") else {}),
        "train_runtime_seconds": train_seconds,
        "eval_runtime_seconds": round(t_eval, 3),
        "eval_timing_seconds": {
            "generation_and_loss": round(t_gen, 3),
            "rouge": round(t_rouge, 3),
            "bertscore": round(t_bert, 3),
            **({"extra_metrics": round(t_eval - t_gen - t_rouge - t_bert, 3)} if extra else {}),
        },
        "runtime_seconds": round(train_seconds + t_eval, 3),
        # the most memory any of its processes held (training's as meta.json recorded it, and this one)
        "peak_rss_mb": max(meta.get("peak_rss_mb") or 0, provenance.peak_rss_mb()),
        "end_time": now_iso(),
    }
    jobs = [*(meta.get("slurm_job_ids") or []), *filter(None, [provenance.slurm_job_id()])]
    if jobs and (usage := provenance.slurm_usage(jobs)):  # cost: training's jobs and this one (so far)
        summary["slurm"] = {"job_ids": jobs, **usage}
    events.write_final_metrics(run.path, summary["metrics"], meta.get("global_step") or 0)  # TensorBoard's view
    run.failure.unlink(missing_ok=True)
    write_json(run.summary, summary)  # last: the run folder is now complete
    shown = " | ".join(
        f"{name} {metrics_registry.get(name).format(value) or 'n/a'}"
        for name, value in summary["metrics"].items()
        if metrics_registry.get(name).shown
    )
    log.info("run %s: %s | %s", cfg.run_name, shown, run.summary)
    return summary
