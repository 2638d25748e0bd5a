"""rule aggregate: every run of a sweep -> comparison.csv + comparison_by_config.csv."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.aggregate import collect, results_folder, write_table_files  # noqa: E402
from ledsweep.sweep import load_sweeps  # noqa: E402


def say(message: str) -> None:
    """To the terminal and to the rule's log."""
    print(message)
    print(message, file=sys.stderr)


sweep = load_sweeps(snakemake.config, only=[snakemake.wildcards.sweep])[snakemake.wildcards.sweep]  # noqa: F821
rows = collect(results_folder(snakemake.input.summaries), sweep)  # noqa: F821
out = snakemake.output  # noqa: F821
paths = write_table_files(rows, sweep, out.comparison, out.by_config, sweep.primary_metric)
for row in rows:  # loudly: their metrics are not a clean result (kept out of by-config statistics and "best")
    if row["status"] == "modified":
        say(f"WARNING: run {row['run_name']} is modified: {row['reason']}")
say(f"sweep {sweep.name}: comparison table -> {paths[0]}")
