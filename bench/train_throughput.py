#!/usr/bin/env python
"""Training throughput: `train_baseline.py --stage train` vs a bare PyTorch loop, in non-padding tokens/s.

    .venv/bin/python bench/train_throughput.py --config config/led_baseline.yaml --steps 200 --repeat 2
    .venv/bin/python bench/train_throughput.py --config config/led_baseline.yaml --steps 200 --repeat 3 \\
        --variants default no-eval-save group-by-length --ref-src /tmp/old/src --json out.json
    .venv/bin/python bench/train_throughput.py --dry-run   # a check, not a figure: DRY's tiny sizes, seconds

Both sides train the same model (built by `ledsweep.model` after `set_seed(seed)`, with the
tokenizer of the prepared data), on the same tokenized examples in the same order (the Trainer's
seedable sampler: `randperm(n)` seeded with `data_seed + epoch`), with the same batch size, AdamW
(fused when the config's optim is `adamw_torch_fused`), learning-rate schedule, gradient
clipping, fp32 and torch thread count. Each side runs in its own fresh process; repetitions
alternate the order of the sides (ABBA) because the machine is shared and noisy.

Prepared data: before any run, the config's data is prepared once (`ledsweep.prepare.
ensure_prepared`, as `train_baseline.py` does it: tokenizer + tokenized splits) into a temporary
folder, and every run of both sides reads that one folder: the Trainer's train split (ledsweep,
through `--prepared-dir`) and the bare loop's examples (`ledsweep.data.load_prepared`) are the
same rows of the same Arrow files. Its time is printed on its own and is in no side's figures.

ledsweep: what `scripts/train_baseline.py --config <config with training.max_steps = --steps>
--output-dir <tmp> --prepared-dir <tmp>/prepared --stage train` runs (`ledsweep.cli.train_main`,
called from this file so that one extra callback, added last, can read the clock at each step
end, after each evaluation and after each checkpoint save), with the config's logging, eval and
checkpoint intervals. Its
*training time* is `train_runtime_seconds` from meta.json: the wall time of `Trainer.train()`,
which includes the periodic evaluation and resume-checkpoint saves the user pays for, but not
imports, reading the prepared data (built beforehand, see above), model build or the final model
save. The *end-to-end* wall time of the whole command is reported separately.

bare: a plain loop (`for batch in batches: loss.backward(); clip; opt.step(); sched.step();
zero_grad`) with dynamic padding to the longest example of the batch (LED pads the source to
its attention window internally); no evaluation, no checkpoints. The token ids of the examples
its batches use are read from the prepared train split into Python lists before the loop (the
ideal a bare loop can reach; the Trainer reads its rows from the memory-mapped split while it
trains, and that cost is ledsweep's). Its training time covers the loop only, collation
included; its end-to-end time includes reading the examples and computing the padding statistics.

Tokens: non-padding source tokens + non-padding label tokens of the batches trained, computed
from the replicated sample order. The replication is checked: the source-token count must equal
the Trainer's own `input_tokens_seen` (meta.json), and the per-step losses of both sides are
compared. Padding fraction: padded positions / positions the model computes (source rounded up
to the attention window, as LED does anyway, plus labels), for the bare collation and for
ledsweep's collator on the same batches.

Two tables: wall clock (best and median training time of the runs), and a per-step estimate
that resists other load on the machine (2 torch threads on 2 shared cores slow down 10x and more
while another process runs): the lowest of the runs' median step times x steps, plus the time
spent outside the steps (evaluation, checkpoint saves, Trainer start and end).

Variants of the ledsweep side (--variants): `default` (the config as is), `no-eval-save`
(eval_steps null, save_steps > steps: isolates the evaluation and periodic checkpoint cost; the
Trainer still saves once at the end), and `group-by-length` (training.group_by_length true; its
order differs, so its token count is the Trainer's source count plus label tokens scaled by the
dataset's label/source ratio). `--ref-src DIR` adds side `ref`: the default config run with the
ledsweep package of another revision, to measure a change in the same invocation (a revision
from before prepared data, without `ledsweep/prepare.py`, tokenizes its own data: it is not given
`--prepared-dir`, and the token-count check tells whether it trained on the same examples).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("LEDSWEEP_BENCH_SRC") or str(REPO / "src"))
FULL = {"config": REPO / "config/led_baseline.yaml", "steps": 200, "repeat": 2, "threads": None}
DRY = {"config": REPO / "tests/configs/tiny_run.yaml", "steps": 3, "repeat": 1, "threads": 1}  # --dry-run: seconds


# ----------------------------------------------------------------------------- bare loop (child)
def bare_main(cfg_path: str, steps: int, threads: int | None, prepared: str, out: str) -> None:
    """Run in a fresh process: build everything like ledsweep.train.train, from the same prepared data,
    then a bare loop."""
    t_start = time.perf_counter()
    import pyarrow.compute as pc
    import torch
    from transformers import get_scheduler, set_seed

    from ledsweep import model as model_mod
    from ledsweep.config import SCRATCH, load_config
    from ledsweep.data import data_key, data_spec, load_prepared, load_tokenizer, read_manifest
    from ledsweep.model import set_threads
    from ledsweep.train import collator

    cfg = load_config(cfg_path)
    t = cfg.training
    if cfg.model.name != SCRATCH or t.gradient_accumulation_steps != 1 or t.label_smoothing_factor:
        raise SystemExit("bare loop supports scratch models, no gradient accumulation, no label smoothing")
    n_threads = set_threads(cfg, threads)
    manifest = read_manifest(prepared)
    if manifest["key"] != data_key(data_spec(cfg)):
        raise SystemExit(f"{prepared}: prepared data {manifest['key']}, not that of {cfg_path}")
    tok = load_tokenizer(prepared)  # what ledsweep.train.train loads
    set_seed(cfg.seed)
    model = model_mod.new_model(cfg, tok)
    model_mod.configure_generation(model, cfg)
    train_ds = load_prepared(prepared, "train")  # the Trainer's train_dataset: same folder, same columns
    pad_id = tok.pad_token_id
    window = model.config.attention_window
    window = max(window) if isinstance(window, (list, tuple)) else window

    # the Trainer's order: accelerate's SeedableRandomSampler, seeded with data_seed + epoch
    bs, n = t.per_device_train_batch_size, len(train_ds)
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < steps:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        batches += [order[i : i + bs] for i in range(0, n, bs)]  # drop_last=False, like the Trainer
        epoch += 1
    batches = batches[:steps]
    # the token ids of the examples trained, read once into Python lists (outside the timed loop)
    needed = sorted({i for b in batches for i in b})
    rows = train_ds[needed]
    examples = {i: {"input_ids": ids, "labels": lab} for i, ids, lab in zip(needed, rows["input_ids"], rows["labels"])}
    del rows

    def collate(idx: list[int]) -> dict:
        feats = [examples[i] for i in idx]
        src = max(len(f["input_ids"]) for f in feats)
        tgt = max(len(f["labels"]) for f in feats)
        ids = torch.full((len(feats), src), pad_id, dtype=torch.long)
        mask = torch.zeros((len(feats), src), dtype=torch.long)
        labels = torch.full((len(feats), tgt), -100, dtype=torch.long)
        for row, f in enumerate(feats):
            ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[row, : len(f["input_ids"])] = 1
            labels[row, : len(f["labels"])] = torch.tensor(f["labels"])
        gmask = torch.zeros_like(ids)
        gmask[:, 0] = 1
        return {"input_ids": ids, "attention_mask": mask, "global_attention_mask": gmask, "labels": labels}

    # token and padding statistics of the replicated batches (outside the timed loop)
    src_tokens = sum(len(examples[i]["input_ids"]) for b in batches for i in b)
    label_tokens = sum(len(examples[i]["labels"]) for b in batches for i in b)
    ledsweep_collate = collator(tok, model)

    def positions(batch: dict) -> int:
        rows, src = batch["input_ids"].shape
        return rows * (-(-src // window) * window) + batch["labels"].numel()

    bare_pos = led_pos = 0
    for b in batches:
        bare_pos += positions(collate(b))
        led_pos += positions(ledsweep_collate([dict(examples[i]) for i in b]))
    table = train_ds.with_format("arrow")[:]  # whole-split token counts from the list lengths, no Python lists
    all_src = pc.sum(pc.list_value_length(table["input_ids"])).as_py()
    all_lab = pc.sum(pc.list_value_length(table["labels"])).as_py()

    fused = t.optim == "adamw_torch_fused"
    if t.optim not in ("adamw_torch_fused", "adamw_torch"):
        raise SystemExit(f"bare loop supports optim adamw_torch[_fused], not {t.optim}")
    opt = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, weight_decay=t.weight_decay, fused=fused)
    warmup = int(t.warmup_steps) if t.warmup_steps >= 1 else int(t.warmup_steps * steps + 0.999999)
    sched = get_scheduler(t.lr_scheduler_type, opt, num_warmup_steps=warmup, num_training_steps=steps)
    model.train()
    losses, step_s = [], []
    t_setup = time.perf_counter() - t_start
    t0 = prev = time.perf_counter()
    for b in batches:
        loss = model(**collate(b)).loss
        loss.backward()
        if t.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        now = time.perf_counter()
        step_s.append(now - prev)
        prev = now
    train_s = time.perf_counter() - t0
    Path(out).write_text(
        json.dumps(
            {
                "train_seconds": train_s,
                "setup_seconds": t_setup,
                "threads": n_threads,
                "steps": len(batches),
                "source_tokens": src_tokens,
                "label_tokens": label_tokens,
                "bare_padding": 1 - (src_tokens + label_tokens) / bare_pos,
                "ledsweep_padding": 1 - (src_tokens + label_tokens) / led_pos,
                "label_per_source": all_lab / all_src,
                "losses": losses,
                "step_seconds": step_s,
                "overhead_seconds": train_s - sum(step_s),
                "prepared_fingerprint": manifest["fingerprint"],
            }
        )
    )


# ----------------------------------------------------------------------------- ledsweep (child)
def ledsweep_main(argv: list[str], times_out: str) -> int:
    """`scripts/train_baseline.py <argv>`, plus one callback, added last, that only reads the clock:
    per-step times (from one step's end, or the end of its evaluation/checkpoint, to the next step's
    end), evaluation and checkpoint-save seconds."""
    import inspect

    from transformers import TrainerCallback

    from ledsweep import cli
    from ledsweep import train as train_mod

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            self.mark, self.steps, self.eval, self.save = time.perf_counter(), [], 0.0, 0.0

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.steps.append(now - self.mark)
            self.mark = now

        def on_evaluate(self, args, state, control, **kw):
            now = time.perf_counter()
            self.eval += now - self.mark
            self.mark = now

        def on_save(self, args, state, control, **kw):
            now = time.perf_counter()
            self.save += now - self.mark
            self.mark = now

        def on_train_end(self, args, state, control, **kw):
            Path(times_out).write_text(
                json.dumps({"step_seconds": self.steps, "eval_seconds": self.eval, "save_seconds": self.save})
            )

    if "callbacks" in inspect.signature(cli.train_main).parameters:
        return cli.train_main(argv, callbacks=(Clock(),))
    # a --ref-src revision from before the public hook: the callback through a Trainer subclass
    name = "trainer_class" if hasattr(train_mod, "trainer_class") else "_trainer_class"
    make_class = getattr(train_mod, name)

    def timed_class():
        class Timed(make_class()):
            def train(self, *a, **k):
                self.add_callback(Clock())  # after ledsweep's own callbacks
                return super().train(*a, **k)

        return Timed

    setattr(train_mod, name, timed_class)
    return cli.train_main(argv)


# ----------------------------------------------------------------------------- orchestration (parent)
def write_config(base: Path, dest: Path, steps: int, variant: str) -> Path:
    import yaml

    cfg = yaml.safe_load(base.read_text())
    cfg["run_name"] = f"bench_{variant.replace('-', '_')}"
    cfg.setdefault("training", {})["max_steps"] = steps
    for split in ("train_file", "validation_file", "test_file"):  # relative paths: from the repo root
        if cfg.get("data", {}).get(split):
            cfg["data"][split] = str((REPO / cfg["data"][split]).resolve())
    if variant == "no-eval-save":
        cfg["training"]["eval_steps"] = None
        cfg["training"]["save_steps"] = steps + 1
    elif variant == "group-by-length":
        cfg["training"]["group_by_length"] = True
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def prepare(cfg: Path, root: Path, threads: int | None) -> tuple[Path, dict, float]:
    """The config's prepared data under `root`, built once (as train_baseline.py would: the same worker count)."""
    from ledsweep.config import load_config
    from ledsweep.prepare import default_num_proc, ensure_prepared

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()  # its tokenize bars would interleave with this script's lines
    config = load_config(cfg)
    t0 = time.perf_counter()
    path, manifest = ensure_prepared(config, root, default_num_proc(config, threads))
    return path, manifest, time.perf_counter() - t0


def run_bare(cfg: Path, steps: int, threads: int | None, work: Path, prepared: Path) -> dict:
    out = work / "bare.json"
    cmd = [
        sys.executable,
        __file__,
        "--_bare",
        "--config",
        str(cfg),
        "--steps",
        str(steps),
        "--_out",
        str(out),
        "--_prepared",
        str(prepared),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"bare loop failed:\n{r.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["wall_seconds"] = wall
    return res


def run_ledsweep(
    cfg: Path, steps: int, threads: int | None, work: Path, prepared_root: Path, src: str | None = None
) -> dict:
    outdir, times = work / "ledsweep", work / "times.json"
    cmd = [
        sys.executable,
        __file__,
        "--_ledsweep",
        str(times),
        "--config",
        str(cfg),
        "--output-dir",
        str(outdir),
        "--stage",
        "train",
        "--overwrite",
    ]
    if not src or (Path(src) / "ledsweep" / "prepare.py").is_file():  # a revision that reads prepared data
        cmd += ["--prepared-dir", str(prepared_root)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("SLURM_JOB_ID", None)
    env.pop("LEDSWEEP_BENCH_SRC", None)
    if src:
        env["LEDSWEEP_BENCH_SRC"] = str(Path(src).resolve())
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"train_baseline.py failed:\n{r.stderr[-3000:]}")
    import yaml

    run = outdir / yaml.safe_load(cfg.read_text())["run_name"]
    meta = json.loads((run / "meta.json").read_text())
    losses = [json.loads(line)["loss"] for line in (run / "step_losses.jsonl").read_text().splitlines()]
    import shutil

    shutil.rmtree(outdir, ignore_errors=True)
    clock = json.loads(times.read_text())
    return {
        "train_seconds": meta["train_runtime_seconds"],
        "wall_seconds": wall,
        "steps": meta["global_step"],
        "input_tokens_seen": meta["input_tokens_seen"],
        "threads": meta.get("num_threads"),
        "losses": losses,
        "prepared_fingerprint": (meta.get("prepared_data") or {}).get("fingerprint"),
        **clock,
        "overhead_seconds": meta["train_runtime_seconds"] - sum(clock["step_seconds"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help=f"run config YAML (scratch model; default {FULL['config'].relative_to(REPO)})")
    p.add_argument(
        "--steps", type=int, help=f"optimizer steps per run (overrides training.max_steps; default {FULL['steps']})"
    )
    p.add_argument("--repeat", type=int, help=f"repetitions of each side, interleaved (default {FULL['repeat']})")
    p.add_argument(
        "--dry-run", action="store_true", help="tiny sizes (DRY in this file): a quick check that the script works"
    )
    p.add_argument("--threads", type=int, help="torch threads for both sides (default: ledsweep's choice)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=["default"],
        choices=("default", "no-eval-save", "group-by-length"),
        help="ledsweep variants to time against the bare loop (default: default)",
    )
    p.add_argument(
        "--ref-src",
        metavar="DIR",
        help="also time the default config with the ledsweep package from DIR (a src/ folder of another "
        "revision, e.g. from `git worktree add`), as side 'ref', to measure a change",
    )
    p.add_argument("--json", help="also write all measurements here")
    p.add_argument("--_bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_ledsweep", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    p.add_argument("--_prepared", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_ledsweep"]:
        return ledsweep_main(argv[2:], argv[1])
    args = p.parse_args(argv)
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args._bare:
        bare_main(args.config, args.steps, args.threads, args._prepared, args._out)
        return 0

    variants = [*args.variants, *(["ref"] if args.ref_src else [])]
    results: dict[str, list[dict]] = {"bare": [], **{v: [] for v in variants}}
    with tempfile.TemporaryDirectory(prefix="ledsweep-bench-") as tmp:
        work = Path(tmp)
        cfgs = {
            v: write_config(Path(args.config).resolve(), work / f"{v}.yaml", args.steps, v)
            for v in {"default", *args.variants}
        }
        prepared_root = work / "prepared"
        prepared, manifest, prep_s = prepare(cfgs["default"], prepared_root, args.threads)
        print(
            f"  prepared data {manifest['key']} ({', '.join(f'{k} {n}' for k, n in manifest['rows'].items())} "
            f"rows) in {prep_s:.2f} s, read by every run of both sides",
            file=sys.stderr,
            flush=True,
        )
        sides = ["bare", *variants]
        for r in range(args.repeat):
            for side in sides if r % 2 == 0 else sides[::-1]:
                res = (
                    run_bare(cfgs["default"], args.steps, args.threads, work, prepared)
                    if side == "bare"
                    else run_ledsweep(cfgs["default"], args.steps, args.threads, work, prepared_root, args.ref_src)
                    if side == "ref"
                    else run_ledsweep(cfgs[side], args.steps, args.threads, work, prepared_root)
                )
                results[side].append(res)
                print(
                    f"  [{r + 1}/{args.repeat}] {side:16s} train {res['train_seconds']:7.2f} s  "
                    f"wall {res['wall_seconds']:7.2f} s",
                    file=sys.stderr,
                    flush=True,
                )

    bare = results["bare"][0]
    tokens = bare["source_tokens"] + bare["label_tokens"]

    def side_tokens(side: str) -> int:
        if side != "group-by-length":
            return tokens
        src = results[side][0]["input_tokens_seen"]
        return src + round(src * bare["label_per_source"])

    print(
        f"\n{args.steps} steps of config {args.config}, {bare['threads']} threads, {bare['source_tokens']:,} source "
        f"+ {bare['label_tokens']:,} label non-padding tokens; {args.repeat} runs per side, interleaved; "
        f"prepared data {manifest['key']} built once in {prep_s:.2f} s (in no side's times), read by both sides\n"
    )
    print(
        "Wall clock: training time of each run (ledsweep: Trainer.train(), with its evaluation and checkpoint "
        "saves), best and median of the runs; end-to-end: the whole command, best.\n"
    )
    print("| side | train s best | train s median | tokens/s (best) | ratio vs bare | padding | end-to-end s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    bare_best = min(x["train_seconds"] for x in results["bare"])
    for side in ["bare", *variants]:
        runs = results[side]
        best = min(x["train_seconds"] for x in runs)
        med = statistics.median(x["train_seconds"] for x in runs)
        pad = (
            "n/a"
            if side in ("group-by-length", "ref")
            else f"{bare['bare_padding' if side == 'bare' else 'ledsweep_padding']:.1%}"
        )
        tps = side_tokens(side) / best
        print(
            f"| {side} | {best:.2f} | {med:.2f} | {tps:,.0f} | {tps / (tokens / bare_best):.3f} | {pad} "
            f"| {min(x['wall_seconds'] for x in runs):.1f} |"
        )

    print(
        "\nPer step, robust to other load on the machine: median step time (lowest of the runs' medians) x steps "
        "+ time outside the steps (evaluation, checkpoint saves, Trainer start/end; lowest of the runs).\n"
    )
    print("| side | median ms/step | eval s | save s | start/end s | estimated train s | tokens/s | ratio vs bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    est = {}
    for side in ["bare", *variants]:
        runs = results[side]
        step = min(statistics.median(x["step_seconds"]) for x in runs)
        ev = min(x.get("eval_seconds", 0.0) for x in runs)
        sv = min(x.get("save_seconds", 0.0) for x in runs)
        rest = min(x["overhead_seconds"] - x.get("eval_seconds", 0.0) - x.get("save_seconds", 0.0) for x in runs)
        est[side] = step * args.steps + ev + sv + rest
        tps = side_tokens(side) / est[side]
        print(
            f"| {side} | {1000 * step:.1f} | {ev:.2f} | {sv:.2f} | {rest:.2f} | {est[side]:.2f} | {tps:,.0f} "
            f"| {tps / (tokens / est['bare']):.3f} |"
        )

    checks = []
    for side in variants:
        for x in results[side]:
            if x["prepared_fingerprint"] not in (None, bare["prepared_fingerprint"]):
                checks.append(
                    f"{side}: trained on prepared data {x['prepared_fingerprint'][:12]}, the bare loop on "
                    f"{bare['prepared_fingerprint'][:12]}"
                )
        if side == "group-by-length":
            continue
        for x in results[side]:
            if x["input_tokens_seen"] != bare["source_tokens"] or x["steps"] != args.steps:
                checks.append(
                    f"{side}: Trainer saw {x['input_tokens_seen']} source tokens in {x['steps']} steps, "
                    f"the replicated order has {bare['source_tokens']} in {args.steps}: tokens/s are off"
                )
        pairs = list(zip(results[side][0]["losses"], bare["losses"]))
        first = max(abs(a - b) for a, b in pairs[:20])
        print(
            f"\n{side}: same examples in the same order as the bare loop (the Trainer's source-token count "
            f"matches); per-step loss vs bare: max difference {first:.1e} over the first 20 steps, "
            f"{max(abs(a - b) for a, b in pairs):.1e} over all (float rounding, amplified by training)"
        )
    for c in checks:
        print(f"WARNING: {c}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if checks else 0


if __name__ == "__main__":
    sys.exit(main())
