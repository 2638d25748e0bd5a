"""rule train_rung: train a run to one rung's step (resuming) and score its validation split."""

import sys

from ledsweep.jobs import train_rung_job

sm = snakemake  # noqa: F821 - `snakemake` is injected
resources = dict(sm.resources.items())
step = int(sm.wildcards.step)
sys.exit(
    train_rung_job(
        sm.params.config, sm.output[0], step, sm.params.trained, sm.input.prepared, sm.log[0], sm.threads, resources
    )
)
