"""TensorBoard event files of a run, written into its run folder: `tensorboard --logdir results` shows every run
of every sweep under its run name. Training writes its curves live (`callbacks.TensorBoardCurves`), evaluation
the final metrics; a sweep's tracking rule writes its HParams table (`hparams`). The run folder stays the record:
these files are a view of it.

Training from step N opens its writer with `purge_step=N + 1`: TensorBoard then drops every event of the folder
at a later step from earlier files, so a run resumed from its step-N checkpoint continues its curve without the
steps logged after that checkpoint twice, and a run started over (N = 0) replaces its old curve.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

# Trainer log keys -> TensorBoard tags
TRAIN_TAGS = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "train_tokens_per_second": "train/tokens_per_second",
    "eval_loss": "eval/loss",
}
FINAL_PREFIX = "test/"  # the final metrics of summary.json, at the last training step
EVENTS_GLOB = "events.out.tfevents.*"
FINAL_SUFFIX = ".final"


def writer(folder: str | Path, purge_step: int | None = None):
    """A SummaryWriter into `folder` (flushed every 5 s while training; `purge_step`: see the module)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step, flush_secs=5)


def scalars(logs: dict, tags: dict[str, str]) -> dict[str, float]:
    """The finite numbers of `logs` under their TensorBoard tags."""
    out = {}
    for key, tag in tags.items():
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[tag] = float(value)
    return out


def write_final_metrics(folder: str | Path, metrics: dict, step: int) -> None:
    """summary.json's metrics as `test/<metric>` at the run's last training step, in a file of their own
    (`*.final`), which a re-evaluation replaces."""
    from torch.utils.tensorboard import SummaryWriter

    for old in Path(folder).glob(EVENTS_GLOB + FINAL_SUFFIX):
        old.unlink(missing_ok=True)
    with SummaryWriter(str(folder), filename_suffix=FINAL_SUFFIX) as w:
        for tag, value in scalars(metrics, {k: FINAL_PREFIX + k for k in metrics}).items():
            w.add_scalar(tag, value, step)


def remove(folder: str | Path) -> None:
    """The run's event files (a run redone with --overwrite starts a new curve)."""
    for path in Path(folder).glob(EVENTS_GLOB):
        path.unlink(missing_ok=True)


def hparams(folder: str | Path, params: dict, metrics: dict) -> None:
    """One run's HParams session (its swept keys against its final metrics) in `folder`, made anew."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    shutil.rmtree(folder, ignore_errors=True)
    values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
    finals = scalars(metrics, {k: FINAL_PREFIX + k for k in metrics})
    _, session_start, session_end = hparams_summary(values, finals)
    with writer(folder) as w:  # no experiment summary: TensorBoard then builds one from every session's keys
        for summary in (session_start, session_end):
            w.file_writer.add_summary(summary)
        for tag, value in finals.items():
            w.add_scalar(tag, value, 0)
