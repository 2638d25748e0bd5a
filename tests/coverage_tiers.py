"""Line coverage of src/ledsweep by the test tiers (make test, make test-all): one table, and a check.

    python tests/coverage_tiers.py --fast .coverage-fast [--slow .coverage-slow] [--check]

Each tier writes one data file per process (`parallel = true`: pytest, its xdist workers, every script,
Snakemake job and torchrun rank they start); they are combined here into `<prefix>` per tier and `.coverage`
for both. The table has each module's statements and its coverage by the fast tier (and by the whole suite).
--check fails (exit 1) when a module is covered by the slow tier alone: its fast-tier coverage is below
MIN_FAST_SHARE of its full-suite coverage, or below MIN_FAST_PERCENT.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from coverage import Coverage

SRC = Path(__file__).resolve().parents[1] / "src" / "ledsweep"
MIN_FAST_PERCENT = 25.0  # every module is exercised by the fast tier, not merely imported
MIN_FAST_SHARE = 0.5  # ... for at least half of what the full suite covers of it


def combine(prefix: str) -> Coverage:
    """The per-process files `<prefix>.*` combined into one data file `<prefix>` (and removed)."""
    paths = sorted(glob.glob(f"{prefix}.*"))
    cov = Coverage(data_file=prefix)
    cov.combine(data_paths=paths, strict=True)
    cov.save()
    return cov


def percents(cov: Coverage) -> dict[str, tuple[int, float]]:
    """module file name -> (statements, percent of them run) for every module of src/ledsweep."""
    out = {}
    for path in sorted(SRC.glob("*.py")):
        _, statements, _, missing, _ = cov.analysis2(str(path))
        if statements:
            out[path.name] = (len(statements), 100.0 * (len(statements) - len(missing)) / len(statements))
    return out


def total(table: dict[str, tuple[int, float]]) -> float:
    stmts = sum(n for n, _ in table.values())
    return sum(n * p for n, p in table.values()) / stmts


def both(fast: str, slow: str) -> Coverage:
    """Both tiers' combined data as `.coverage` (what `coverage report` / `coverage html` read)."""
    cov = Coverage(data_file=".coverage")
    cov.combine(data_paths=[fast, slow], keep=True, strict=True)
    cov.save()
    return cov


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", required=True, help="data file prefix of the fast tier (make test)")
    ap.add_argument("--slow", help="data file prefix of the slow tier (pytest -m slow)")
    ap.add_argument("--check", action="store_true", help="fail if a module is covered by the slow tier alone")
    args = ap.parse_args()

    fast = percents(combine(args.fast))
    full = None
    if args.slow:
        combine(args.slow)
        full = percents(both(args.fast, args.slow))
    header = f"{'module':<22} {'stmts':>6} {'fast tier':>10}" + (f" {'full suite':>11}" if full else "")
    print(f"\nLine coverage of src/ledsweep (tests/coverage_tiers.py)\n{header}\n{'-' * len(header)}")
    for name, (n, pct) in fast.items():
        print(f"{name:<22} {n:>6} {pct:>9.1f}%" + (f" {full[name][1]:>10.1f}%" if full else ""))
    print(f"{'TOTAL':<22} {sum(n for n, _ in fast.values()):>6} {total(fast):>9.1f}%" + (
        f" {total(full):>10.1f}%" if full else ""))  # fmt: skip
    if not args.check:
        return 0
    bad = [
        f"{name}: fast tier {pct:.1f}%, full suite {full[name][1]:.1f}%"
        for name, (_, pct) in fast.items()
        if pct < MIN_FAST_PERCENT or (full and pct < MIN_FAST_SHARE * full[name][1])
    ]
    for line in bad:
        print(f"error: covered by the slow tier alone: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
