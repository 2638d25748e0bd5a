#!/usr/bin/env python
"""See a sweep in the terminal: its runs ranked by a metric, best row marked; works mid-sweep.

    python scripts/compare.py --sweep demo                      # sorted by the sweep's primary metric
    python scripts/compare.py --sweep demo --sort loss --top 3
    python scripts/compare.py --sweep demo --format csv | column -s, -t    # csv, markdown, json for pipes

The same rows and statuses as scripts/aggregate.py (ledsweep.compare), plus a `best` marker column (and
bold when stdout is a terminal). Only a `completed` run can be best (not a `modified` or `failed` one).
--format json is strict JSON.
"""

import sys

from ledsweep.compare import main

if __name__ == "__main__":
    sys.exit(main(compare=True))
