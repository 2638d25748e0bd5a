"""rule evaluate: checkpoint/ + prepared test split -> predictions.jsonl + summary.json (written last)."""

import sys
from pathlib import Path

from ledsweep.jobs import evaluate_job

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.exit(evaluate_job(sm.input.config, str(Path(sm.output.summary).parent), sm.input.prepared, sm.log[0], sm.threads))
