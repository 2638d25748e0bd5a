#!/usr/bin/env python
"""LED on one GPU: a bf16 smoke run of the demo config, then led-base-size training throughput.

    python bench/gpu_led.py [--out bench/out/gpu_results.json] [--dry-run] [--tf32] [--peak-tflops BF16 FP32]

One command, at most 8 minutes (--deadline-s 470): steps 1 and 2 below, and step 3 by itself where the machine
has more than one GPU (--no-scaling to leave it out, --scaling to run it on one GPU too).

--dry-run: tiny sizes (DRY below) on the CPU, a check that every step works, not a figure; its JSON goes to a
temporary folder unless --out is given.

1. Smoke: config/led_baseline.yaml (200 steps, `training.precision: auto`) through
   scripts/train_baseline.py (which first prepares the data, into the temporary output
   folder's prepared/); checks summary.json, meta.json device_type cuda / precision bf16
   and that the training loss fell.
2. A from-scratch LED of led-base size (random init, no hub; the sizes of config/examples/led_base_shape.yaml,
   read from it: d_model 768, 6+6 layers, 12 heads, FFN 3,072, window 1,024, 16,384 encoder positions, vocab
   50,265): fp32 vs bf16 x activation checkpointing off/on x input length 4k and 16k, then 8k
   (cases that would start after --budget-s are skipped, so 4k and 16k come first), batch 1, 256
   target tokens. A few warm-up steps, then timed steps (forward + backward + fused AdamW): tokens/s (input + target), peak
   memory (allocated and reserved), model FLOPs utilisation. An OOM is recorded, not fatal.
bf16 = torch.autocast(bfloat16) over fp32 weights (fp32 master weights and optimizer state),
which is what the Trainer's bf16=True does. fp32 = PyTorch's default matmul precision
("highest": no TF32) unless --tf32, which is also the Trainer's default.

Model FLOPs per step (useful work; recomputation by checkpointing is not counted), with S
input tokens, T target tokens, W = attention_window (each token attends to W+1 keys: W/2
either side), d = d_model, V = vocab, Le/Ld = encoder/decoder layers:
  dense  6 x (N_enc*S + (N_dec - N_xkv)*T + N_xkv*S + d*V*T)
         2 FLOPs per multiply-add and parameter in the forward pass, 4 in the backward.
         N_enc/N_dec = weights of the encoder/decoder layers (embedding look-ups are free;
         LED's query_global projection, run on the one global token only, is left out);
         N_xkv = the decoder's cross-attention K/V projections, which run on the S encoder
         outputs; d*V*T = the tied LM head.
  attn   12 x d x (Le*S*W + Ld*T*(T + S))
         sliding-window attention: per token and layer QK^T and AV are each 2*d*W FLOPs
         forward, x3 for forward + backward = 12*d*W; the decoder's self-attention over T
         (counted as non-causal, PaLM's convention) and cross-attention over S likewise.
         HF's sliding-chunks kernel computes ~1.75-2x the W band (overlapping chunks), and the
         global token adds ~2*S keys per layer; neither is counted. On a small LED the formula
         is within 3% of torch.utils.flop_counter's count (which includes that overhead).
MFU = model FLOPs / step time / the GPU's dense peak for the dtype (table below; fp32 uses
the TF32 peak under --tf32).
3. Scaling (on a machine with several GPUs; `--only-scaling` alone): the led-base-size LED trained with DDP (bf16 +
   activation checkpointing, batch 1 per GPU, --scaling-length input tokens) on 1 GPU and on
   all the GPUs of the machine, each launched as the workflow does
   (`python -m torch.distributed.run --standalone --nproc-per-node=N bench/gpu_led.py --ddp-worker ...`):
   tokens/s (all ranks), the speed-up and the scaling efficiency = tokens/s(N) / (N x tokens/s(1)).
   With --dry-run: tiny sizes, 2 CPU processes (gloo). Each launch gets an equal share of the time left
   before --deadline-s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[var] = "1"  # no network, here or in the smoke run

# dense peak TFLOP/s (no sparsity) by a substring of torch.cuda.get_device_name(); first match wins
PEAKS = [
    ("H200 NVL", {"bf16": 835, "tf32": 418, "fp32": 60}),
    ("H200", {"bf16": 989, "tf32": 495, "fp32": 67}),
    ("H100 PCIe", {"bf16": 756, "tf32": 378, "fp32": 51}),
    ("H100 NVL", {"bf16": 835, "tf32": 418, "fp32": 60}),
    ("H100", {"bf16": 989, "tf32": 495, "fp32": 67}),  # SXM
    ("A100", {"bf16": 312, "tf32": 156, "fp32": 19.5}),
]
SHAPE = yaml.safe_load((REPO / "config/examples/led_base_shape.yaml").read_text())["model"]  # led-base-16384's
assert SHAPE["encoder_layers"] == SHAPE["decoder_layers"], "this benchmark builds as many decoder as encoder layers"
FULL = {
    "d_model": SHAPE["d_model"],
    "layers": SHAPE["encoder_layers"],
    "heads": SHAPE["attention_heads"],
    "ffn": SHAPE["ffn_dim"],
    "window": SHAPE["attention_window"],
    "max_enc": SHAPE["max_encoder_position_embeddings"],
    "max_dec": SHAPE["max_decoder_position_embeddings"],
    "vocab": SHAPE["vocab_size"],
    "lengths": [4096, 16384, 8192],  # in this order: the time budget skips the last first
    "target": 256,
    "warmup": 2,
    "steps": 5,
    "smoke_steps": 200,
}
DRY = {
    "d_model": 64,
    "layers": 1,
    "heads": 4,
    "ffn": 128,
    "window": 32,
    "max_enc": 256,
    "max_dec": 64,
    "vocab": 1000,
    "lengths": [128, 256],
    "target": 32,
    "warmup": 1,
    "steps": 1,
    "smoke_steps": 5,
}
GOAL_SPEEDUP, GOAL_CKPT_COST, GOAL_MEM_BYTES = 1.5, 0.25, 40e9
T0 = time.time()


def smoke(args, dry: bool, tmp: Path) -> dict:
    from ledsweep.config import dump_yaml, load_yaml

    cfg = load_yaml(REPO / "config/led_baseline.yaml")
    assert cfg["training"]["precision"] == "auto"
    n = (DRY if dry else FULL)["smoke_steps"]
    cfg["run_name"] = "gpu_smoke"
    cfg["training"].update(max_steps=n, eval_steps=n, save_steps=n, logging_steps=1 if dry else 50)
    if dry:  # a few steps that must still lower the loss; fewer validation and test examples
        cfg["training"]["warmup_steps"] = 0
        cfg["data"]["max_eval_samples"] = 16  # validation (eval loss)
        cfg["data"]["max_predict_samples"] = 16  # test (summary.json); max_eval_samples no longer limits it
    (tmp / "smoke.yaml").write_text(dump_yaml(cfg))
    cmd = [
        sys.executable,
        "scripts/train_baseline.py",
        "--config",
        str(tmp / "smoke.yaml"),
        "--output-dir",
        str(tmp),
        "--overwrite",
    ] + (["--threads", "1"] if dry else [])
    t = time.time()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.smoke_timeout_s, check=False)
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-2000:]
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", f"killed after {args.smoke_timeout_s} s"
    run = tmp / "gpu_smoke"
    read = lambda name: json.loads((run / name).read_text()) if (run / name).is_file() else {}
    summary, meta = read("summary.json"), read("meta.json")
    hist = (
        [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()]
        if (run / "log_history.jsonl").is_file()
        else []
    )
    losses = [h["loss"] for h in hist if "loss" in h]
    want_dev, want_prec = ("cpu", "fp32") if dry else ("cuda", "bf16")
    checks = {
        "exit code 0": rc == 0,
        "summary.json completed": summary.get("status") == "completed",
        f"meta.json device_type {want_dev}": meta.get("device_type") == want_dev,
        f"meta.json precision {want_prec}": meta.get("precision") == want_prec,
        "train loss finite and falling": len(losses) >= 2
        and all(map(math.isfinite, losses))
        and losses[-1] < losses[0],
    }
    ok = all(checks.values())
    print(
        f"\n## Smoke: demo config, {n} steps, precision auto -> {meta.get('precision')} on {meta.get('device')} "
        f"({time.time() - t:.0f} s)"
    )
    for name, passed in checks.items():
        print(f"- [{'x' if passed else ' '}] {name}")
    print("- metrics:", json.dumps({k: round(v, 4) for k, v in summary.get("metrics", {}).items()}))
    if losses:
        print(f"- train loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    if not ok:
        print(tail)
    return {
        "ok": ok,
        "checks": checks,
        "steps": n,
        "seconds": round(time.time() - t, 1),
        "device": meta.get("device"),
        "precision": meta.get("precision"),
        "metrics": summary.get("metrics"),
        "train_losses": losses,
        "log_tail": None if ok else tail,
    }


def led_config(s: dict):
    """The benchmark's LED, sized by `s` (SIZES[...])."""
    from transformers import LEDConfig

    return LEDConfig(
        vocab_size=s["vocab"],
        d_model=s["d_model"],
        encoder_layers=s["layers"],
        decoder_layers=s["layers"],
        encoder_attention_heads=s["heads"],
        decoder_attention_heads=s["heads"],
        encoder_ffn_dim=s["ffn"],
        decoder_ffn_dim=s["ffn"],
        attention_window=s["window"],
        max_encoder_position_embeddings=s["max_enc"],
        max_decoder_position_embeddings=s["max_dec"],
        use_cache=False,
    )


def model_flops(counts: dict, s: dict, S: int) -> float:
    d, W, T, V, L = s["d_model"], s["window"], s["target"], s["vocab"], s["layers"]
    S = math.ceil(S / W) * W  # LED pads the input to a multiple of the window
    dense = 6 * (counts["enc"] * S + (counts["dec"] - counts["xkv"]) * T + counts["xkv"] * S + d * V * T)
    attn = 12 * d * (L * S * W + L * T * (T + S))
    return dense + attn


def run_case(model, s, dev, prec, ckpt, L, peak, counts, args):
    import torch

    from ledsweep.model import global_attention_mask

    case = {"precision": prec, "checkpointing": ckpt, "length": L, "status": "ok"}
    if time.time() - T0 > args.budget_s - args.case_s:
        return {**case, "status": "SKIPPED (time budget)"}
    model.activation_checkpointing_enable() if ckpt else model.activation_checkpointing_disable()
    ids = torch.randint(3, s["vocab"], (1, L), device=dev)
    ids[:, 0] = model.config.bos_token_id
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "global_attention_mask": global_attention_mask(ids),
        "labels": torch.randint(3, s["vocab"], (1, s["target"]), device=dev),
    }
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=dev == "cuda")
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=prec == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    start, oom = time.time(), False
    try:
        for _ in range(s["warmup"]):
            step()
        sync()
        t, n = time.time(), 0
        while n < s["steps"] and (n == 0 or time.time() - start < args.case_s):
            loss = step()
            n += 1
        sync()
        dt = (time.time() - t) / n
    except torch.OutOfMemoryError:
        oom = True  # handled below, outside the except block, so the failed step's tensors can be freed
    opt.zero_grad(set_to_none=True)
    if oom:  # the next case empties the CUDA cache once this one's optimizer state is gone
        return {**case, "status": "OOM"}
    flops = model_flops(counts, s, L)
    case.update(
        timed_steps=n,
        ms_per_step=round(dt * 1e3, 2),
        tokens_per_s=round((L + s["target"]) / dt, 1),
        loss=round(loss.item(), 4),
        model_tflops_per_step=flops / 1e12,
        achieved_tflops=round(flops / dt / 1e12, 4),
        mfu=round(flops / dt / 1e12 / peak, 4) if peak else None,
    )
    if dev == "cuda":
        case.update(
            peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
            peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2),
        )
    return case


def ddp_worker(args) -> int:
    """One rank of the scaling benchmark (started by torchrun): DDP training steps; rank 0 writes the
    timing (the slowest rank's mean step time) to --ddp-out."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from transformers import LEDForConditionalGeneration

    from ledsweep.model import global_attention_mask

    s = DRY if args.dry_run else FULL
    cuda = torch.cuda.is_available() and not args.dry_run
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    world, rank = dist.get_world_size(), dist.get_rank()
    dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)
    torch.manual_seed(0)
    config = led_config(s)
    model = LEDForConditionalGeneration(config).to(dev).train()
    model.activation_checkpointing_enable()
    ddp = DDP(model, device_ids=[local] if cuda else None)
    L = min(args.scaling_length, s["max_enc"])
    torch.manual_seed(1 + rank)  # each rank its own batch, as DDP's sampler gives
    ids = torch.randint(3, s["vocab"], (1, L), device=dev)
    ids[:, 0] = config.bos_token_id
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "global_attention_mask": global_attention_mask(ids),
        "labels": torch.randint(3, s["vocab"], (1, s["target"]), device=dev),
    }
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-5, fused=cuda)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = ddp(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(s["warmup"]):
        step()
    sync()
    dist.barrier()
    t = time.time()
    for _ in range(s["steps"]):
        step()
    sync()
    dt = torch.tensor([(time.time() - t) / s["steps"]], dtype=torch.float64, device=dev)
    dist.all_reduce(dt, op=dist.ReduceOp.MAX)
    if rank == 0:
        tokens = world * (L + s["target"])
        Path(args.ddp_out).write_text(
            json.dumps(
                {
                    "world_size": world,
                    "device": "cuda" if cuda else "cpu",
                    "length": L,
                    "ms_per_step": round(dt.item() * 1e3, 2),
                    "tokens_per_s": round(tokens / dt.item(), 1),
                }
            )
        )
    dist.destroy_process_group()
    return 0


def scaling(args) -> dict:
    """Step 3: 1 GPU vs all GPUs (dry run: 1 vs 2 CPU processes), each a torchrun launch of ddp_worker."""
    import torch

    n = 2 if args.dry_run else torch.cuda.device_count()
    out = {"gpus": n, "runs": [], "speedup": None, "efficiency": None}
    print(f"\n## Scaling: DDP on 1 vs {n} {'CPU processes' if args.dry_run else 'GPUs'}\n")
    print("| processes | ms/step | tokens/s (all ranks) |\n|---:|---:|---:|")
    launches = sorted({1, n})
    for i, procs in enumerate(launches):
        timeout = min(args.scaling_timeout_s, (args.deadline_s - (time.time() - T0)) / (len(launches) - i))
        if timeout < 30:
            out["runs"].append({"processes": procs, "status": "SKIPPED (deadline)"})
            print(f"| {procs} | SKIPPED (deadline) | |")
            continue
        with tempfile.TemporaryDirectory(prefix="gpu_led_ddp_") as tmp:
            res = Path(tmp) / "result.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
            cmd += [str(Path(__file__).resolve()), "--ddp-worker", "--ddp-out", str(res)]
            cmd += ["--scaling-length", str(args.scaling_length)] + (["--dry-run"] if args.dry_run else [])
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                err, rc = proc.communicate(timeout=timeout)[1], proc.returncode
            except subprocess.TimeoutExpired:  # SIGTERM: torchrun then stops its workers (SIGKILL would orphan them)
                proc.terminate()
                err, rc = proc.communicate()[1], "timeout"
            if rc != 0 or not res.is_file():
                out["runs"].append({"processes": procs, "status": f"FAILED ({rc})", "stderr_tail": err[-2000:]})
                print(f"| {procs} | FAILED ({rc}) | |")
                continue
            run = {"processes": procs, "status": "ok", **json.loads(res.read_text())}
        out["runs"].append(run)
        print(f"| {procs} | {run['ms_per_step']} | {run['tokens_per_s']:.0f} |", flush=True)
    ok = {r["processes"]: r for r in out["runs"] if r["status"] == "ok"}
    if 1 in ok and n in ok and n > 1:
        out["speedup"] = round(ok[n]["tokens_per_s"] / ok[1]["tokens_per_s"], 3)
        out["efficiency"] = round(out["speedup"] / n, 3)
        print(f"\nspeed-up {out['speedup']}x on {n}, scaling efficiency {out['efficiency']:.0%}")
    return out


def fmt(case: dict, key: str, f: str = "{}") -> str:
    return f.format(case[key]) if case.get(key) is not None else "n/a"


def goals(cases: list[dict], lengths: list[int]) -> dict:
    ok = {(c["precision"], c["checkpointing"], c["length"]): c for c in cases if c["status"] == "ok"}
    tps = lambda p, ck, L: ok[(p, ck, L)]["tokens_per_s"] if (p, ck, L) in ok else None
    speedup = [
        {"length": L, "checkpointing": ck, "bf16_over_fp32": round(tps("bf16", ck, L) / tps("fp32", ck, L), 2)}
        for L in lengths
        for ck in (False, True)
        if tps("bf16", ck, L) and tps("fp32", ck, L)
    ]
    cost = [
        {"length": L, "precision": p, "cost": round(1 - tps(p, True, L) / tps(p, False, L), 3)}
        for L in lengths
        for p in ("fp32", "bf16")
        if tps(p, True, L) and tps(p, False, L)
    ]
    top = ok.get(("bf16", True, max(lengths)), {}).get("peak_reserved_gib")
    verdict = lambda xs: all(xs) if xs else None
    return {
        "bf16_speedup": speedup,
        "bf16_speedup_goal_met": verdict([x["bf16_over_fp32"] >= GOAL_SPEEDUP for x in speedup]),
        "checkpointing_cost": cost,
        "checkpointing_goal_met": verdict([x["cost"] <= GOAL_CKPT_COST for x in cost]),
        "longest_bf16_ckpt_peak_reserved_gib": top,
        "memory_goal_met": None if top is None else top * 2**30 < GOAL_MEM_BYTES,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", help="JSON results file (default bench/out/gpu_results.json; dry run: in a temporary folder)"
    )
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU: exercises every code path, no GPU needed")
    p.add_argument(
        "--tf32", action="store_true", help="let fp32 matmuls use TF32 tensor cores (default: off, as in PyTorch)"
    )
    p.add_argument("--peak-tflops", nargs=2, type=float, metavar=("BF16", "FP32"), help="override the peak table")
    p.add_argument("--skip-smoke", action="store_true", help="skip step 1")
    p.add_argument("--budget-s", type=float, default=285, help="cases that would start after this are skipped")
    p.add_argument("--case-s", type=float, default=15, help="stop timing a case after this many seconds")
    p.add_argument("--smoke-timeout-s", type=float, default=150)
    p.add_argument("--deadline-s", type=float, default=470, help="the whole run ends by then (step 3 shares it)")
    p.add_argument("--scaling", action="store_true", help="step 3 even on one GPU (default: with several GPUs)")
    p.add_argument("--no-scaling", action="store_true", help="leave step 3 out")
    p.add_argument("--only-scaling", action="store_true", help="step 3 alone (no smoke run, no single-GPU cases)")
    p.add_argument("--scaling-length", type=int, default=8192, help="input tokens per GPU in step 3 (%(default)s)")
    p.add_argument("--scaling-timeout-s", type=float, default=240, help="limit for each step-3 launch")
    p.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)  # one rank of step 3
    p.add_argument("--ddp-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ddp_worker:
        return ddp_worker(args)

    import torch
    import transformers
    from transformers import LEDForConditionalGeneration

    if not args.dry_run and not torch.cuda.is_available():
        print(
            f"error: no CUDA GPU visible to torch (torch {torch.__version__}); run on a GPU machine with a CUDA "
            "build of torch, or pass --dry-run",
            file=sys.stderr,
        )
        return 2
    s, dev = (DRY, "cpu") if args.dry_run else (FULL, "cuda")
    if args.dry_run:
        torch.set_num_threads(1)  # shared CPUs
    torch.set_float32_matmul_precision("high" if args.tf32 else "highest")
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else None
    table = next((pk for key, pk in PEAKS if gpu and key in gpu), None)
    peaks = (
        {"bf16": args.peak_tflops[0], "fp32": args.peak_tflops[1]}
        if args.peak_tflops
        else {"bf16": table["bf16"], "fp32": table["tf32" if args.tf32 else "fp32"]}
        if table
        else {"bf16": None, "fp32": None}
    )
    print(
        f"# LED GPU benchmark: {gpu or 'CPU (dry run)'}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, fp32 matmul {torch.get_float32_matmul_precision()}, peak TFLOP/s {peaks}"
    )

    result = {
        "dry_run": args.dry_run,
        "device": dev,
        "gpu_name": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "fp32_matmul_precision": torch.get_float32_matmul_precision(),
        "peak_tflops": peaks,
        "sizes": s,
    }
    if args.only_scaling:
        result["smoke"], result["scaling"] = None, scaling(args)
        return write_result(result, args)
    with tempfile.TemporaryDirectory(prefix="gpu_led_") as tmp:
        result["smoke"] = None if args.skip_smoke else smoke(args, args.dry_run, Path(tmp))

    torch.manual_seed(0)
    config = led_config(s)
    with torch.device(dev):
        model = LEDForConditionalGeneration(config).train()
    named = lambda stack: list(stack.layers.named_parameters())
    counts = {
        "total": sum(p.numel() for p in model.parameters()),
        "enc": sum(p.numel() for n, p in named(model.led.encoder) if "query_global" not in n),
        "dec": sum(p.numel() for _, p in named(model.led.decoder)),
        "xkv": sum(p.numel() for n, p in named(model.led.decoder) if "encoder_attn.k_" in n or "encoder_attn.v_" in n),
    }
    result["params"] = counts
    print(
        f"\n## Training steps: LED {counts['total'] / 1e6:.1f} M parameters (d_model {s['d_model']}, {s['layers']}+{s['layers']} "
        f"layers, window {s['window']}), batch 1, {s['target']} target tokens, {s['warmup']} warm-up + {s['steps']} timed steps\n"
    )
    print(
        "| precision | checkpointing | length | ms/step | tokens/s | peak alloc GiB | peak reserved GiB | TFLOP/s | MFU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cases = []
    for L in s["lengths"]:
        for prec in ("fp32", "bf16"):
            for ckpt in (False, True):
                c = run_case(model, s, dev, prec, ckpt, L, peaks[prec], counts, args)
                cases.append(c)
                row = (
                    [
                        fmt(c, "ms_per_step"),
                        fmt(c, "tokens_per_s", "{:.0f}"),
                        fmt(c, "peak_allocated_gib"),
                        fmt(c, "peak_reserved_gib"),
                        fmt(c, "achieved_tflops", "{:.3g}"),
                        fmt(c, "mfu", "{:.1%}"),
                    ]
                    if c["status"] == "ok"
                    else [c["status"]] + [""] * 5
                )
                print(f"| {prec} | {'on' if ckpt else 'off'} | {L} | " + " | ".join(row) + " |", flush=True)
    result["cases"], result["goals"] = cases, goals(cases, s["lengths"])

    gl = result["goals"]
    mark = lambda v: {True: "MET", False: "NOT MET", None: "n/a"}[v]
    print(
        f"\n## Goals\n- bf16 >= {GOAL_SPEEDUP}x fp32 tokens/s: {mark(gl['bf16_speedup_goal_met'])}: "
        + ", ".join(
            f"{x['length']} ckpt {'on' if x['checkpointing'] else 'off'} {x['bf16_over_fp32']}x"
            for x in gl["bf16_speedup"]
        )
    )
    print(
        f"- checkpointing costs <= {GOAL_CKPT_COST:.0%}: {mark(gl['checkpointing_goal_met'])}: "
        + ", ".join(f"{x['precision']} {x['length']} {x['cost']:.0%}" for x in gl["checkpointing_cost"])
    )
    print(
        f"- {max(s['lengths'])} tokens, bf16 + checkpointing, peak reserved < 40 GB: {mark(gl['memory_goal_met'])}"
        + (f" ({gl['longest_bf16_ckpt_peak_reserved_gib']} GiB)" if gl["memory_goal_met"] is not None else "")
    )
    if args.scaling or (dev == "cuda" and torch.cuda.device_count() > 1 and not args.no_scaling):
        result["scaling"] = scaling(args)
    return write_result(result, args)


def write_result(result: dict, args) -> int:
    result["wall_seconds"] = round(time.time() - T0, 1)
    if args.out:
        out = Path(args.out)
    elif args.dry_run:  # not over the figures of a real run
        out = Path(tempfile.mkdtemp(prefix="gpu_led_dry_")) / "gpu_results.json"
    else:
        out = Path("bench/out/gpu_results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out} ({result['wall_seconds']} s)")
    return 1 if result["smoke"] and not result["smoke"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
