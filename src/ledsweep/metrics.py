"""ROUGE (rouge-score) and BERTScore (bert-score), offline. Scores are fractions in [0, 1]."""

from __future__ import annotations

import importlib
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .config import ConfigError, is_local_path

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


def rouge(predictions: list[str], references: list[str], workers: int = 1) -> dict[str, float]:
    """Mean F-measure of ROUGE-1/2/L/Lsum with Porter stemming."""
    rows = rouge_per_example(predictions, references, workers)
    return {k: sum(r[k] for r in rows) / len(rows) for k in ROUGE_TYPES}


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

    def __call__(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        """Mean P/R/F1; an empty prediction scores 0 (bert-score itself crashes on '' under transformers 5)."""
        keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
        totals = [0.0, 0.0, 0.0]
        if keep:
            scores = self._scores([predictions[i] for i in keep], [references[i] for i in keep])
            # cosine similarities of identical texts come out a few ulp above 1: clip into [0, 1]
            totals = scores.double().clamp(0.0, 1.0).sum(dim=0).tolist()
        n = len(predictions)
        return {"bertscore_precision": totals[0] / n, "bertscore_recall": totals[1] / n, "bertscore": totals[2] / n}
