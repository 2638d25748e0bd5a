#!/usr/bin/env python
"""Real-sized data: preparing an arXiv-like corpus, against a bare `datasets` map, and the second run.

    .venv/bin/python bench/prepare_bench.py --mb 100 1000 --num-proc 2
    .venv/bin/python bench/prepare_bench.py --dry-run    # a check, not a figure: DRY's 3 MB, in a temporary folder

For each size, a deterministic generator writes an arXiv-like corpus to bench/out/prepare (or --out; never
committed): documents of ~3,000 words (sections of sentences drawn from a 20,000-word Zipf vocabulary,
seeded) with a ~150-word abstract, train/validation/test = 98/1/1 %. A local "pretrained" model folder (a
small LED and an 8,000-token BPE tokenizer trained on 2,000 of the documents) stands in for a hub model, so
that both sides tokenize with the same tokenizer and no side trains one.

Each side runs alone in a fresh process, which reports its wall time and peak RSS (its own, and that of
its largest child: the `num_proc` tokenizer workers), and the peaks of its own anonymous (`RssAnon`) and
file-backed (`RssFile`: pages of memory-mapped Arrow files, reclaimable) resident memory, sampled every
0.1 s:
- bare: `load_dataset("json")` + `Dataset.map(batched=True, num_proc=N)` with `tokenizer(documents,
  max_length=1024, truncation=True)` and the summaries as labels: the issue's reference pattern;
- ledsweep: `ledsweep.prepare.prepare_data` on the same files (all three splits, length statistics,
  manifest with sha256s, save_to_disk).
Then the second run of a sweep: `scripts/train_baseline.py` on the prepared data (1 optimizer step,
logging every step), timed from process start to the first step's log line, beside the time that
loading the model takes in a fresh process (imports included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "prepare"
PY = sys.executable
FULL = {"mb": [100]}
DRY = {"mb": [3]}  # --dry-run: about 125 documents (>= 100: one validation, one test), in a temporary folder


# ----------------------------------------------------------------------------- corpus
def _vocabulary(n: int = 20000) -> list[str]:
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = {"".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(n * 2)}
    return sorted(words)[:n]


def write_corpus(folder: Path, mb: int) -> dict[str, str]:
    """train/validation/test JSONL of about `mb` MB in all (same bytes for the same mb)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {s: folder / f"{s}.jsonl" for s in ("train", "validation", "test")}
    if (folder / "done").exists():
        return {s: str(p) for s, p in files.items()}
    words = _vocabulary()
    cum, total = [], 0.0
    for i in range(len(words)):  # Zipf weights, accumulated once (choices() would redo it per call)
        total += 1 / (i + 1)
        cum.append(total)
    rng = random.Random(mb)
    target = mb * 1_000_000
    written = 0
    handles = {s: open(p, "w") for s, p in files.items()}
    i = 0
    while written < target:
        body = []
        for _ in range(rng.randint(5, 9)):  # sections
            sents = [
                " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(12, 30))).capitalize() + "."
                for _ in range(rng.randint(15, 25))
            ]
            body.append(" ".join(sents))
        doc = "\n\n".join(body)
        abstract = " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(120, 180))) + "."
        line = json.dumps({"article_id": f"bench-{i}", "document": doc, "summary": abstract}) + "\n"
        split = "validation" if i % 100 == 98 else "test" if i % 100 == 99 else "train"
        handles[split].write(line)
        written += len(line)
        i += 1
    for h in handles.values():
        h.close()
    (folder / "done").write_text(f"{i} documents, {written} bytes\n")
    return {s: str(p) for s, p in files.items()}


def make_local_model(folder: Path, train_file: str) -> str:
    """A small LED + an 8,000-token BPE tokenizer saved like a hub model (from_pretrained loads it)."""
    if (folder / "config.json").exists():
        return str(folder)
    sys.path.insert(0, str(REPO / "src"))
    from transformers import LEDConfig, LEDForConditionalGeneration

    from ledsweep.tokenization import train_bpe_tokenizer

    with open(train_file) as f:
        texts = [json.loads(line)["document"] for _, line in zip(range(2000), f)]
    tok = train_bpe_tokenizer([texts], 8000, 1024)
    config = LEDConfig(
        vocab_size=len(tok),
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        attention_window=64,
        max_encoder_position_embeddings=1024,
        max_decoder_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    LEDForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# ----------------------------------------------------------------------------- the two sides
# the start of both sides: the clock, and a sampler of the main process's resident memory
PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import threading
PEAK = {"RssAnon": 0, "RssFile": 0}
def _sample():  # the main process's anonymous vs file-backed (memory-mapped Arrow) resident memory
    while True:
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in PEAK:
                PEAK[key] = max(PEAK[key], int(line.split()[1]) // 1024)
        time.sleep(0.1)
threading.Thread(target=_sample, daemon=True).start()
"""

BARE = (
    PROBE
    + r"""
import datasets
from transformers import AutoTokenizer
files, model, cache, num_proc = json.loads(sys.argv[1])
tok = AutoTokenizer.from_pretrained(model)
def encode(batch):
    enc = tok(batch["document"], max_length=1024, truncation=True)
    enc["labels"] = tok(text_target=batch["summary"], max_length=256, truncation=True)["input_ids"]
    return enc
rows = 0
for split, path in files.items():
    ds = datasets.load_dataset("json", data_files={split: path}, split=split, cache_dir=cache)
    ds = ds.map(encode, batched=True, batch_size=256, num_proc=num_proc, remove_columns=ds.column_names)
    rows += len(ds)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": rows,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "anon_mib": PEAK["RssAnon"], "file_mib": PEAK["RssFile"]}))
"""
)

LEDSWEEP = (
    PROBE
    + r"""
from ledsweep.config import from_dict
from ledsweep.data import data_spec
from ledsweep.prepare import prepare_data
cfg_dict, out, num_proc = json.loads(sys.argv[1])
manifest = prepare_data(data_spec(from_dict(cfg_dict)), out, num_proc)
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": sum(manifest["rows"].values()),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "anon_mib": PEAK["RssAnon"], "file_mib": PEAK["RssFile"],
                  "truncated_share": manifest["token_lengths"]["train"]["source"]["truncated_share"],
                  "source_p50": manifest["token_lengths"]["train"]["source"]["p50"]}))
"""
)

MODEL_LOAD = r"""
import sys, time
t0 = time.perf_counter()
from transformers import AutoModelForSeq2SeqLM
AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1])
print(time.perf_counter() - t0)
"""


def run_side(code: str, arg) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([PY, "-c", code, json.dumps(arg)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_config(files: dict, model: str, out_dir: Path, run_name: str) -> dict:
    return {
        "run_name": run_name,
        "seed": 1,
        "output_dir": str(out_dir),
        "model": {"name": model},
        "data": {
            "train_file": files["train"],
            "validation_file": files["validation"],
            "test_file": files["test"],
            "max_source_length": 1024,
            "max_target_length": 256,
        },
        "training": {"max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1, "save_steps": 1000},
        "generation": {"max_new_tokens": 32},
        "evaluation": {"bertscore_model": None},
    }


def second_run(files: dict, model: str, out_dir: Path) -> dict:
    """train_baseline.py --stage train on already-prepared data: start -> first optimizer step."""
    import yaml

    cfg = out_dir / "second.yaml"
    cfg.write_text(yaml.safe_dump(run_config(files, model, out_dir, "second_run")))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, str(REPO / "scripts/train_baseline.py"), "--config", str(cfg), "--stage", "train", "--overwrite"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    first, reused = None, False
    for line in proc.stderr:
        reused = reused or "reused" in line
        if first is None and "step 1/1 | loss" in line:
            first = time.perf_counter() - t0
    proc.wait()
    if proc.returncode or first is None:
        raise SystemExit(f"second run failed ({proc.returncode})")
    load = float(subprocess.run([PY, "-c", MODEL_LOAD, model], capture_output=True, text=True).stdout.strip())
    return {"to_first_step": first, "model_load": load, "reused": reused}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, nargs="+", help=f"corpus sizes in MB (default {FULL['mb']})")
    p.add_argument("--num-proc", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the corpora in the --out folder")
    p.add_argument(
        "--out",
        type=Path,
        help="folder of the corpora, the local model and the work folders (default bench/out/prepare; "
        "dry run: a temporary one)",
    )
    p.add_argument("--dry-run", action="store_true", help="DRY in this file: a 3 MB corpus: a check that it works")
    args = p.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="prepare_bench_dry_") if args.dry_run and not args.out else None
    out = args.out or (Path(scratch.name) if scratch else OUT)  # a scratch folder is removed at exit
    results = []
    for mb in args.mb or (DRY if args.dry_run else FULL)["mb"]:
        corpus = out / f"corpus-{mb}mb"
        t = time.perf_counter()
        files = write_corpus(corpus, mb)
        print(
            f"[{mb} MB] corpus: {(corpus / 'done').read_text().strip()} ({time.perf_counter() - t:.0f} s)", flush=True
        )
        model = make_local_model(out / "led_local", files["train"])
        work = out / f"work-{mb}mb"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        bare = run_side(BARE, [files, model, str(work / "hf-cache"), args.num_proc])
        shutil.rmtree(work / "hf-cache", ignore_errors=True)
        print(f"[{mb} MB] bare map: {bare}", flush=True)
        from_cfg = run_config(files, model, work, "bench")
        ours = run_side(LEDSWEEP, [from_cfg, str(work / "prepared" / "x"), args.num_proc])
        print(f"[{mb} MB] ledsweep prepare_data: {ours}", flush=True)
        # the second run of a sweep: the cache the CLI uses (<output_dir>/prepared/<key>)
        sys.path.insert(0, str(REPO / "src"))
        from ledsweep.config import from_dict
        from ledsweep.data import data_key, data_spec

        key = data_key(data_spec(from_dict(from_cfg)))
        os.replace(work / "prepared" / "x", work / "prepared" / key)
        second = second_run(files, model, work)
        print(f"[{mb} MB] second run: {second}", flush=True)
        results.append(
            {
                "mb": mb,
                "bare": bare,
                "ledsweep": ours,
                "second": second,
                "time_ratio": ours["seconds"] / bare["seconds"],
                "rss_ratio": max(ours["rss_mib"], ours["child_rss_mib"]) / max(bare["rss_mib"], bare["child_rss_mib"]),
            }
        )
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(corpus, ignore_errors=True)
    print(
        "\n| corpus | docs | bare s | ledsweep s | ratio | bare peak MiB (main/child) | ledsweep peak MiB "
        "(main/child) | second run: start to step 1 s | model load s |"
    )
    for r in results:
        b, o, s = r["bare"], r["ledsweep"], r["second"]
        print(
            f"| {r['mb']} MB | {o['rows']:,} | {b['seconds']:.1f} | {o['seconds']:.1f} | {r['time_ratio']:.2f} | "
            f"{b['rss_mib']:.0f} / {b['child_rss_mib']:.0f} | {o['rss_mib']:.0f} / {o['child_rss_mib']:.0f} | "
            f"{s['to_first_step']:.1f} | {s['model_load']:.1f} |"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    sys.exit(main())
