"""rule run_config: write results/<run>/config.yaml from the resolved config (a param)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 - `snakemake` is injected

from ledsweep.config import dump_yaml, from_dict  # noqa: E402
from ledsweep.runfolder import atomic_write_text  # noqa: E402

cfg = from_dict(snakemake.params.config, source=snakemake.output[0])  # noqa: F821
atomic_write_text(snakemake.output[0], dump_yaml(cfg.to_dict()))  # noqa: F821
print(f"wrote {snakemake.output[0]} (config_sha256 of run {cfg.run_name})", file=sys.stderr)  # noqa: F821
