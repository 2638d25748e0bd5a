#!/usr/bin/env python
"""Summarize documents with a run's saved checkpoint.

python scripts/summarize.py --checkpoint results/<run>/checkpoint --input docs.jsonl
"""

import sys

from ledsweep import cli

if __name__ == "__main__":
    sys.exit(cli.summarize_main())
