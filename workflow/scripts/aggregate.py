"""rule aggregate: every run of a sweep -> comparison.csv + comparison_by_config.csv."""

import sys

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.aggregate import aggregate_job  # noqa: E402

aggregate_job(sm.config, sm.wildcards.sweep, sm.input.summaries, sm.output.comparison, sm.output.by_config)
