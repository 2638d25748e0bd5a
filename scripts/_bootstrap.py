"""Make `src/ledsweep` importable when the scripts run from a checkout without `pip install -e .`."""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if SRC.is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def ledsweep_cli():
    from ledsweep import cli

    return cli
