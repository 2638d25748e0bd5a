"""rule evaluate: checkpoint/ -> predictions.jsonl + summary.json (written last)."""

import os
import sys

os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.cli import train_main  # noqa: E402

args = ["--config", snakemake.input.config, "--stage", "evaluate", "--overwrite", "--threads", str(snakemake.threads)]  # noqa: F821
sys.exit(train_main(args))
