"""rule plot_metric: a sweep's runs -> the rule's {metric}_vs_{key}.png."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.plots import plot_metric_vs_key  # noqa: E402
from ledsweep.sweep import load_sweeps  # noqa: E402

w = snakemake.wildcards  # noqa: F821
sweep = load_sweeps(snakemake.config, only=[w.sweep])[w.sweep]  # noqa: F821
out = plot_metric_vs_key(snakemake.params.results, sweep, w.metric, w.key, snakemake.output[0])  # noqa: F821
print(f"wrote {out}", file=sys.stderr)
