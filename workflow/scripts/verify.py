"""rule verify: every run of a sweep -> verify.csv (drift check + quick replay; the reports go to the log)."""

import sys
from pathlib import Path

sm = snakemake  # noqa: F821 - `snakemake` is injected
sys.stderr = open(sm.log[0], "w", buffering=1)

from ledsweep.verify import verify_sweep  # noqa: E402

verify_sweep([str(Path(s).parent) for s in sm.input], sm.params.steps, sm.output[0])
