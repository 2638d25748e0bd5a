"""rule plot_loss: one run's log history (the folder of its meta.json input) -> the rule's loss.png."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.plots import plot_run_loss  # noqa: E402

run_dir = Path(snakemake.input.meta).parent  # noqa: F821
out = plot_run_loss(run_dir, snakemake.output[0], title=snakemake.wildcards.run)  # noqa: F821
print(f"wrote {out}", file=sys.stderr)
