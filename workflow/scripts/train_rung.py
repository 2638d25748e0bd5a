"""rule train_rung: train a run to one rung's step (resuming) and score its validation split."""

import sys

from ledsweep.halving import train_rung_job

sys.exit(train_rung_job(snakemake))  # noqa: F821 - `snakemake` is injected
