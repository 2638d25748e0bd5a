#!/usr/bin/env python
"""See a sweep in the terminal: its runs ranked by a metric, best row marked; works mid-sweep.

    python scripts/compare.py --sweep demo                      # sorted by the sweep's primary metric
    python scripts/compare.py --sweep demo --sort loss --top 3
    python scripts/compare.py --sweep demo --format csv | column -s, -t    # csv, markdown, json for pipes

A thin layer over ledsweep.aggregate (collect, sort_rows, by_config, render, to_csv): the same rows and
statuses as scripts/aggregate.py, plus a `best` marker column (and bold when stdout is a terminal).
"""

import argparse
import json
import os
import sys

import _bootstrap  # noqa: F401  (puts src/ on sys.path in a plain checkout)

from ledsweep.aggregate import (
    SHOWN,
    add_sweep_arguments,
    by_config,
    collect,
    columns,
    counts_line,
    group_keys,
    json_rows,
    load_sweep,
    render,
    sort_rows,
    status_counts,
    to_csv,
)
from ledsweep.config import ConfigError

BOLD, RESET = "\033[1m", "\033[0m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="compare.py", description="Compare the runs of a sweep, best first.")
    add_sweep_arguments(p)
    p.add_argument("--top", type=int, metavar="N", help="show only the N best runs (and configurations)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="bold best row in table format (auto: when stdout is a terminal and NO_COLOR is unset)")
    args = p.parse_args(argv)
    if args.top is not None and args.top < 1:
        p.error("--top must be at least 1")
    try:
        sweep = load_sweep(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    metric = args.sort or sweep.primary_metric
    all_rows = sort_rows(collect(args.results, sweep), metric)
    counts = status_counts(all_rows)
    best = all_rows[0]["run_name"] if all_rows and all_rows[0]["status"] == "completed" else None
    rows = [dict(r, best="*" if r["run_name"] == best else "") for r in all_rows][: args.top]
    groups = sort_rows(by_config(all_rows, sweep), metric, key=f"{metric}_mean")[: args.top]
    summary = counts_line(all_rows, counts)

    if args.format == "csv":
        sys.stdout.write(to_csv(rows, ["best", *columns(sweep)]))
        print(summary, file=sys.stderr)
        return 0
    if args.format == "json":
        print(json.dumps({"sweep": sweep.name, "sort": metric, "best": best, "counts": counts, "runs": json_rows(rows)},
                         indent=2))
        return 0
    md = args.format == "markdown"
    color = not md and (args.color == "always" or (args.color == "auto" and sys.stdout.isatty()
                                                  and not os.environ.get("NO_COLOR")))
    shown = f", top {len(rows)}" if args.top else ""
    print(f"sweep {sweep.name}: {len(all_rows)} runs, sorted by {metric}{shown}; * = best\n")
    lines = render(rows, ["best", "run_name", "status", *sweep.keys, *SHOWN, "reason"], md).split("\n")
    if color and best and rows:  # rows[0] is the best run: line 2 (after header and rule)
        lines[2] = BOLD + lines[2] + RESET
    print("\n".join(lines))
    if "seed" in sweep.keys:
        stats = [f"{metric}_mean", f"{metric}_std", f"{metric}_ci95"]
        print("\nby config (seeds pooled; ci95 = Student t half-width):\n")
        print(render(groups, [*group_keys(sweep), "n", "n_expected", *stats], md))
    print(f"\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
