"""rule plot_loss_curves: a sweep's runs -> loss_curves.png + comparison.html (for the report)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.aggregate import collect, results_folder  # noqa: E402
from ledsweep.plots import comparison_html, plot_loss_curves  # noqa: E402
from ledsweep.runfolder import atomic_write_text  # noqa: E402
from ledsweep.sweep import load_sweeps  # noqa: E402

name = snakemake.wildcards.sweep  # noqa: F821
sweep = load_sweeps(snakemake.config, only=[name])[name]  # noqa: F821
results = results_folder(snakemake.input.meta)  # noqa: F821
rows = collect(results, sweep)
print(f"wrote {plot_loss_curves(results, sweep, snakemake.output.curves, rows=rows)}", file=sys.stderr)  # noqa: F821
atomic_write_text(snakemake.output.table, comparison_html(rows, sweep))  # noqa: F821
print(f"wrote {snakemake.output.table}", file=sys.stderr)  # noqa: F821
