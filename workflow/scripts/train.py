"""rule train: training keys (params) + prepared data -> results/<run>/trained/ (resumes from trained/resume/).
A run that successive halving stopped at a rung gets its rung checkpoint instead (ledsweep.halving)."""

import sys

from ledsweep.halving import train_or_stop_job

sys.exit(train_or_stop_job(snakemake))  # noqa: F821 - `snakemake` is injected
