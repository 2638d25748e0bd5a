"""rule train: training keys (params) + prepared data -> results/<run>/trained/ (resumes from trained/resume/).
A run that successive halving stopped at a rung gets its rung checkpoint instead (ledsweep.halving)."""

import sys
from pathlib import Path

from ledsweep.jobs import train_job

sm = snakemake  # noqa: F821 - `snakemake` is injected
trained = str(Path(sm.output.meta).parent)
resources = dict(sm.resources.items())
sys.exit(
    train_job(
        sm.params.config, trained, sm.input.prepared, sm.log[0], sm.threads, resources, sm.input.get("decisions", [])
    )
)
