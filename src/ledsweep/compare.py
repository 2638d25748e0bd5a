"""The command line of scripts/aggregate.py and scripts/compare.py: one parser, one entry function.

    python scripts/aggregate.py --sweep demo [--sort loss] [--format markdown] [--write [DIR]]
    python scripts/compare.py --sweep demo [--top 3] [--color always]      # + a `best` marker column

Both print the same rows and statuses (ledsweep.aggregate); compare.py adds the `best` column (bold when
stdout is a terminal) and --top, aggregate.py adds --write. Only a `completed` run can be best. --format
json is strict JSON.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import metrics_registry as registry
from .aggregate import (
    STAT_SUFFIXES,
    best_run,
    by_config,
    collect,
    columns,
    counts_line,
    display_columns,
    dumps_json,
    group_keys,
    json_rows,
    metric_names,
    render,
    sort_rows,
    status_counts,
    to_csv,
    write_tables,
)
from .config import ConfigError, load_yaml
from .sweep import Sweep, load_sweeps

BOLD, RESET = "\033[1m", "\033[0m"


def parser(compare: bool, prog: str | None = None) -> argparse.ArgumentParser:
    """--sweep/--config/--results/--sort/--format, then --top/--color (compare.py) or --write (aggregate.py)."""
    if compare:
        p = argparse.ArgumentParser(prog=prog or "compare.py", description="Compare the runs of a sweep, best first.")
    else:
        p = argparse.ArgumentParser(
            prog=prog or "aggregate.py", description="Compare the runs of a sweep (works mid-sweep)."
        )
    p.add_argument("--sweep", required=True, help="sweep name (a key of `sweeps:` in the workflow config)")
    p.add_argument("--config", default="config/config.yaml", help="workflow config YAML (default: %(default)s)")
    p.add_argument("--results", default="results", help="folder holding the run folders (default: %(default)s)")
    p.add_argument(
        "--sort",
        metavar="METRIC",
        help=f"metric to rank by: {', '.join(registry.names())} or one of the sweep's extra metrics "
        f"(default: the sweep's primary_metric)",
    )
    p.add_argument("--format", choices=("table", "csv", "markdown", "json"), default="table")
    if compare:
        p.add_argument("--top", type=int, metavar="N", help="show only the N best runs (and configurations)")
        p.add_argument(
            "--color",
            choices=("auto", "always", "never"),
            default="auto",
            help="bold best row in table format (auto: when stdout is a terminal and NO_COLOR is unset)",
        )
    else:
        p.add_argument(
            "--write",
            nargs="?",
            const="",
            metavar="DIR",
            help="also write comparison.csv + comparison_by_config.csv to DIR (default DIR: <results>/sweeps/<sweep>/)",
        )
    return p


def load_sweep(args: argparse.Namespace) -> Sweep:
    """The sweep named by --sweep in --config (raises ConfigError naming the file or sweep)."""
    config = load_yaml(args.config)
    if not isinstance(config, dict):
        raise ConfigError(f"{args.config}: expected a mapping with a 'sweeps' section")
    sweep = load_sweeps(config, only=[args.sweep], results_dir=args.results)[args.sweep]
    if not os.path.isdir(args.results):  # mistyped, or no run has started yet: the table says missing, this says why
        print(f"warning: --results: {args.results}: no such folder (yet): every run is missing", file=sys.stderr)
    return sweep


def sort_metric(args: argparse.Namespace, sweep: Sweep) -> str:
    """--sort, or the sweep's primary metric; ConfigError for a name that is not one of the sweep's metrics."""
    metric = args.sort or sweep.primary_metric
    if metric not in metric_names(sweep):
        raise ConfigError(
            f"--sort {metric}: not a metric of sweep {sweep.name}; expected one of {', '.join(metric_names(sweep))}"
        )
    return metric


def main(argv: list[str] | None = None, compare: bool = False, prog: str | None = None) -> int:
    """scripts/aggregate.py (`compare=False`) or scripts/compare.py: print the sweep's comparison tables."""
    p = parser(compare, prog)
    args = p.parse_args(argv)
    top = args.top if compare else None
    if top is not None and top < 1:
        p.error("--top must be at least 1")
    try:
        sweep = load_sweep(args)
        metric = sort_metric(args, sweep)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    all_rows = sort_rows(collect(args.results, sweep), metric)
    counts = status_counts(all_rows)
    summary = counts_line(all_rows, counts)
    if not compare and args.write is not None:
        out_dir = args.write or os.path.join(args.results, "sweeps", sweep.name)
        try:
            paths = write_tables(args.results, sweep, out_dir, metric, rows=all_rows)
        except OSError as e:
            print(f"error: --write {out_dir}: {e.strerror or e}", file=sys.stderr)
            return 2
        print("wrote " + " and ".join(map(str, paths)), file=sys.stderr)
    best = best_run(all_rows) if compare else None
    rows = [dict(r, best="*" if r["run_name"] == best else "") for r in all_rows][:top] if compare else all_rows
    marker = ["best"] if compare else []

    if args.format == "csv":
        sys.stdout.write(to_csv(rows, [*marker, *columns(sweep)]))
        print(summary, file=sys.stderr)
    elif args.format == "json":
        shown = {"best": best} if compare else {}
        print(dumps_json({"sweep": sweep.name, "sort": metric, **shown, "counts": counts, "runs": json_rows(rows)}))
    else:
        md, names = args.format == "markdown", metric_names(sweep)
        head = f", top {len(rows)}" if top else ""
        print(f"sweep {sweep.name}: {len(all_rows)} runs, sorted by {metric}{head}" + ("; * = best" if compare else ""))
        print()
        lines = render(rows, [*marker, *display_columns(sweep)], md, names).split("\n")
        if compare and best and rows and _color(args, md):  # rows[0] is the best run: line 2 (after header and rule)
            lines[2] = BOLD + lines[2] + RESET
        print("\n".join(lines))
        if "seed" in sweep.keys:
            groups = sort_rows(by_config(all_rows, sweep), metric, key=f"{metric}_mean")[:top]
            stats = [f"{metric}_{s}" for s in STAT_SUFFIXES]
            print("\nby config (seeds pooled; ci95 = Student t half-width):\n")
            print(render(groups, [*group_keys(sweep), "n", "n_expected", *stats], md, names))
        print(f"\n{summary}")
    return 0


def _color(args: argparse.Namespace, markdown: bool) -> bool:
    """--color: always, never, or auto (a terminal and NO_COLOR unset); never in Markdown."""
    if markdown or args.color == "never":
        return False
    return args.color == "always" or (sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
