#!/usr/bin/env python
"""Audit a finished run: drift since it was made, and a quick or full replay. Nothing in it is written.

    python scripts/verify_run.py results/<run>             # drift check + replay of the first 20 steps
    python scripts/verify_run.py results/<run> --steps 0   # drift check only
    python scripts/verify_run.py results/<run> --full      # replay the whole run (metrics + weights)

Exit status: 0 identical, 1 within tolerance, 2 differs, 3 cannot verify. See docs/reproducibility.md.
"""

import sys

from ledsweep.verify import main

if __name__ == "__main__":
    sys.exit(main())
