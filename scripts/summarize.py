#!/usr/bin/env python
"""Summarize documents with a run's saved checkpoint.

python scripts/summarize.py --checkpoint results/<run>/checkpoint --input docs.jsonl
"""

import sys

from _bootstrap import ledsweep_cli

if __name__ == "__main__":
    sys.exit(ledsweep_cli().summarize_main())
