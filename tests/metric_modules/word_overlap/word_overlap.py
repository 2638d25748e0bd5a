"""A test metric module (no download): the mean fraction of reference words that the prediction has.

tests/test_evaluate_metrics.py names it in `evaluation.extra_metrics` by path, as a user would name a
metric module of their own.
"""

import datasets
import evaluate


class WordOverlap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Mean fraction of each reference's distinct words found in its prediction.",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        fractions = []
        for pred, ref in zip(predictions, references):
            words = set(ref.lower().split())
            fractions.append(len(words & set(pred.lower().split())) / len(words) if words else 0.0)
        # two numbers: the one under the metric's own name is the metric
        return {"word_overlap": sum(fractions) / len(fractions), "n": len(fractions)}
