"""rule train: results/<run>/config.yaml + prepared data -> checkpoint/ + meta.json (resumes from resume/)."""

import sys

from ledsweep.jobs import run_stage_job

sys.exit(run_stage_job(snakemake, "train"))  # noqa: F821 - `snakemake` is injected
