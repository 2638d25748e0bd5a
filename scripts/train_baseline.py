#!/usr/bin/env python
"""Train and evaluate one LED run from one YAML config.

python scripts/train_baseline.py --config config/led_baseline.yaml
python scripts/train_baseline.py --config results/<run>/config.yaml --output-dir /tmp/repro
"""

import sys

from ledsweep import cli

if __name__ == "__main__":
    sys.exit(cli.train_main())
