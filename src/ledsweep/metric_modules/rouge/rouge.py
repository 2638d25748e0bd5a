"""ROUGE-1/2/L/Lsum F-measures as a Hugging Face `evaluate` metric module, loaded offline by path:

    import evaluate
    from ledsweep import metrics
    rouge = evaluate.load(metrics.module_path("rouge"))
    rouge.compute(predictions=preds, references=refs)                       # per example: 4 lists
    rouge.compute(predictions=preds, references=refs, use_aggregator=True)  # means: summary.json's

One implementation: it calls ledsweep.metrics.rouge_per_example (rouge-score, Porter stemming, one
sentence per line for rougeLsum; `workers` processes), so its numbers are ledsweep's.
"""

import evaluate

from ledsweep import metrics

_DESCRIPTION = (
    "ROUGE F-measures (rouge-score with Porter stemming; rougeLsum on one sentence per line, split after "
    ". ! ?), as ledsweep's summary.json reports them."
)
_CITATION = """@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
}"""
_KWARGS = """
Args:
    predictions: generated summaries (strings).
    references: reference summaries (strings), one per prediction.
    workers: processes to score with (1 = in process); the same numbers whatever it is.
    use_aggregator: False (default): one list of per-example F-measures per ROUGE type;
        True: their means.
Returns:
    {"rouge1": ..., "rouge2": ..., "rougeL": ..., "rougeLsum": ...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Rouge(evaluate.Metric):
    def _info(self):
        return metrics.text_pair_info(
            _DESCRIPTION, _CITATION, _KWARGS, "https://github.com/google-research/google-research/tree/master/rouge"
        )

    def _compute(self, predictions, references, workers=1, use_aggregator=False):
        rows = metrics.rouge_per_example(list(predictions), list(references), workers=workers)
        if use_aggregator:
            return metrics.rouge_mean(rows)
        return {k: [r[k] for r in rows] for k in metrics.ROUGE_TYPES}
