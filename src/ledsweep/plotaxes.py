"""The axes of a metric plot, decided from the values alone (no matplotlib here; ledsweep.plots draws).

    axis = x_axis([1e-4, 3e-4, 1e-3])          # XAxis(scale='log', ...): a geometric grid
    x_axis(["models/bart", "models/t5"])       # scale 'category': one slot each, in sweep order, no line
    y_limits("rougeL", [0.31, 0.9, 1.0])       # (0.2755, 1.0): never past rougeL's range [0, 1]
    error_bar("rougeL", 0.785, 2.73)           # (0.785, 0.215): a 95% CI drawn inside [0, 1]

A plot must not show what cannot be: a ROUGE score below 0, an order between two model names, a line
between them suggesting values in between. The metric's range is metrics_registry's (`Metric.low`,
`Metric.high`; an extra metric has none, so nothing is clipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import metrics_registry as registry

LOG_SPAN = 10.0  # values spanning this factor or more are drawn on a log axis
GEOMETRIC_STEP = 1.5  # ... or at least 3 values, each more than this times the one before,
GEOMETRIC_SPREAD = 1.25  # ... whose step ratios are within this factor of one another ([1, 2, 4], [1e-4, 3e-4, 1e-3])
MARGIN = 0.05  # share of the data's height left free above and below it (inside the metric's range)


def is_number(v: Any) -> bool:
    """A finite int or float; a bool is a category, not a number."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def log_grid(values: list[Any], loguniform: bool = False) -> bool:
    """Whether a swept key's values belong on a log axis. All must be numbers > 0, and one of: the key was
    sampled `loguniform`; the values span a factor LOG_SPAN or more (1e-4 and 1e-3); or there are three or
    more distinct values in geometric progression (sorted, each step ratio above GEOMETRIC_STEP and the
    largest step ratio within GEOMETRIC_SPREAD of the smallest: [1, 2, 4], not [100, 200, 300]). Two
    values alone (3e-4, 1e-3) show no progression, and two points look the same on either scale."""
    if not values or not all(is_number(v) and v > 0 for v in values):
        return False
    xs = sorted(set(map(float, values)))
    if loguniform or xs[-1] / xs[0] >= LOG_SPAN:
        return True
    steps = [b / a for a, b in zip(xs, xs[1:])]
    return len(xs) >= 3 and min(steps) > GEOMETRIC_STEP and max(steps) / min(steps) <= GEOMETRIC_SPREAD


@dataclass(frozen=True)
class XAxis:
    """The x axis of a swept key: `scale` 'log', 'linear' or 'category'; `values`: the distinct values in
    the order given (sweep order), drawn where `pos` says (a category: its index)."""

    scale: str
    values: tuple[Any, ...]

    def pos(self, value: Any) -> float:
        if self.scale == "category":
            return float([repr(v) for v in self.values].index(repr(value)))
        return float(value)

    @property
    def ticks(self) -> list[float]:
        return [self.pos(v) for v in self.values]


def x_axis(values: list[Any], loguniform: bool = False) -> XAxis:
    """The axis of a key's values (repeats allowed). Numbers (not bools) go on a numeric axis, log per
    `log_grid`; anything else (strings, mappings such as model.factory_args, bools, None, or a mix) is a
    category: it has no order and nothing lies between two of them, so the plots draw no line through them."""
    distinct = tuple({repr(v): v for v in values}.values())  # first-seen order; mappings are not hashable
    if not distinct or not all(is_number(v) for v in distinct):
        return XAxis("category", distinct)
    return XAxis("log" if log_grid(list(distinct), loguniform) else "linear", distinct)


def bounds(metric: str) -> tuple[float, float]:
    """The values `metric` can take (metrics_registry): [0, 1] for ROUGE, [0, inf) for loss, none for an
    extra metric (-inf, inf)."""
    m = registry.get(metric)
    return m.low, m.high


def error_bar(metric: str, mean: float, ci95: float | None) -> tuple[float, float]:
    """Lengths (below, above) of the mean's 95% CI bar, cut at the metric's range: with two seeds t has one
    degree of freedom, and 0.785 +- 2.73 would claim ROUGE-L values down to -1.9."""
    if ci95 is None or not is_number(ci95):
        return 0.0, 0.0
    lo, hi = bounds(metric)
    return max(0.0, mean - max(lo, mean - ci95)), max(0.0, min(hi, mean + ci95) - mean)


def y_limits(metric: str, ys: list[float]) -> tuple[float, float] | None:
    """The y range that shows `ys` (every point, mean and interval end drawn) with a MARGIN, never past the
    metric's range (0.0 to 1.0 when the data touch both ends of ROUGE's); None when nothing is drawn."""
    lo, hi = bounds(metric)
    ys = [min(max(y, lo), hi) for y in ys if is_number(y)]
    if not ys:
        return None
    bottom, top = min(ys), max(ys)
    pad = MARGIN * (top - bottom) or MARGIN * abs(top) or MARGIN
    return max(lo, bottom - pad), min(hi, top + pad)
