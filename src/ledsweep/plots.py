"""Plots of runs and sweeps (PNG, matplotlib Agg), byte-identical across two runs on the same inputs.

    plot_run_loss("results/demo_lr0.001_seed1", "out/loss.png")
    plot_metric_vs_key("results", sweep, "rougeL", "training.learning_rate", "out/rougeL_vs_lr.png")
    fig = metric_figure(collect("results", sweep), sweep, "rougeL", "model.name")   # to inspect; close it
    plot_loss_curves("results", sweep, "out/loss_curves.png")
    comparison_html(collect("results", sweep), sweep)                # the page's text

Every function takes the path it writes: the workflow's plot rules (workflow/rules/plots.smk) name the files.

Determinism: fixed font (DejaVu Sans, shipped with matplotlib), sizes, dpi and figure size; no
timestamps or software tag in the PNG (`metadata={"Software": None}`); runs, configurations and
series always in sweep order. matplotlib is imported lazily (the Snakefile imports nothing from here).
"""

from __future__ import annotations

import html
import io
import json
import sys
from pathlib import Path
from typing import Any

from .aggregate import (
    best_run,
    by_config,
    collect,
    display_columns,
    format_cell,
    group_keys,
    metric_names,
    results_folder,
    sort_rows,
)
from .plotaxes import XAxis, error_bar, x_axis, y_limits
from .plotaxes import is_number as _num
from .runfolder import atomic_write_bytes, atomic_write_text
from .sweep import Sweep, load_sweeps

DPI = 100
FIGSIZE = (6.4, 4.0)
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "path.simplify": False,
    "svg.hashsalt": "ledsweep",
}
BEST_COLOR = "#d62728"
RUN_OFFSET = 11  # points: a run's dot is drawn this far right of its configuration's mean
STYLE = (
    "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}tr.best{font-weight:bold;background:#fff3c4}"
    "</style></head><body>"
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from cycler import cycler

    rc = dict(
        RC,
        **{
            "axes.prop_cycle": cycler(
                color=[
                    "#1f77b4",
                    "#ff7f0e",
                    "#2ca02c",
                    "#9467bd",
                    "#8c564b",
                    "#e377c2",
                    "#7f7f7f",
                    "#bcbd22",
                    "#17becf",
                ]
            )
        },
    )
    return plt, rc


def _save(fig, out: str | Path) -> Path:
    """Lay out, then write PNG bytes with no software/time metadata atomically; always close the figure."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        atomic_write_bytes(out, buf.getvalue())
        return Path(out)
    finally:
        plt.close(fig)


def _rows(path: Path) -> list[dict]:
    """JSON-lines objects of `path`; a missing or unreadable file, or a line that does not parse (a file
    being written), is skipped: a plot shows what is there."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def read_losses(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{"train": [(step, loss)], "eval": [(step, eval_loss)], "step": [(step, loss)]} from the run folder's
    log_history.jsonl (Trainer log events) and step_losses.jsonl (every optimizer step); [] where absent."""
    run_dir = Path(run_dir)
    out: dict[str, list[tuple[int, float]]] = {"train": [], "eval": [], "step": []}
    for row in _rows(run_dir / "log_history.jsonl"):
        step = row.get("step")
        if not isinstance(step, int):
            continue
        if _num(row.get("loss")):
            out["train"].append((step, float(row["loss"])))
        if _num(row.get("eval_loss")):
            out["eval"].append((step, float(row["eval_loss"])))
    for row in _rows(run_dir / "step_losses.jsonl"):
        if isinstance(row.get("step"), int) and _num(row.get("loss")):
            out["step"].append((row["step"], float(row["loss"])))
    return out


def _xy(points):
    return [p[0] for p in points], [p[1] for p in points]


def plot_run_loss(run_dir: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Training (per step and per logging step) and evaluation loss against step for one run."""
    plt, rc = _pyplot()
    losses = read_losses(run_dir)
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        if losses["step"]:
            ax.plot(*_xy(losses["step"]), color="#1f77b4", alpha=0.35, linewidth=0.8, label="train loss (every step)")
        if losses["train"]:
            ax.plot(
                *_xy(losses["train"]),
                color="#1f77b4",
                marker="o",
                markersize=3,
                linewidth=1.5,
                label="train loss (logged)",
            )
        if losses["eval"]:
            ax.plot(*_xy(losses["eval"]), color="#ff7f0e", marker="s", markersize=4, linewidth=1.5, label="eval loss")
        if not any(losses.values()):
            ax.text(0.5, 0.5, "no loss recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title or Path(run_dir).name)
        ax.grid(True, alpha=0.3)
        if any(losses.values()):
            ax.legend(loc="upper right")
        return _save(fig, out)


def _label(v: Any) -> str:
    return format_cell("", v)


def best_config(groups: list[dict], metric: str) -> dict | None:
    """The configuration with the best seed mean of `metric` (None when no run has completed)."""
    ranked = sort_rows([dict(g, status="completed") for g in groups], metric, key=f"{metric}_mean")
    return ranked[0] if ranked and _num(ranked[0].get(f"{metric}_mean")) else None


def plot_metric_vs_key(
    results_dir: str | Path, sweep: Sweep, metric: str, key: str, out: str | Path, rows: list[dict] | None = None
) -> Path:
    """`metric` against the values of swept `key` (metric_figure), written to `out`."""
    rows = collect(results_dir, sweep) if rows is None else rows
    plt, rc = _pyplot()
    with plt.rc_context(rc):
        return _save(metric_figure(rows, sweep, metric, key), out)


def metric_figure(rows: list[dict], sweep: Sweep, metric: str, key: str):
    """The open figure of `metric` against swept `key` (the caller saves or inspects it, then closes it).
    A grid: a small dot per completed run (every seed), and per configuration the seed mean with its 95% CI
    (cut at the metric's range), one series per combination of the other swept keys. A sampled or halving
    sweep: one point per run (its configurations rarely repeat). The best is starred. The x axis is log on a
    log grid and categories (no line) for keys that are not numbers (plotaxes.x_axis); the y axis never
    leaves the metric's range (plotaxes.y_limits): a mean 0.785 +- 2.73 is no ROUGE-L of -1.9."""
    if metric not in metric_names(sweep):
        raise ValueError(f"unknown metric {metric!r}; expected one of {list(metric_names(sweep))}")
    if key not in group_keys(sweep):
        raise ValueError(f"sweep {sweep.name}: {key!r} is not a swept key (other than seed): {group_keys(sweep)}")
    loguniform = sweep.space.get(key, ("",))[0] == "loguniform"
    plt, rc = _pyplot()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        if sweep.sampled or sweep.halving:
            axis, ys = _draw_runs(ax, rows, metric, key, loguniform)
            ylabel, every_tick = f"{metric} (test split, one point per run)", False
        else:
            axis, ys = _draw_configs(ax, rows, sweep, metric, key, loguniform)
            mean = "large dots" if axis.scale == "category" else "line"
            ylabel, every_tick = f"{metric} (dots: runs; {mean}: seed mean, 95% CI)", True
        if not ys:
            ax.text(0.5, 0.5, "no completed runs yet", ha="center", va="center", transform=ax.transAxes)
        _format_x(ax, axis, every_tick)
        if limits := y_limits(metric, ys):
            ax.set_ylim(*limits)
        ax.set_xlabel(key)
        ax.set_ylabel(ylabel)
        ax.set_title(f"sweep {sweep.name}: {metric} vs {key}")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    return fig


def _format_x(ax, axis: XAxis, every_tick: bool) -> None:
    """Log or linear scale; a tick per value on a grid's axis and per category (a category axis has no
    scale: its slots are spaced evenly)."""
    if axis.scale == "log":
        ax.set_xscale("log")
    if every_tick or axis.scale == "category":
        ax.set_xticks(axis.ticks)
        ax.set_xticklabels([_label(v) for v in axis.values])
        ax.minorticks_off()
    if axis.scale == "category" and axis.values:
        ax.set_xlim(-0.5, len(axis.values) - 0.5)


def _star(ax, x: float, y: float, label: str) -> float:
    ax.plot(
        [x], [y], marker="*", markersize=16, color=BEST_COLOR, linestyle="none", zorder=5, label=label, clip_on=False
    )
    return y


def _draw_configs(
    ax, rows: list[dict], sweep: Sweep, metric: str, key: str, loguniform: bool
) -> tuple[XAxis, list[float]]:
    """A grid sweep's series (one per combination of the other swept keys); the x axis and every y drawn."""
    keys = group_keys(sweep)
    others = [k for k in keys if k != key]
    groups = by_config(rows, sweep)
    axis = x_axis([g[key] for g in groups], loguniform)

    def name(r: dict) -> str:
        return ", ".join(f"{k}={_label(r.get(k))}" for k in others)

    series: dict[str, tuple[list[dict], list[dict]]] = {}  # name -> (configurations, completed runs)
    for g in groups:
        series.setdefault(name(g), ([], []))[0].append(g)
    for r in rows:
        if r.get("status") == "completed" and _num(r.get(metric)):
            series[name(r)][1].append(r)  # by_config made a configuration of every completed run
    ys = []
    for i, (label, (gs, runs)) in enumerate(series.items()):
        ys += _draw_series(ax, axis, metric, key, label, gs, runs, f"C{i % 9}")
    best = best_config(groups, metric)
    if best is not None:
        label = ", ".join(f"{k}={_label(best[k])}" for k in keys)
        mean = best[f"{metric}_mean"]
        ys.append(
            _star(ax, axis.pos(best[key]), mean, f"best: {label} ({metric} {format_cell(metric, mean, (metric,))})")
        )
    return axis, ys


def _draw_series(
    ax, axis: XAxis, metric: str, key: str, name: str, groups: list[dict], runs: list[dict], color: str
) -> list[float]:
    """A dot per completed run at its key value (drawn RUN_OFFSET points to the right, out from under the
    mean, its bar and the star), and the seed means with their 95% CI bars cut at the metric's range,
    joined by a line on a numeric axis only; returns every y drawn."""
    from matplotlib.transforms import ScaledTranslation

    ys = [r[metric] for r in runs]
    if runs:
        xs = [axis.pos(r[key]) for r in runs]
        beside = ax.transData + ScaledTranslation(RUN_OFFSET / 72, 0, ax.figure.dpi_scale_trans)
        ax.plot(xs, ys, "o", markersize=3.5, color=color, alpha=0.6, gid="runs", clip_on=False, transform=beside)
    means = sorted(((axis.pos(g[key]), g) for g in groups if _num(g.get(f"{metric}_mean"))), key=lambda p: p[0])
    if not means:
        return ys
    xs, mids = [p[0] for p in means], [p[1][f"{metric}_mean"] for p in means]
    below, above = zip(*(error_bar(metric, m, p[1].get(f"{metric}_ci95")) for m, p in zip(mids, means)))
    ns = [p[1]["n"] for p in means]
    label = (name or "seed mean") + f" (n={min(ns)}" + (f"..{max(ns)})" if max(ns) != min(ns) else ")")
    ax.errorbar(
        xs,
        mids,
        yerr=[below, above],
        marker="o",
        markersize=5,
        capsize=4,
        linewidth=1.5,
        linestyle="none" if axis.scale == "category" else "-",
        label=label,
        color=color,
        clip_on=False,
    )
    return ys + [m - b for m, b in zip(mids, below)] + [m + a for m, a in zip(mids, above)]


def _reached(row: dict) -> str:
    """'rung 1 at step 20' for a run of a halving sweep, '' otherwise."""
    return f"rung {row['rung']} at step {row['steps']}" if row.get("rung") is not None else ""


def _draw_runs(ax, rows: list[dict], metric: str, key: str, loguniform: bool) -> tuple[XAxis, list[float]]:
    """A sampled or halving sweep: one point per run, filled where the run completed, hollow where halving
    stopped it (labelled with the rung it reached); the best run starred. The x axis and every y drawn."""
    axis = x_axis([r.get(key) for r in rows], loguniform)
    best = best_run(sort_rows(rows, metric))
    ys: list[float] = []
    for status, style in (("completed", {"color": "C0"}), ("stopped", {"markerfacecolor": "none", "color": "C7"})):
        pts = [r for r in rows if r.get("status") == status and _num(r.get(metric))]
        if not pts:
            continue
        rungs = sorted({_reached(r) for r in pts} - {""})
        label = status + (f" ({', '.join(rungs)})" if rungs else "")
        xs = [axis.pos(r.get(key)) for r in pts]
        ys += [r[metric] for r in pts]
        ax.plot(xs, ys[-len(pts) :], "o", markersize=6, label=label, gid="runs", clip_on=False, **style)
    for r in rows:
        if r["run_name"] == best:
            label = f"best: {best} ({metric} {format_cell(metric, r[metric], (metric,))})"
            ys.append(_star(ax, axis.pos(r.get(key)), r[metric], label))
    return axis, ys


def plot_loss_curves(
    results_dir: str | Path, sweep: Sweep, out: str | Path, metric: str | None = None, rows: list[dict] | None = None
) -> Path:
    """Training loss of every run of the sweep overlaid (per step where recorded); the best run (by `metric`,
    default the sweep's primary metric) drawn thick in red."""
    metric = metric or sweep.primary_metric
    rows = collect(results_dir, sweep) if rows is None else rows
    best = best_run(sort_rows(rows, metric))
    reached = {r["run_name"]: _reached(r) for r in rows}
    plt, rc = _pyplot()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        drawn = 0
        for i, name in enumerate(sweep.runs):
            losses = read_losses(Path(results_dir) / name)
            pts = losses["step"] or losses["train"]
            if not pts:
                continue
            is_best = name == best
            ax.plot(
                *_xy(pts),
                linewidth=2.2 if is_best else 1.0,
                color=BEST_COLOR if is_best else f"C{i % 9}",
                alpha=1.0 if is_best else 0.8,
                zorder=4 if is_best else 2,
                label=(f"{name} (best {metric})" if is_best else name)
                + (f", {reached[name]}" if reached.get(name) else ""),
            )
            if losses["eval"]:
                ax.plot(
                    *_xy(losses["eval"]),
                    linestyle="none",
                    marker="s",
                    markersize=3,
                    color=BEST_COLOR if is_best else f"C{i % 9}",
                )
            drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no loss recorded yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (squares: eval loss)")
        ax.set_title(f"sweep {sweep.name}: loss curves of {drawn} runs")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(loc="upper right", ncol=1 if drawn <= 8 else 2)
        return _save(fig, out)


def comparison_html(rows: list[dict], sweep: Sweep, metric: str | None = None) -> str:
    """The comparison table as a small self-contained HTML page (for Snakemake's report), best run marked."""
    metric = metric or sweep.primary_metric
    rows = sort_rows(rows, metric)
    header, names = ["best", *display_columns(sweep)], metric_names(sweep)
    best = best_run(rows)
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>sweep {html.escape(sweep.name)}: comparison</title>",
        STYLE,
        f"<h3>sweep {html.escape(sweep.name)}: {len(rows)} runs, sorted by {html.escape(metric)}</h3>",
        '<table id="comparison"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr></thead><tbody>",
    ]
    for r in rows:
        is_best = r["run_name"] == best
        cells = ["*" if is_best else "", *(format_cell(c, r.get(c), names) for c in header[1:])]
        out.append(
            f'<tr class="{"best" if is_best else ""}" data-run="{html.escape(r["run_name"])}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    out.append("</tbody></table></body></html>\n")
    return "\n".join(out)


def loss_curves_job(config: dict, sweep_name: str, metas: list[str], curves: str, table: str) -> None:
    """rule plot_loss_curves: a sweep's runs (their meta.json: the run folders) -> the loss curves and the HTML
    comparison table of the report."""
    sweep = load_sweeps(config, only=[sweep_name])[sweep_name]
    results = results_folder(metas)
    rows = collect(results, sweep)
    print(f"wrote {plot_loss_curves(results, sweep, curves, rows=rows)}", file=sys.stderr)
    atomic_write_text(table, comparison_html(rows, sweep))
    print(f"wrote {table}", file=sys.stderr)


def metric_plot_job(config: dict, sweep_name: str, results: str, metric: str, key: str, out: str) -> None:
    """rule plot_metric: a sweep's runs -> `metric` against swept `key` (seed means and 95% CIs)."""
    sweep = load_sweeps(config, only=[sweep_name])[sweep_name]
    print(f"wrote {plot_metric_vs_key(results, sweep, metric, key, out)}", file=sys.stderr)
