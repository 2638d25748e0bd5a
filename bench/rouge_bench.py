#!/usr/bin/env python
"""ROUGE over many pairs: `ledsweep.metrics.rouge_per_example(workers=N)` vs single-process `rouge-score`.

The baseline is what a user would otherwise write: one `rouge_score.RougeScorer` with all four
variants and Porter stemming, looped over the pairs in one process, with the same
sentence-per-line preprocessing for rougeLsum that ledsweep applies (written out here, not
imported, so that the identity check also covers it). Pairs are synthetic but deterministic
(seeded): English-like sentences of common words with inflections, and predictions that reuse,
reword, drop and add reference sentences in random proportions, so the scores are spread out.

Both runs are timed in this process, in turn (baseline, ledsweep, baseline, ... for --repeat),
and every per-pair F-measure must be identical (==) between them. Wall and CPU seconds (this
process plus the worker processes) are reported, with the machine's load average: on a shared
machine the wall speedup is capped by the cores that other work leaves free. The figure of the benchmark
issue is 10,000 pairs of 250 words on 2 workers:

    .venv/bin/python bench/rouge_bench.py --pairs 10000 --words 250 --workers 2
    .venv/bin/python bench/rouge_bench.py                  # quick: 1,000 pairs, 2 workers
    .venv/bin/python bench/rouge_bench.py --dry-run        # a check, not a figure: DRY's tiny sizes
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ledsweep import metric_sources, metrics

FULL = {"pairs": 1000, "words": 250}
DRY = {"pairs": 20, "words": 40}  # --dry-run
NOUNS = (
    "city council mayor plan school road bridge river market price worker company report study "
    "water energy power court judge police officer health hospital doctor patient family child "
    "student teacher farm farmer train station airport flight storm weather season village town "
    "street house building project budget tax minister government election vote party leader "
    "member group team player match game season record result change system service network "
    "program museum library festival concert artist book film story problem question answer "
    "decision policy law rule agreement meeting month week year morning evening night region "
    "country border coast island forest mountain field garden park bank loan fund rate growth"
)
VERBS = (
    "open close build plan announce report expect increase reduce support reject approve "
    "consider visit start finish move warn agree discuss confirm launch replace protect repair "
    "invest improve delay cancel complete describe explain receive develop create follow"
)
SMALL = "the a an of in on at for to from with by and but or that this its their new local"
ADJS = "large small early late public private national regional rural urban major minor annual"
NOUNS, VERBS, SMALL, ADJS = (words.split() for words in (NOUNS, VERBS, SMALL, ADJS))


def _word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return rng.choice(SMALL)
    if r < 0.45:
        return rng.choice(ADJS)
    if r < 0.70:
        verb = rng.choice(VERBS)
        return rng.choice((verb, verb + "s", verb.rstrip("e") + "ed", verb.rstrip("e") + "ing"))
    noun = rng.choice(NOUNS)
    return noun + ("s" if rng.random() < 0.3 else "")


def _reword(rng: random.Random, word: str) -> str:
    """Another word in the same place: keeps capitalisation and trailing punctuation."""
    body = word.rstrip(".,!?")
    new = _word(rng)
    return (new.capitalize() if body[:1].isupper() else new) + word[len(body) :]


def _sentence(rng: random.Random) -> list[str]:
    words = [_word(rng) for _ in range(rng.randint(8, 22))]
    if rng.random() < 0.25:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 2030)))
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] += ","
    words[0] = words[0].capitalize()
    words[-1] += rng.choice(".....!?")
    return words


def _text(sentences: list[list[str]]) -> str:
    return " ".join(" ".join(s) for s in sentences)


def make_pairs(n: int, words: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    preds, refs = [], []
    for _ in range(n):
        ref: list[list[str]] = []
        while sum(map(len, ref)) < words:
            ref.append(_sentence(rng))
        keep, reword = rng.random(), rng.uniform(0.0, 0.5)  # how much of ref the prediction reuses
        pred = []
        for s in ref:
            if rng.random() < keep:
                pred.append([_reword(rng, w) if rng.random() < reword else w for w in s])
            if rng.random() < 1 - keep:
                pred.append(_sentence(rng))
        preds.append(_text(pred or [_sentence(rng)]))
        refs.append(_text(ref))
    return preds, refs


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def baseline(preds: list[str], refs: list[str]) -> list[dict[str, float]]:
    from rouge_score import rouge_scorer

    def lines(text):  # rougeLsum wants one sentence per line
        return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)

    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    out = []
    for p, r in zip(preds, refs):
        s = scorer.score(lines(r), lines(p))
        out.append({k: s[k].fmeasure for k in types})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--pairs", type=int, help=f"number of pred/ref pairs (default {FULL['pairs']}; issue figure: 10000)"
    )
    ap.add_argument("--words", type=int, help=f"words per reference (default {FULL['words']})")
    ap.add_argument("--workers", type=int, default=2, help="ledsweep worker processes (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="timed rounds of both, interleaved (report best)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--via-module",
        action="store_true",
        help="ledsweep side through its `evaluate` module: evaluate.load(metrics.module_path('rouge')).compute(...)",
    )
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (DRY in this file): a quick check that it works")
    args = ap.parse_args()
    for key, value in (DRY if args.dry_run else FULL).items():  # what the command line leaves unset
        if getattr(args, key) is None:
            setattr(args, key, value)

    preds, refs = make_pairs(args.pairs, args.words, args.seed)
    import rouge_score.rouge_scorer  # noqa: F401  (import cost ~1 s, paid once, outside both timings)

    score = metrics.rouge_per_example
    if args.via_module:  # `import evaluate` and the module load (5-10 s) are outside the timings too
        module = metric_sources.import_evaluate().load(metrics.module_path("rouge"))

        def score(preds, refs, workers):
            got = module.compute(predictions=preds, references=refs, workers=workers)
            return [dict(zip(metrics.ROUGE_TYPES, row)) for row in zip(*(got[k] for k in metrics.ROUGE_TYPES))]

    def timed(fn):
        """Wall and CPU seconds (this process + finished worker processes)."""

        def cpu():
            me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

        c, t = cpu(), time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t, cpu() - c

    times: dict[str, list[tuple[float, float]]] = {"baseline": [], "ledsweep": []}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        base, *t = timed(lambda: baseline(preds, refs))
        times["baseline"].append(t)
        ours, *t = timed(lambda: score(preds, refs, workers=args.workers))
        times["ledsweep"].append(t)
        load.append(os.getloadavg()[0])
        if ours != base:
            bad = next((i for i, (a, b) in enumerate(zip(ours, base)) if a != b), None)
            print(f"MISMATCH: {len(ours)} vs {len(base)} rows; first differing pair {bad}", file=sys.stderr)
            return 1

    mean_words = statistics.mean(len(r.split()) for r in refs)
    spread = {
        k: (min(r[k] for r in base), statistics.mean(r[k] for r in base), max(r[k] for r in base))
        for k in metrics.ROUGE_TYPES
    }
    print(
        f"{args.pairs} pairs, refs {mean_words:.0f} words on average, preds "
        f"{statistics.mean(len(p.split()) for p in preds):.0f}; F (min/mean/max): "
        + ", ".join(f"{k} {a:.2f}/{m:.2f}/{b:.2f}" for k, (a, m, b) in spread.items())
    )
    print(
        "rounds, wall/CPU s: "
        + "; ".join(f"{k} " + " ".join(f"{w:.2f}/{c:.2f}" for w, c in v) for k, v in times.items())
        + f"; 1-min load average {' '.join(f'{x:.1f}' for x in load)} (2 cores)"
    )
    (b, bc), (o, oc) = min(times["baseline"]), min(times["ledsweep"])
    print(f"baseline (1 process)   {b:8.2f} s wall {bc:8.2f} s CPU  {1000 * b / args.pairs:6.2f} ms/pair")
    print(f"ledsweep (workers={args.workers})   {o:8.2f} s wall {oc:8.2f} s CPU  {1000 * o / args.pairs:6.2f} ms/pair")
    print(f"speedup {b / o:.2f}x (best rounds); per-pair scores identical: yes")
    # on a shared machine the wall ratio is capped by the cores other work leaves free; the CPU
    # seconds are not: with `workers` free cores the wall time would be about CPU / workers
    print(
        f"CPU seconds ledsweep/baseline {oc / bc:.3f}: with {args.workers} free cores, speedup "
        f"about {bc / (oc / args.workers):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
