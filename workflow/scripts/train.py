"""rule train: results/<run>/config.yaml -> checkpoint/ + meta.json (resumes from resume/)."""

import os
import sys

# Compute nodes are offline: everything was prefetched into the HF cache by rule prefetch.
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
sys.stderr = sys.stdout = open(snakemake.log[0], "a", buffering=1)  # noqa: F821 - injected; "a": keep retries

from ledsweep.cli import train_main  # noqa: E402

args = ["--config", snakemake.input.config, "--stage", "train", "--overwrite", "--threads", str(snakemake.threads)]  # noqa: F821
sys.exit(train_main(args))
