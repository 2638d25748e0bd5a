#!/usr/bin/env python
"""See a sweep in the terminal: its runs ranked by a metric, best row marked; works mid-sweep.

    python scripts/compare.py --sweep demo                      # sorted by the sweep's primary metric
    python scripts/compare.py --sweep demo --sort loss --top 3
    python scripts/compare.py --sweep demo --format csv | column -s, -t    # csv, markdown, json for pipes

A thin layer over ledsweep.aggregate (collect, sort_rows, by_config, render, to_csv): the same rows and
statuses as scripts/aggregate.py, plus a `best` marker column (and bold when stdout is a terminal). Only a
`completed` run can be best (not a `modified` or `failed` one). --format json is strict JSON.
"""

import argparse
import os
import sys

import _bootstrap  # noqa: F401  (puts src/ on sys.path in a plain checkout)

from ledsweep.aggregate import (
    STAT_SUFFIXES,
    add_sweep_arguments,
    best_run,
    by_config,
    collect,
    columns,
    counts_line,
    display_columns,
    dumps_json,
    group_keys,
    json_rows,
    load_sweep,
    metric_names,
    render,
    sort_metric,
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
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="bold best row in table format (auto: when stdout is a terminal and NO_COLOR is unset)",
    )
    args = p.parse_args(argv)
    if args.top is not None and args.top < 1:
        p.error("--top must be at least 1")
    try:
        sweep = load_sweep(args)
        metric = sort_metric(args, sweep)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    all_rows = sort_rows(collect(args.results, sweep), metric)
    counts = status_counts(all_rows)
    best = best_run(all_rows)
    rows = [dict(r, best="*" if r["run_name"] == best else "") for r in all_rows][: args.top]
    groups = sort_rows(by_config(all_rows, sweep), metric, key=f"{metric}_mean")[: args.top]
    summary = counts_line(all_rows, counts)

    if args.format == "csv":
        sys.stdout.write(to_csv(rows, ["best", *columns(sweep)]))
        print(summary, file=sys.stderr)
        return 0
    if args.format == "json":
        print(
            dumps_json({"sweep": sweep.name, "sort": metric, "best": best, "counts": counts, "runs": json_rows(rows)})
        )
        return 0
    md = args.format == "markdown"
    color = not md and (
        args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    )
    shown = f", top {len(rows)}" if args.top else ""
    print(f"sweep {sweep.name}: {len(all_rows)} runs, sorted by {metric}{shown}; * = best\n")
    names = metric_names(sweep)
    lines = render(rows, ["best", *display_columns(sweep)], md, names).split("\n")
    if color and best and rows:  # rows[0] is the best run: line 2 (after header and rule)
        lines[2] = BOLD + lines[2] + RESET
    print("\n".join(lines))
    if "seed" in sweep.keys:
        stats = [f"{metric}_{s}" for s in STAT_SUFFIXES]
        print("\nby config (seeds pooled; ci95 = Student t half-width):\n")
        print(render(groups, [*group_keys(sweep), "n", "n_expected", *stats], md, names))
    print(f"\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
