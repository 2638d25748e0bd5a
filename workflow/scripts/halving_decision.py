"""checkpoint halving_decision: the rung results of the runs that entered -> who goes on."""

import sys

from ledsweep.halving import decision_job

sys.exit(decision_job(snakemake))  # noqa: F821 - `snakemake` is injected
