#!/usr/bin/env python
"""led-base-16384's shape on CPU: seconds per training step, tokens/s and peak memory at 4k-16k input tokens, the
time and memory of generating from one 16k-token document, and an estimate of each peak from the shape.

    python bench/cpu_led_shape.py [--out bench/out/cpu_led_shape.json] [--threads N] [--mem-limit-gib G] [--dry-run]

--dry-run: tiny sizes (DRY below), seconds per case: a check that every path works, not a figure; its JSON goes
to a temporary folder unless --out is given.

What runs is what a run of config/examples/led_base_shape.yaml runs, through the project's code: the long
corpus of `scripts/make_demo_data.py --long-words` (made in a temporary folder), prepared by
`ledsweep.prepare.ensure_prepared` (the BPE tokenizer trained to the config's 50,265 entries, every document
tokenized and cut at 16,384), the model of `ledsweep.model.new_model` (model.name scratch: d_model 768, 6+6
layers, 12 heads, FFN 3,072, window 1,024, seeded), batches of `ledsweep.train.collator` (LED's global
attention on <s>, the source padded to the window).

Cases, each in a fresh child process of this script:
  train     input lengths 4,096 / 8,192 / 16,384 tokens (the first training document, cut there and ended by
            </s>, as truncation does) x gradient checkpointing off / on x fp32 / bf16 autocast (what the
            Trainer's bf16 does: fp32 weights and AdamW state); batch 1, 256 target tokens; 2 optimizer steps
            (forward, backward, clipping at the config's max_grad_norm, fused AdamW as optim
            adamw_torch_fused). Step 1 allocates the AdamW state and touches every page for the first time;
            s/step and tokens/s are step 2's. tokens/s = (input + target tokens) / s.
  generate  the first test document at 16,384 tokens, 4 beams, exactly 256 new tokens (min_new_tokens: random
            weights would emit </s> anywhere), no_repeat_ngram_size 3, fp32, as evaluation generates.

Memory: the peak RSS of each child is ru_maxrss from os.wait4, so a child that dies still has one. Each child
caps its data segment (RLIMIT_DATA) at --mem-limit-gib (default: MemAvailable at the start - 1 GiB): a case
that does not fit fails an allocation and is recorded as `out of memory`, and the machine never reaches the
kernel's OOM killer. Should it anyway, the child's oom_score_adj is 1000, so the case is what gets killed
(recorded as `killed by signal 9`), not another process.

The estimate next to each peak (bytes; P parameters, S input tokens, T target tokens, d = d_model, H heads,
W window, F FFN size, Le / Ld layers, V vocabulary, b = bytes of a matmul output: 4 in fp32, 2 under bf16
autocast):
  runtime     R0, the child's RSS after imports and reading the data (measured: Python, torch, transformers;
              transformers imports the LED code with the model, ~0.1 GiB more: the second table shows the
              RSS after the model was built)
  weights     16 P: fp32 weights 4P + gradients 4P + AdamW exp_avg and exp_avg_sq 8P (+ 2P under bf16:
              the bf16 copies of the weights that autocast makes and the backward keeps)
  activations saved for the backward (no checkpointing):
                Le x [S (14 d + 2 F) b + 2 S d          dense: the layer input, q and k in overlapping
                                                         chunks (2 S d each), v in chunks of 3 windows (3 S d),
                                                         key_global / value_global (run on all S tokens),
                                                         attention output, layer-norm inputs, FFN in, GELU
                                                         in and out (2 S F), two dropout masks (1 byte each)
                      + S H W (4 + 1.5 b)]              attention: the fp32 softmax over W+2 keys, and the
                                                         probabilities re-chunked for the AV product (1.5 W)
              + Ld x [2 S d b + H T S b + T (20 d + 2 F) b]   cross-attention K and V of the S encoder outputs,
                                                         its T x S probabilities, the decoder's own tensors
              + 2 S d 4 + 2 T V 4                        embeddings; logits and their log-softmax
              with checkpointing: (Le S d + Ld T d) 4 (each layer's input) + the larger of one encoder and
              one decoder layer's activations (recomputed in the backward) + embeddings and logits
  transient   4 S H W b: inside one layer, HF's sliding-chunks product (2w x 2w blocks for w-token chunks:
              twice the W band) and its padded copy are alive together
  generate    R0 + 4P + Ld 2 beams S d 4 (the cross-attention K/V cache) + beams S d 4 (the encoder output per
              beam) + 4 S H W 4 (the encoder's transient)
glibc keeps freed blocks (RSS does not fall when tensors are freed), and the estimate leaves out small terms
(biases, masks of S elements, Python objects), so the measured peak is expected somewhat above it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SHAPE = REPO / "config/examples/led_base_shape.yaml"
GIB = 2**30
FULL = {
    "model": {},  # the config's sizes: led-base-16384's
    "corpus": ["--long-words", "16000", "--sizes", "64,1,1"],  # 64 documents: the tokenizer reaches 50,265
    "lengths": [4096, 8192, 16384],
    "target": 256,
    "steps": 2,
    "generate": {"length": 16384, "beams": 4, "new_tokens": 256},
    "case_timeout_s": 3600,
}
DRY = {
    "model": {
        "d_model": 64,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "attention_heads": 4,
        "ffn_dim": 128,
        "attention_window": 32,
        "max_encoder_position_embeddings": 256,
        "max_decoder_position_embeddings": 64,
        "vocab_size": 1000,
    },
    "corpus": ["--long-words", "300", "--sizes", "8,1,1"],
    "lengths": [256],
    "target": 32,
    "steps": 2,
    "generate": {"length": 256, "beams": 2, "new_tokens": 16},
    "case_timeout_s": 300,
    "probe": True,  # one more training case under a cap it cannot fit: the out-of-memory path is tested
    "combos": [(False, "fp32"), (True, "bf16")],  # each checkpointing and precision path once, in two cases
}


# ----------------------------------------------------------------------------- child: one case
def rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def vmdata_bytes() -> int:
    return int(re.search(r"VmData:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def cap_memory(limit: int | None) -> None:
    """The child's data segment capped (see the docstring): an allocation beyond it fails."""
    if limit:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def child(spec: dict) -> dict:
    """One case, in this (fresh) process: what the parent prints and records."""
    try:  # raising one's own OOM score needs no privilege
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass
    import datasets

    from ledsweep.config import load_config

    datasets.disable_progress_bars()
    cfg = load_config(spec["config"])
    return prepare_case(cfg, spec) if spec["kind"] == "prepare" else model_case(cfg, spec)


def prepare_case(cfg, spec: dict) -> dict:
    """The data every other case reads, prepared as train_baseline.py prepares it (the tokenizer trained here)."""
    from ledsweep.data import load_tokenizer
    from ledsweep.prepare import ensure_prepared

    t = time.perf_counter()
    path, manifest = ensure_prepared(cfg, spec["root"], num_proc=1)
    lengths = manifest["token_lengths"]
    return {
        "prepared": str(path),
        "seconds": round(time.perf_counter() - t, 1),
        "vocab": len(load_tokenizer(path)),
        "source_p50": {s: lengths[s]["source"]["p50"] for s in lengths},
        "target_p50": {s: lengths[s]["target"]["p50"] for s in lengths},
    }


def model_case(cfg, spec: dict) -> dict:
    """A training case (train_steps) or the generation case, under the memory cap."""
    import torch
    import transformers
    from transformers import set_seed

    from ledsweep import model as model_mod
    from ledsweep.data import load_prepared, load_tokenizer
    from ledsweep.train import collator

    threads = model_mod.set_threads(cfg, spec.get("threads"))
    # start torch's OpenMP threads before the cap: a thread libgomp cannot start under it ends the process
    torch.ones(1024, 1024) @ torch.ones(1024, 1024)
    tok = load_tokenizer(Path(spec["prepared"]))
    row = load_prepared(Path(spec["prepared"]), "train" if spec["kind"] == "train" else "test")[0]
    L = spec["length"]
    if len(row["input_ids"]) < L:
        raise SystemExit(f"the document has {len(row['input_ids'])} tokens, fewer than {L}")
    feature = {"input_ids": row["input_ids"][: L - 1] + [tok.eos_token_id]}  # cut at L, as truncation does
    out = {"threads": threads, "torch": torch.__version__, "transformers": transformers.__version__}
    out["runtime_rss"] = rss_bytes()
    try:
        cap_memory(None if spec.get("probe") else spec["mem_limit"])
        set_seed(cfg.seed)
        model = model_mod.new_model(cfg, tok)
        model_mod.configure_generation(model, cfg)
        out.update(params=sum(p.numel() for p in model.parameters()), model_rss=rss_bytes())
        if spec.get("probe"):  # the dry run's check of this path: 1 MiB more than the built model holds
            cap_memory(vmdata_bytes() + 2**20)
        if spec["kind"] == "train":
            feature["labels"] = row["labels"][: spec["target"]]
            out.update(train_steps(model, collator(tok, model)([feature]), cfg, spec))
        else:
            model.eval()
            batch = collator(tok, model)([feature])
            t = time.perf_counter()
            with torch.no_grad():
                gen = model.generate(**batch, min_new_tokens=spec["new_tokens"])  # the configured decoding otherwise
            out.update(seconds=round(time.perf_counter() - t, 2), new_tokens=gen.shape[1] - 1)  # less the start token
    except (RuntimeError, MemoryError) as e:
        if not isinstance(e, MemoryError) and "can't allocate memory" not in str(e):
            raise
        return {**out, "status": "out of memory", "error": (str(e) or type(e).__name__).splitlines()[0][:300]}
    return {**out, "status": "ok"}


def train_steps(model, batch: dict, cfg, spec: dict) -> dict:
    """Optimizer steps as the Trainer takes them (its bf16 is this autocast over fp32 weights)."""
    import torch

    t = cfg.training
    if spec["checkpointing"]:
        model.config.use_cache = False
        model.activation_checkpointing_enable()
    model.train()
    opt = torch.optim.AdamW(
        model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay, fused=t.optim == "adamw_torch_fused"
    )
    seconds, losses = [], []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec["precision"] == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        seconds.append(round(time.perf_counter() - start, 2))
        losses.append(round(loss.item(), 4))
    tokens = batch["input_ids"].shape[1] + batch["labels"].shape[1]
    return {"step_seconds": seconds, "losses": losses, "tokens": tokens, "tokens_per_s": round(tokens / seconds[-1], 1)}


# ----------------------------------------------------------------------------- parent
def spawn(spec: dict, work: Path, timeout: float) -> dict:
    """One case in a fresh process: its result, and its peak RSS from wait4 (also when it died)."""
    result = work / f"case_{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "--_case", json.dumps({**spec, "result": str(result)})]
    with open(work / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        deadline, status, timed_out = time.monotonic() + timeout, None, False
        while status is None:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = wait_status
            elif time.monotonic() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                timed_out = True
            else:
                time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 here: Popen must not wait again
    out = json.loads(result.read_text()) if result.is_file() else {}
    out["peak_rss"] = usage.ru_maxrss * 1024
    if not result.is_file():
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        why = "timed out" if timed_out else f"killed by signal {sig}" if sig else "failed"
        out.update(status=f"{why} (exit {proc.returncode})", stderr_tail=(work / "stderr.txt").read_text()[-2000:])
    return out


def estimate(m: dict, S: int, T: int, V: int, P: int, r0: int, ckpt: bool, prec: str) -> dict:
    """The docstring's estimate of a training step's peak, by term (bytes)."""
    d, H, W, F = m["d_model"], m["attention_heads"], m["attention_window"], m["ffn_dim"]
    Le, Ld, b = m["encoder_layers"], m["decoder_layers"], 2 if prec == "bf16" else 4
    enc = S * (14 * d + 2 * F) * b + 2 * S * d + S * H * W * (4 + 1.5 * b)
    dec = 2 * S * d * b + H * T * S * b + T * (20 * d + 2 * F) * b
    ends = 2 * S * d * 4 + 2 * T * V * 4
    acts = (Le * S * d + Ld * T * d) * 4 + max(enc, dec) + ends if ckpt else Le * enc + Ld * dec + ends
    terms = {"runtime": r0, "weights": 16 * P + (2 * P if prec == "bf16" else 0), "activations": acts}
    return {**terms, "transient": 4 * S * H * W * b}


def estimate_generate(m: dict, S: int, beams: int, P: int, r0: int) -> dict:
    """The docstring's estimate of the generation case's peak, by term (bytes)."""
    d, H, W = m["d_model"], m["attention_heads"], m["attention_window"]
    kv = m["decoder_layers"] * 2 * beams * S * d * 4 + beams * S * d * 4
    return {"runtime": r0, "weights": 4 * P, "activations": kv, "transient": 4 * S * H * W * 4}


def gib(x) -> str:
    return f"{x / GIB:.2f}" if x else "n/a"


def mem_available() -> int:
    return int(re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)) * 1024


def bench_config(s: dict, corpus: Path, work: Path) -> Path:
    """config/examples/led_base_shape.yaml on the corpus made here (dry run: DRY's tiny sizes)."""
    import yaml

    cfg = yaml.safe_load(SHAPE.read_text())
    cfg["model"].update(s["model"])
    cfg["data"].update({f"{split}_file": str(corpus / f"{split}.jsonl") for split in ("train", "validation", "test")})
    cfg["data"]["max_source_length"] = max(*s["lengths"], s["generate"]["length"])
    cfg["data"]["max_target_length"] = s["target"]
    cfg["generation"].update(num_beams=s["generate"]["beams"], max_new_tokens=s["generate"]["new_tokens"])
    path = work / "shape.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="JSON results (default bench/out/cpu_led_shape.json; dry run: a temporary folder)")
    p.add_argument("--threads", type=int, help="torch threads per case (default: every CPU of this process)")
    p.add_argument("--mem-limit-gib", type=float, help="cap of each case's memory (default: MemAvailable - 1 GiB)")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (DRY in this file): a check, not a figure")
    p.add_argument("--_case", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._case:
        spec = json.loads(args._case)
        Path(spec["result"]).write_text(json.dumps(child(spec)))
        return 0

    s = DRY if args.dry_run else FULL
    limit = int(args.mem_limit_gib * GIB) if args.mem_limit_gib else mem_available() - GIB
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="cpu_led_shape_") as tmp:
        work = Path(tmp)
        cmd = [sys.executable, str(REPO / "scripts/make_demo_data.py"), *s["corpus"], "--out", str(work / "corpus")]
        subprocess.run(cmd, check=True, capture_output=True)
        config = bench_config(s, work / "corpus", work)
        base = {"config": str(config), "threads": args.threads, "mem_limit": limit}
        prep = spawn({**base, "kind": "prepare", "root": str(work / "prepared")}, work, s["case_timeout_s"])
        if prep.get("status"):
            print(f"preparing the data failed: {prep['status']}\n{prep.get('stderr_tail', '')}", file=sys.stderr)
            return 1
        import yaml

        m = yaml.safe_load(config.read_text())["model"]
        print(
            f"# led-base-16384's shape on CPU ({cpu_name()}, {os.cpu_count()} CPUs, {gib(mem_available())} GiB free, "
            f"cap per case {gib(limit)} GiB): d_model {m['d_model']}, {m['encoder_layers']}+{m['decoder_layers']} "
            f"layers, {m['attention_heads']} heads, FFN {m['ffn_dim']}, window {m['attention_window']}, tokenizer "
            f"{prep['vocab']:,} entries (asked: {m['vocab_size']:,}), prepared in {prep['seconds']} s "
            f"(peak {gib(prep['peak_rss'])} GiB); source tokens p50 {prep['source_p50']}\n"
        )
        cases = run_cases(s, {**base, "prepared": prep["prepared"]}, m, prep["vocab"], work)

    print("\nThe estimates by term, GiB (docstring), and what each case held after building the model:\n")
    print("| case | input tokens | checkpointing | precision | runtime | weights | activations | transient "
          "| after model build | peak RSS |")  # fmt: skip
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        terms = [gib(v) for v in c["estimate"].values()] if c.get("estimate") else ["n/a"] * 4
        ckpt = "n/a" if "checkpointing" not in c else "on" if c["checkpointing"] else "off"
        head = [c["kind"], f"{c['length']:,}", ckpt, c.get("precision", "fp32")]
        print("| " + " | ".join([*head, *terms, gib(c.get("model_rss")), gib(c["peak_rss"])]) + " |")
    result = {"dry_run": args.dry_run, "cpu": cpu_name(), "cpus": os.cpu_count(), "mem_limit": limit}
    result.update(prepare=prep, cases=cases, wall_seconds=round(time.time() - t0, 1))
    if args.out:
        out = Path(args.out)
    else:  # a dry run never lands on the figures of a real one
        out = (
            Path(tempfile.mkdtemp(prefix="cpu_led_dry_")) if args.dry_run else REPO / "bench/out"
        ) / "cpu_led_shape.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out} ({result['wall_seconds']} s)")
    return 0


def run_cases(s: dict, base: dict, m: dict, vocab: int, work: Path) -> list[dict]:
    """Every training case, then the generation case, one child each, with a row printed as each ends."""
    print("| case | input tokens | checkpointing | precision | step 1 s | s/step | tokens/s | peak RSS GiB "
          "| estimate GiB | peak / estimate | status |")  # fmt: skip
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|")
    combos = s.get("combos") or [(ck, pr) for ck in (False, True) for pr in ("fp32", "bf16")]
    train = [(L, ck, pr, False) for L in s["lengths"] for ck, pr in combos]
    probe = [(s["lengths"][-1], False, "fp32", True)] if s.get("probe") else []
    cases = []
    for L, ck, pr, is_probe in train + probe:
        spec = {**base, "kind": "train", "length": L, "target": s["target"], "steps": s["steps"]}
        c = spawn({**spec, "checkpointing": ck, "precision": pr, "probe": is_probe}, work, s["case_timeout_s"])
        c.update(kind="train", length=L, checkpointing=ck, precision=pr, probe=is_probe)
        if c.get("params"):
            c["estimate"] = estimate(m, L, s["target"], vocab, c["params"], c["runtime_rss"], ck, pr)
        cases.append(c)
        row(c, "train (probe: capped)" if is_probe else "train", ck, pr)
    g = s["generate"]
    spec = {**base, "kind": "generate", "length": g["length"], "new_tokens": g["new_tokens"]}
    c = {**spawn(spec, work, s["case_timeout_s"]), "kind": "generate", "length": g["length"], "beams": g["beams"]}
    if c.get("params"):
        c["estimate"] = estimate_generate(m, g["length"], g["beams"], c["params"], c["runtime_rss"])
    cases.append(c)
    row(c, f"generate {g['beams']} beams, {g['new_tokens']} new tokens", None, "fp32")
    return cases


def cpu_name() -> str | None:
    found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1).strip() if found else None


def row(c: dict, name: str, ckpt, prec: str) -> None:
    est = sum(c["estimate"].values()) if c.get("estimate") else None
    steps = c.get("step_seconds") or []
    cells = [
        name,
        f"{c['length']:,}",
        "n/a" if ckpt is None else "on" if ckpt else "off",
        prec,
        f"{steps[0]}" if steps else "n/a",
        f"{steps[-1]}" if steps else f"{c['seconds']} (all)" if c.get("seconds") else "n/a",
        f"{c['tokens_per_s']:,.0f}" if c.get("tokens_per_s") else "n/a",
        gib(c["peak_rss"]),
        gib(est),
        f"{c['peak_rss'] / est:.2f}" if est else "n/a",
        c.get("status", "n/a"),
    ]
    print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
