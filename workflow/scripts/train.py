"""rule train: training keys (params) + prepared data -> results/<run>/trained/ (resumes from trained/resume/)."""

import sys

from ledsweep.jobs import train_job

sys.exit(train_job(snakemake))  # noqa: F821 - `snakemake` is injected
