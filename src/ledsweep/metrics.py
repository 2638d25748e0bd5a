"""ROUGE (rouge-score) and BERTScore (bert-score), offline. Scores are fractions in [0, 1]."""

from __future__ import annotations

import importlib
import os
import re
from concurrent.futures import ProcessPoolExecutor
from numbers import Real
from pathlib import Path

from . import metrics_registry
from .config import ConfigError
from .metric_sources import import_evaluate, metric_source, not_cached, prefetch_hint
from .schema import is_local_path

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences_per_line(text: str) -> str:
    """rougeLsum expects one sentence per line (regex split: nltk's punkt needs a download)."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


_scorer = None


def _rouge_scorer():
    """One RougeScorer per process (rouge-score imports nltk: ~1 s)."""
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    return _scorer


def _rouge_chunk(pairs: list[tuple[str, str]]) -> list[dict[str, float]]:
    scorer = _rouge_scorer()
    out = []
    for pred, ref in pairs:
        s = scorer.score(sentences_per_line(ref), sentences_per_line(pred))
        out.append({k: s[k].fmeasure for k in ROUGE_TYPES})
    return out


def rouge_per_example(predictions: list[str], references: list[str], workers: int = 1) -> list[dict[str, float]]:
    """Per-pair F-measures, in order; the same numbers whatever `workers` is."""
    pairs = list(zip(predictions, references))
    if workers <= 1 or len(pairs) < 2 * workers:
        return _rouge_chunk(pairs)
    _rouge_scorer()  # import and build it once, here: forked workers (Linux's default) inherit it
    # many small chunks, handed out as workers free up: a slow core or long pairs do not leave the other idle
    size = -(-len(pairs) // (16 * workers))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    with ProcessPoolExecutor(workers) as pool:
        return [row for part in pool.map(_rouge_chunk, chunks) for row in part]


def rouge_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """The mean of per-example ROUGE F-measures (rouge_per_example's rows)."""
    return {k: sum(r[k] for r in rows) / len(rows) for k in ROUGE_TYPES}


def rouge(predictions: list[str], references: list[str], workers: int = 1) -> dict[str, float]:
    """Mean F-measure of ROUGE-1/2/L/Lsum with Porter stemming."""
    return rouge_mean(rouge_per_example(predictions, references, workers))


def resolve_bertscore_model(name: str) -> str:
    """'package:<module>' -> the folder that module ships (its get_model_path()); else unchanged."""
    if not name.startswith("package:"):
        if is_local_path(name) and not Path(name).expanduser().is_dir():
            raise ConfigError(f"evaluation.bertscore_model: folder not found: {name}")
        return name
    module = name.split(":", 1)[1]
    try:
        path = importlib.import_module(module).get_model_path()
    except (ImportError, AttributeError) as e:
        raise ConfigError(
            f"evaluation.bertscore_model: {name}: package '{module}' is not installed or has no get_model_path() ({e})"
        ) from None
    if not Path(path, "config.json").is_file():
        raise ConfigError(f"evaluation.bertscore_model: {name} resolves to {path}, which holds no model")
    return str(path)


class BertScore:
    """Build the scorer once; score many batches.

    Scoring reuses bert-score's own embedding and greedy-matching functions, but orders the
    de-duplicated sentences deterministically: bert-score sorts `set(...)` by word count only, so
    ties (and with them batch composition and padding) follow Python's per-process string hashing,
    which changed BERTScore in the 9th digit between two runs of the same model and predictions.
    """

    def __init__(self, model: str, num_layers: int | None, batch_size: int = 64, device: str | None = None):
        from bert_score import BERTScorer

        self.batch_size = batch_size
        self.scorer = BERTScorer(
            model_type=resolve_bertscore_model(model),
            num_layers=num_layers,
            batch_size=batch_size,
            device=device,
            use_fast_tokenizer=True,  # the slow BertTokenizer path is broken under transformers 5
        )

    def _scores(self, hyps: list[str], refs: list[str]):
        """(n, 3) tensor of P, R, F1 per pair, independent of hash seeds."""
        from collections import defaultdict

        import torch
        from bert_score.utils import get_bert_embedding, greedy_cos_idf
        from torch.nn.utils.rnn import pad_sequence

        model, tok, device = self.scorer._model, self.scorer._tokenizer, self.scorer.device
        idf = defaultdict(lambda: 1.0)
        idf[tok.sep_token_id] = idf[tok.cls_token_id] = 0
        sentences = sorted(set(refs + hyps), key=lambda s: (-len(s.split(" ")), s))
        stats = {}
        with torch.no_grad():
            for i in range(0, len(sentences), self.batch_size):
                batch = sentences[i : i + self.batch_size]
                emb, mask, padded_idf = get_bert_embedding(batch, model, tok, idf, device=device)
                for j, sentence in enumerate(batch):
                    n = int(mask[j].sum())
                    stats[sentence] = (emb[j, :n].cpu(), padded_idf[j, :n].cpu())

            def padded(batch):
                emb, w = zip(*(stats[s] for s in batch))
                lens = torch.tensor([e.size(0) for e in emb])
                mask = torch.arange(int(lens.max())).expand(len(lens), -1) < lens.unsqueeze(1)
                return (
                    pad_sequence(emb, batch_first=True, padding_value=2.0).to(device),
                    mask.to(device),
                    pad_sequence(w, batch_first=True).to(device),
                )

            out = []
            for i in range(0, len(refs), self.batch_size):
                p, r, f = greedy_cos_idf(*padded(refs[i : i + self.batch_size]), *padded(hyps[i : i + self.batch_size]))
                out.append(torch.stack((p, r, f), dim=-1).cpu())
        return torch.cat(out)

    def _kept_scores(self, predictions: list[str], references: list[str]):
        """(indices of the pairs with two non-empty texts, their (k, 3) float64 P/R/F1 tensor or None)."""
        keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
        if not keep:
            return keep, None
        scores = self._scores([predictions[i] for i in keep], [references[i] for i in keep])
        # cosine similarities of identical texts come out a few ulp above 1: clip into [0, 1]
        return keep, scores.double().clamp(0.0, 1.0)

    def per_example(self, predictions: list[str], references: list[str]) -> list[tuple[float, float, float]]:
        """(P, R, F1) of each pair, in order; a pair with an empty text scores (0, 0, 0)."""
        keep, scores = self._kept_scores(predictions, references)
        out = [(0.0, 0.0, 0.0)] * len(predictions)
        for i, row in zip(keep, scores.tolist() if scores is not None else ()):
            out[i] = tuple(row)
        return out

    def __call__(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        """Mean P/R/F1; an empty prediction scores 0 (bert-score itself crashes on '' under transformers 5)."""
        keep, scores = self._kept_scores(predictions, references)
        totals = scores.sum(dim=0).tolist() if keep else [0.0, 0.0, 0.0]
        n = len(predictions)
        return {"bertscore_precision": totals[0] / n, "bertscore_recall": totals[1] / n, "bertscore": totals[2] / n}


# ----------------------------------------------------------------------------- evaluate modules
# ROUGE and BERTScore as Hugging Face `evaluate` metric modules (src/ledsweep/metric_modules/<name>/
# <name>.py, thin wrappers over the functions above), and any extra metric `evaluate` can load.
# `import evaluate` costs 5-10 s (it imports transformers' pipelines): only these functions import it.
MODULES = Path(__file__).with_name("metric_modules")


def module_path(name: str) -> str:
    """The folder of one of ledsweep's own metric modules ('rouge', 'bertscore'): evaluate.load() it."""
    path = MODULES / name
    if not (path / f"{name}.py").is_file():
        raise ValueError(
            f"no ledsweep metric module {name!r}; expected one of {sorted(p.name for p in MODULES.iterdir())}"
        )
    return str(path)


def load_module(spec: str, **init_kwargs):
    """evaluate.load(spec) for an `evaluation.extra_metrics` entry or module_path(); in memory (no cache
    files of predictions). ConfigError naming the entry when there is no such module here: a local path
    that is missing, or a hub name not in the cache while offline."""
    key = "evaluation.extra_metrics"
    kind, where = metric_source(spec)
    if kind == "missing":
        raise ConfigError(
            f"{key}: {spec!r}: no metric module at {where} (expected a .py file or a folder <name>/<name>.py)"
        )
    evaluate = import_evaluate()
    if kind == "hub" and where is None and evaluate.config.HF_EVALUATE_OFFLINE:
        raise ConfigError(
            f"{key}: {spec!r}: {not_cached(spec)}, and this job is offline; "
            f"prefetch it where there is internet: {prefetch_hint()}"
        )
    try:
        return evaluate.load(os.path.expanduser(spec) if kind == "local" else spec, keep_in_memory=True, **init_kwargs)
    except (FileNotFoundError, ConnectionError, ImportError, SyntaxError) as e:
        raise ConfigError(f"{key}: {spec!r}: evaluate cannot load it: {type(e).__name__}: {e}") from None


def extra_metric_value(spec: str, result: dict):
    """The one number of an extra metric's result: the value under the metric's own name (meteor ->
    {'meteor': ...}), else under 'score' (sacrebleu, chrf, ter), else the only number it returns.
    ValueError naming the metric and its keys otherwise."""
    name = metrics_registry.extra_metric_name(spec)
    if not isinstance(result, dict):
        raise ValueError(f"evaluation.extra_metrics: {spec!r}: expected a dict of results, got {type(result).__name__}")
    # numbers.Real: also numpy's scalars (np.float32 is no float)
    numbers = {k: v for k, v in result.items() if isinstance(v, Real) and not isinstance(v, bool)}
    for key in (name, "score"):
        if key in numbers:
            return float(numbers[key])
    if len(numbers) == 1:
        return float(next(iter(numbers.values())))
    raise ValueError(
        f"evaluation.extra_metrics: {spec!r}: cannot tell which result is the metric: expected a number under "
        f"'{name}' or 'score', or exactly one number; it returned {sorted(result)}"
    )


def load_extra_metrics(specs) -> dict:
    """metric name -> loaded evaluate module, for each `evaluation.extra_metrics` entry (load before
    generating: a missing module fails the job at once)."""
    return {metrics_registry.extra_metric_name(s): (s, load_module(s)) for s in specs}


def extra_metrics(modules: dict, predictions: list[str], references: list[str]) -> dict[str, float]:
    """metric name -> its number (extra_metric_value) for the modules of load_extra_metrics."""
    out = {}
    for name, (spec, module) in modules.items():
        try:
            result = module.compute(predictions=predictions, references=references)
        except Exception as e:
            raise RuntimeError(f"evaluation.extra_metrics: {spec!r}: computing failed: {type(e).__name__}: {e}") from e
        out[name] = extra_metric_value(spec, result)
    return out


def text_pair_info(description: str, citation: str, inputs_description: str, codebase_url: str):
    """The evaluate.MetricInfo of a ledsweep metric module (metric_modules/): string predictions and references."""
    import datasets

    evaluate = import_evaluate()
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        codebase_urls=[codebase_url],
    )
