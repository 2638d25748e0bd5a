"""The failure policy, in one place: the project's exceptions, the exit status each one means, and how a
process reports its outcome (one line on the console, the traceback in the run's log).

Exit statuses: 0 done, 1 failed (a bug or a broken environment), 2 bad input (config, run folder, a layout
that cannot be launched: fix the input, rerun), 143 stopped after a resume checkpoint (rerun to resume).
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("ledsweep")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 143


class ConfigError(ValueError):
    """An invalid config. The message names the file and key and says what was expected."""


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (missing, finished, locked, in the wrong place)."""


class LaunchError(RuntimeError):
    """The resources ask for a layout that cannot be launched here (the message says what is missing)."""


class TrainingInterrupted(RuntimeError):
    """Stopped by SIGTERM/SIGUSR1 after saving a resume checkpoint (Slurm time limit, preemption)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


BAD_INPUT = (ConfigError, RunFolderError, LaunchError)


def exit_code(e: BaseException | None) -> int:
    """The exit status that an outcome means (None: success)."""
    if e is None:
        return EXIT_OK
    if isinstance(e, TrainingInterrupted):
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if isinstance(e, BAD_INPUT) else EXIT_FAILED


def one_line(message: object) -> str:
    """A message as one line: multi-line problem lists joined with '; '."""
    return "; ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname).1s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr
    )
    import transformers  # lazily: `--help` and config errors need no transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def log_to(path: str, mode: str = "w") -> None:
    """This process's stdout and stderr go to a rule's log (line-buffered), then logging starts."""
    sys.stderr = sys.stdout = open(path, mode, buffering=1)  # noqa: SIM115 - for the life of the job
    setup_logging()


def report_unexpected(e: BaseException) -> None:
    """A failure outside any run folder (so no run log): the traceback on stderr, then one line naming it."""
    traceback.print_exception(e, file=sys.stderr)
    print(f"error: {one_line(f'{type(e).__name__}: {e}')}", file=sys.stderr)


@dataclass
class Outcome:
    rc: int = EXIT_OK


@contextmanager
def job_outcome(what: str, on_failure: Callable[[str], None] | None = None) -> Iterator[Outcome]:
    """A job's exit status from how its block ended (`exit_code`), each ending logged once: a stop as a
    warning, bad input as one error line, anything else with its traceback after `on_failure(reason)` has
    recorded it (a run's failure.json). The block may set `outcome.rc` itself (a status from a child)."""
    outcome = Outcome()
    try:
        yield outcome
    except Exception as e:
        outcome.rc = exit_code(e)
        if outcome.rc == EXIT_INTERRUPTED:
            log.warning("%s", e)
        elif outcome.rc == EXIT_BAD_INPUT:
            log.error("%s", e)
        else:
            if on_failure:
                on_failure(f"{type(e).__name__}: {e}")
            log.exception("%s failed", what)
