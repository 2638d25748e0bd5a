"""rule aggregate: every run of a sweep -> comparison.csv + comparison_by_config.csv."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.aggregate import write_tables  # noqa: E402
from ledsweep.sweep import load_sweeps  # noqa: E402

sweep = load_sweeps(snakemake.config, only=[snakemake.wildcards.sweep])[snakemake.wildcards.sweep]  # noqa: F821
paths = write_tables("results", sweep, Path(snakemake.output.comparison).parent)  # noqa: F821
print(f"sweep {sweep.name}: comparison table -> {paths[0]}", file=sys.stderr)
print(f"sweep {sweep.name}: comparison table -> {paths[0]}")
