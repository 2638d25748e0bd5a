"""rule evaluate: checkpoint/ + prepared test split -> predictions.jsonl + summary.json (written last)."""

import sys

from ledsweep.jobs import run_stage_job

sys.exit(run_stage_job(snakemake, "evaluate"))  # noqa: F821 - `snakemake` is injected
