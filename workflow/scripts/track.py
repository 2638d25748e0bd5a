"""rule track: a sweep's run folders -> its MLflow experiment (mlflow.json) + TensorBoard HParams sessions."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.tracking import track_job  # noqa: E402

track_job(sm.config, sm.wildcards.sweep, sm.input.summaries, sm.output.mlflow, sm.output.hparams)
