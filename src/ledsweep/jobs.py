"""What each workflow rule does, given the paths Snakemake hands it (workflow/scripts/*.py call these).

Snakemake owns the paths: a run folder is the folder of the rule's outputs, the prepared data is the
rule's input, the log is the rule's log. The config is read and validated once, here.
"""

from __future__ import annotations

import json
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
    from .data import failure_path
    from .prepare import prepare_data
    from .runfolder import now_iso, write_json

    setup_logging()
    out = Path(snakemake.output[0])
    failure = failure_path(out)
    try:
        manifest = prepare_data(snakemake.params.spec, out, num_proc=snakemake.threads)
    except Exception as e:  # every run of this data fails: say why where the tables look (data.failure_path)
        bad_input = isinstance(e, ConfigError)
        write_json(
            failure,
            {
                "status": "failed",
                "stage": "prepare_data",
                "reason": str(e) if bad_input else f"{type(e).__name__}: {e}",
                "log": snakemake.log[0],
                "time": now_iso(),
            },
        )
        if bad_input:
            log.error("%s", e)
            return 2
        log.exception("prepare_data %s failed", out.name)
        return 1
    failure.unlink(missing_ok=True)
    log.info("prepared data %s in %.1f s: %s", manifest["key"], manifest["seconds"], manifest["rows"])
    return 0


def train_job(snakemake) -> int:
    """rule train: the training keys of a run (params) + prepared data -> results/<run>/trained/."""
    return train_in_job(snakemake)


def train_in_job(
    snakemake, stop_after: int | None = None, trained_dir: Path | None = None, config: dict | None = None
) -> int:
    """Everything rule train does: the training keys of a run (params) + prepared data -> results/<run>/trained/.

    Only the first run of each group of runs that differ in decoding keys alone is trained; rule
    link_checkpoint gives every run of the group (this one too) its own checkpoint/ and meta.json.
    Resume state lives in trained/resume/ (not an output: a retried job resumes from it).
    `stop_after`: checkpoint and stop after that optimizer step (returns EXIT_INTERRUPTED, 143).
    `trained_dir`, `config`: for rule train_rung (successive halving), whose output is not trained/ and whose
    params are the whole run config: the folder and the training keys (default: the rule's output folder
    and params).

    The rule's resources choose the processes (`distributed.layout_from_resources`: gpu/gres, nodes,
    ddp_procs): one process trains here; several are started by torchrun (`_train_ranks`)."""
    _offline()
    _to_log(snakemake.log[0], "a")  # a retried job keeps the history of its attempts
    from .cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, setup_logging
    from .config import ConfigError, dump_yaml, training_config
    from .distributed import STOP_FILE, LaunchError, layout_from_resources
    from .runfolder import RunFolder, RunFolderError, RunLock, atomic_write_text
    from .train import TrainingInterrupted, discard_other_training, train

    setup_logging()
    trained = RunFolder(trained_dir or Path(snakemake.output.meta).parent)
    config = snakemake.params.config if config is None else config
    try:
        cfg = training_config(config, source=f"{trained.path}: training config")
        layout = layout_from_resources(snakemake.resources)
        trained.path.mkdir(parents=True, exist_ok=True)
        with RunLock(trained.path.parent, what="train"):  # the run folder's lock, as train_baseline.py takes it
            trained.remove_temp_files()
            (trained.path / STOP_FILE).unlink(missing_ok=True)  # a stop request of an earlier attempt
            discard_other_training(trained, cfg)
            atomic_write_text(trained.path / "train_config.yaml", dump_yaml(config))
            if layout.distributed:
                return _train_ranks(snakemake, trained, layout, stop_after, config)
            train(
                cfg,
                trained,
                Path(snakemake.input.prepared),
                snakemake.threads,
                stop_after,
                restart_on_data_change=True,
                decoding=False,
            )
    except TrainingInterrupted as e:
        log.warning("%s", e)
        return EXIT_INTERRUPTED
    except (ConfigError, RunFolderError, LaunchError) as e:
        log.error("%s", e)
        return EXIT_BAD_INPUT
    except Exception as e:
        RunFolder(trained.path.parent).record_failure("train", f"{type(e).__name__}: {e}")
        log.exception("run %s failed in train", trained.path.parent.name)
        return EXIT_FAILED
    return 0


def _train_ranks(snakemake, trained, layout, stop_after: int | None, config: dict) -> int:
    """Train with torchrun: `layout.nproc_per_node` ranks on this node (`--standalone`), or one `srun` task per
    node of the job, each a torchrun joining a c10d rendezvous on the job's first node. Called under the
    run lock. The ranks read a spec file; rank 0 writes the outcome (torchrun does not keep exit codes).
    SIGTERM/SIGUSR1 here become a stop file that every rank checks after each step (torchrun would give
    its workers only 30 s to save after a signal)."""
    import signal
    import subprocess

    from .cli import EXIT_FAILED
    from .distributed import RESULT_FILE, STOP_FILE, LaunchError, launch_command, slurm_first_node
    from .runfolder import RunFolder, atomic_write_text, write_json

    res = snakemake.resources
    job_id = os.environ.get("SLURM_JOB_ID")
    first_node = None
    if layout.nnodes > 1:
        if res.get("mpi") is None:
            raise LaunchError(
                f"train: nodes={layout.nnodes} needs the resources mpi (e.g. 'srun'), tasks={layout.nnodes} "
                "and tasks_per_gpu=0, so that the job's batch step starts one torchrun per node "
                "(see profiles/default/config.yaml)"
            )
        first_node = slurm_first_node(job_id)
    spec = trained.path / ".ddp-spec.json"
    write_json(
        spec,
        {
            "config": config,
            "run_dir": str(trained.path.resolve()),
            "prepared": str(Path(snakemake.input.prepared).resolve()),
            "threads": max(1, (snakemake.threads or 1) // layout.nproc_per_node),
            "stop_after": stop_after,
            "restart_on_data_change": True,
        },
    )
    result = trained.path / RESULT_FILE
    result.unlink(missing_ok=True)
    cmd = launch_command(layout, spec, job_id, first_node)
    log.info(
        "train: %d processes (%d node(s) x %d): %s",
        layout.world_size,
        layout.nnodes,
        layout.nproc_per_node,
        " ".join(cmd),
    )

    def stop(signum, frame):
        name = signal.Signals(signum).name
        log.warning("%s received: every rank saves a resume checkpoint after this step", name)
        atomic_write_text(trained.path / STOP_FILE, f"{name}\n")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(cmd, stdout=sys.stdout, stderr=sys.stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        rc = proc.wait()
    except OSError as e:
        raise LaunchError(f"train: cannot start {cmd[0]}: {e}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        outcome = json.loads(result.read_text())["rc"]
    except (OSError, ValueError, KeyError):
        reason = f"torchrun exited {rc} and rank 0 reported no outcome (a rank crashed or was killed; see the log)"
        RunFolder(trained.path.parent).record_failure("train", reason)
        log.error("run %s: %s", trained.path.parent.name, reason)
        return EXIT_FAILED
    if outcome == 0 and rc != 0:
        log.warning("torchrun exited %d after rank 0 finished training", rc)
    return outcome


SHARED_FILES = ("log_history.jsonl", "step_losses.jsonl", "requirements.txt", "git.diff")


def link_checkpoint(
    trained_checkpoint: str, trained_meta: str, checkpoint: str, meta: str, config: dict, log_path: str
) -> None:
    """rule link_checkpoint (a `run:` block): a run's checkpoint/ and meta.json from the training it shares.

    Weights and tokenizer files are hard links to the trained files (no bytes duplicated; a copy where
    links are impossible); generation_config.json is this run's own decoding; meta.json is the training's
    with this run's name, `trained_by` and the hash of this run's whole config. No torch import."""
    import json
    import shutil

    from .config import config_sha256, train_config_sha256
    from .runfolder import atomic_write_text, text_sha256, write_json
    from .sweep import run_config_text

    src, out = Path(trained_checkpoint), Path(checkpoint)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in sorted(src.iterdir()):
        if path.name != "generation_config.json" and not path.name.startswith("."):  # not Snakemake's marker
            _link_or_copy(path, tmp / path.name)
    gen = json.loads((src / "generation_config.json").read_text())
    g = config["generation"]
    gen.update(
        num_beams=g["num_beams"],
        max_new_tokens=g["max_new_tokens"],
        length_penalty=g["length_penalty"],
        no_repeat_ngram_size=g["no_repeat_ngram_size"],
    )
    gen.pop("max_length", None)
    atomic_write_text(tmp / "generation_config.json", json.dumps(gen, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    run_dir, trained_dir = out.parent, Path(trained_meta).parent
    for name in SHARED_FILES:  # what the loss plots and verify_run.py read, shared the same way
        if (trained_dir / name).is_file():
            (run_dir / name).unlink(missing_ok=True)
            _link_or_copy(trained_dir / name, run_dir / name)
    record = json.loads(Path(trained_meta).read_text())
    if record.get("train_config_sha256") != train_config_sha256(config):
        raise ValueError(f"{trained_meta}: trained with other training keys than {run_dir.name}'s config")
    record.update(
        run_name=config["run_name"],
        config_sha256=config_sha256(config),
        config_yaml_sha256=text_sha256(run_config_text(config)),  # the bytes rule run_config wrote
        shared_checkpoint=record["trained_by"] != config["run_name"],
    )
    write_json(meta, record)
    with open(log_path, "w") as f:
        print(f"{out}: linked from {src} (trained by {record['trained_by']}); decoding: {g}", file=f)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy
        import shutil

        shutil.copy2(src, dst)


def evaluate_job(snakemake) -> int:
    """rule evaluate: one run's checkpoint/ + prepared test split -> predictions.jsonl + summary.json."""
    _offline()
    _to_log(snakemake.log[0])
    from .cli import EXIT_BAD_INPUT, EXIT_FAILED, run_stages, setup_logging
    from .config import ConfigError, load_config
    from .runfolder import RunFolderError

    setup_logging()
    run_dir = Path(snakemake.output.summary).parent
    try:
        cfg = load_config(snakemake.input.config)
        return run_stages(
            cfg,
            ("evaluate",),
            overwrite=True,
            prepared=Path(snakemake.input.prepared),
            threads=snakemake.threads,
            run_dir=run_dir,
        )
    except (ConfigError, RunFolderError) as e:
        log.error("%s", e)
        return EXIT_BAD_INPUT
    except Exception:  # recorded in failure.json and logged by run_stages
        log.exception("run %s failed in evaluate", run_dir.name)
        return EXIT_FAILED
