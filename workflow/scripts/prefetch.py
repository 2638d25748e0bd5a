"""rule prefetch: download the sweep's hub models, datasets and metrics into the HF cache (no-op for local paths)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.prefetch import prefetch  # noqa: E402
from ledsweep.runfolder import write_json  # noqa: E402

write_json(snakemake.output[0], prefetch(snakemake.params.hub))  # noqa: F821
