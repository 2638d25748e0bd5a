"""rule plot_metric: a sweep's runs -> results/sweeps/{sweep}/{metric}_vs_{key}.png."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.plots import metric_plot_job  # noqa: E402

w = sm.wildcards
metric_plot_job(sm.config, w.sweep, sm.params.results, w.metric, w.key, sm.output[0])
