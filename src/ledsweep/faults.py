"""Fault injection for the reliability tests: `LEDSWEEP_FAULT=<point>[:<step>]` SIGKILLs the process there.

Points: `step:N` (start of step N), `save:N` (checkpoint-N written, not yet marked complete),
`after_save:N` (checkpoint-N complete), `evaluate` (after generation, before metrics are written),
`write:<file name>` (temp file written, not yet renamed into place). Unset in normal use: one env lookup.
"""

import os
import signal


def hit(point: str, step: int | None = None) -> None:
    spec = os.environ.get("LEDSWEEP_FAULT")
    if not spec:
        return
    name, _, at = spec.rpartition(":") if spec.split(":")[-1].isdigit() else (spec, "", "")
    if name == point and (not at or step == int(at)):
        os.kill(os.getpid(), signal.SIGKILL)
