"""rule mlflow: a sweep's run folders -> its MLflow experiment + mlflow.json."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.tracking import mlflow_job  # noqa: E402

mlflow_job(sm.config, sm.wildcards.sweep, sm.input.summaries, sm.output[0])
