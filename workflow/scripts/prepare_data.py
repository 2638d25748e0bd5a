"""rule prepare_data: a sweep's data settings -> results/prepared/<key>/ (tokenized once, shared by runs)."""

import sys

from ledsweep.jobs import prepare_data_job

sys.exit(prepare_data_job(snakemake))  # noqa: F821 - `snakemake` is injected
