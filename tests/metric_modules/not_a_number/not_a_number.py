"""A test metric module that returns NaN (issue 21.5): a run that evaluates it fails, it writes no summary.json."""

import datasets
import evaluate


class NotANumber(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Always NaN.",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return {"not_a_number": float("nan")}
