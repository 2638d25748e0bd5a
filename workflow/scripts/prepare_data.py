"""rule prepare_data: a sweep's data settings -> results/prepared/<key>/ (tokenized once, shared by runs)."""

import sys

from ledsweep.jobs import prepare_data_job

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.exit(prepare_data_job(sm.params.spec, sm.output[0], sm.log[0], sm.threads))
