"""rule evaluate: checkpoint/ + prepared test split -> predictions.jsonl + summary.json (written last)."""

import sys

from ledsweep.jobs import evaluate_job

sys.exit(evaluate_job(snakemake))  # noqa: F821 - `snakemake` is injected
