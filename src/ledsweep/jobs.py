"""What each workflow rule does, given the paths Snakemake hands it (workflow/scripts/*.py call these).

Snakemake owns the paths: a run folder is the folder of the rule's outputs, the prepared data is the
rule's input, the log is the rule's log. The config is read and validated once, here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("ledsweep")


def _to_log(path: str, mode: str = "w") -> None:
    """This process's stdout and stderr go to the rule's log (line-buffered)."""
    sys.stderr = sys.stdout = open(path, mode, buffering=1)  # noqa: SIM115 - for the life of the job


def _offline() -> None:
    """Compute nodes are offline: everything was prefetched into the HF cache by rule prefetch."""
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"


def prepare_data_job(snakemake) -> int:
    """rule prepare_data: a data spec -> results/prepared/<key>/ (tokenized splits + manifest)."""
    _offline()
    _to_log(snakemake.log[0])
    from .cli import setup_logging
    from .config import ConfigError
    from .prepare import prepare_data

    setup_logging()
    try:
        manifest = prepare_data(snakemake.params.spec, snakemake.output[0], num_proc=snakemake.threads)
    except ConfigError as e:
        print(f"error: {e}", file=sys.__stderr__)
        log.error("%s", e)
        return 2
    log.info("prepared data %s in %.1f s: %s", manifest["key"], manifest["seconds"], manifest["rows"])
    return 0


def run_stage_job(snakemake, stage: str) -> int:
    """rule train / evaluate: one stage of one run, in the folder of the rule's outputs."""
    _offline()
    _to_log(snakemake.log[0], "a" if stage == "train" else "w")  # "a": a retried train keeps its history
    from .cli import EXIT_BAD_INPUT, EXIT_FAILED, setup_logging
    from .cli import run_stages
    from .config import ConfigError, load_config
    from .runfolder import RunFolderError

    setup_logging()
    run_dir = Path(snakemake.output[0]).parent
    try:
        cfg = load_config(snakemake.input.config)
        return run_stages(
            cfg, (stage,), overwrite=True, prepared=Path(snakemake.input.prepared), threads=snakemake.threads,
            restart_on_data_change=True, run_dir=run_dir,
        )
    except (ConfigError, RunFolderError) as e:
        log.error("%s", e)
        return EXIT_BAD_INPUT
    except Exception:  # recorded in failure.json and logged by run_stages
        log.exception("run %s failed in %s", run_dir.name, stage)
        return EXIT_FAILED
