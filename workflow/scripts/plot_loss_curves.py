"""rule plot_loss_curves: a sweep's runs -> loss_curves.png + comparison.html (for the report)."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.plots import loss_curves_job  # noqa: E402

loss_curves_job(sm.config, sm.wildcards.sweep, sm.input.meta, sm.output.curves, sm.output.table)
