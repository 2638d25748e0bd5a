"""Evaluate a trained run on its test split: eval loss, batched generation, ROUGE, BERTScore.

Writes `predictions.jsonl`, then `summary.json` last and atomically.
"""

from __future__ import annotations

import json
import logging
import time

from . import data as data_mod
from . import faults, metrics
from . import model as model_mod
from .config import RunConfig
from .runfolder import RunFolder, atomic_write_text, now_iso, write_json
from .train import set_threads

log = logging.getLogger("ledsweep")


def _batches(n: int, size: int, order: list[int]):
    for i in range(0, n, size):
        yield order[i : i + size]


def generate_and_score_loss(model, tok, documents, summaries, cfg: RunConfig, device) -> tuple[list[str], float]:
    """Greedy/beam generation in length-sorted batches + token-weighted teacher-forced loss."""
    import torch
    from tqdm.auto import tqdm

    d = cfg.data
    enc = tok(documents, max_length=d.max_source_length, truncation=True)
    labels = tok(text_target=summaries, max_length=d.max_target_length, truncation=True)["input_ids"]
    order = sorted(range(len(documents)), key=lambda i: -len(enc["input_ids"][i]))
    preds: list[str] = [""] * len(documents)
    loss_sum, n_tokens = 0.0, 0
    bs = cfg.training.per_device_eval_batch_size
    window = model.config.attention_window
    window = max(window) if isinstance(window, (list, tuple)) else window
    model.eval()
    with torch.no_grad():
        for idx in tqdm(list(_batches(len(order), bs, order)), desc="evaluate", unit="batch", disable=None):
            batch = tok.pad(
                {"input_ids": [enc["input_ids"][i] for i in idx]}, pad_to_multiple_of=window, return_tensors="pt"
            ).to(device)
            gam = model_mod.global_attention_mask(batch["input_ids"])
            lab = tok.pad({"input_ids": [labels[i] for i in idx]}, return_tensors="pt")["input_ids"]
            lab[lab == tok.pad_token_id] = -100
            lab = lab.to(device)
            out = model(**batch, global_attention_mask=gam, labels=lab)
            n = int((lab != -100).sum())
            loss_sum += out.loss.float().item() * n
            n_tokens += n
            gen = model.generate(**batch, global_attention_mask=gam, generation_config=model.generation_config)
            for i, text in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
                preds[i] = text.strip()
    return preds, loss_sum / max(n_tokens, 1)


def evaluate(cfg: RunConfig, run: RunFolder, train_meta: dict | None = None, threads: int | None = None) -> dict:
    """Score `run.checkpoint` on the test split; write predictions.jsonl and summary.json."""
    import torch
    from transformers import set_seed

    set_threads(cfg, threads)
    set_seed(cfg.seed)
    test = data_mod.load_splits(cfg.data, need=("test",))["test"]
    bert = None
    if cfg.evaluation.bertscore_model:  # build first: a missing scorer model fails before generation
        e = cfg.evaluation
        bert = metrics.BertScore(e.bertscore_model, e.bertscore_num_layers, e.bertscore_batch_size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = model_mod.load_pretrained(str(run.checkpoint))
    model.to(device)

    t0 = time.perf_counter()
    preds, loss = generate_and_score_loss(model, tok, test.documents, test.summaries, cfg, device)
    t_gen = time.perf_counter() - t0
    faults.hit("evaluate")
    scores = metrics.rouge(preds, test.summaries, workers=cfg.evaluation.rouge_workers)
    t_rouge = time.perf_counter() - t0 - t_gen
    if bert is not None:
        scores.update(bert(preds, test.summaries))
    else:
        scores.update(bertscore=None, bertscore_precision=None, bertscore_recall=None)
    t_eval = time.perf_counter() - t0
    exact = sum(p == r.strip() for p, r in zip(preds, test.summaries)) / len(preds)

    atomic_write_text(
        run.predictions,
        "".join(
            json.dumps({"index": i, "prediction": p, "reference": r}, ensure_ascii=False) + "\n"
            for i, (p, r) in enumerate(zip(preds, test.summaries))
        ),
    )
    meta = train_meta or run.read_json(run.meta, default={})
    train_seconds = meta.get("train_runtime_seconds") or 0.0
    summary = {
        "run_name": cfg.run_name,
        "status": "completed",
        "metrics": {"loss": loss, **scores, "exact_match": exact},
        "num_test_examples": len(preds),
        "test_split": test.source,
        "train_runtime_seconds": train_seconds,
        "eval_runtime_seconds": round(t_eval, 3),
        "eval_timing_seconds": {
            "generation_and_loss": round(t_gen, 3), "rouge": round(t_rouge, 3),
            "bertscore": round(t_eval - t_gen - t_rouge, 3),
        },
        "runtime_seconds": round(train_seconds + t_eval, 3),
        "end_time": now_iso(),
    }
    run.failure.unlink(missing_ok=True)
    write_json(run.summary, summary)  # last: the run folder is now complete
    m = summary["metrics"]
    log.info(
        "run %s: loss %.4f | rouge1 %.4f | rouge2 %.4f | rougeL %.4f | rougeLsum %.4f | bertscore %s | %s",
        cfg.run_name, m["loss"], m["rouge1"], m["rouge2"], m["rougeL"], m["rougeLsum"],
        "n/a" if m["bertscore"] is None else f"{m['bertscore']:.4f}", run.summary,
    )
    return summary
