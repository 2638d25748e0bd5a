"""checkpoint halving_decision: the rung results of the runs that entered -> who goes on."""

import sys

from ledsweep.jobs import decision_job

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.exit(
    decision_job(list(sm.input), sm.params.halving, sm.wildcards.sweep, int(sm.wildcards.rung), sm.output[0], sm.log[0])
)
