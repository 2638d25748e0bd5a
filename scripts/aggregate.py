#!/usr/bin/env python
"""Compare the runs of a sweep: one table of what exists now (works mid-sweep), plus status counts.

python scripts/aggregate.py --sweep demo
python scripts/aggregate.py --sweep demo --sort loss --format markdown
python scripts/aggregate.py --sweep demo --write          # -> results/sweeps/demo/comparison*.csv
"""

import sys

from ledsweep.compare import main

if __name__ == "__main__":
    sys.exit(main())
