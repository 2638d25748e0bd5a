"""rule tensorboard_hparams: a sweep's run folders -> TensorBoard HParams sessions."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.tracking import hparams_job  # noqa: E402

hparams_job(sm.config, sm.wildcards.sweep, sm.input.summaries, sm.output[0])
