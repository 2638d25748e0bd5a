"""The one list of metrics: each metric's name, whether higher or lower is better, and how it is shown.

    from ledsweep import metrics_registry as mr
    mr.names()                        # ('loss', 'rouge1', ..., 'exact_match'): summary.json / table order
    mr.get("loss").higher_is_better   # False: tables and plots rank loss ascending
    mr.get("rougeL").format(0.71234)  # '0.7123'
    mr.get("meteor")                  # an extra metric by name: higher is better, shown as 0.0000
    mr.register("ter", higher_is_better=False)   # an extra metric whose direction is not the default
    mr.extra_metric_name("tests/metric_modules/word_overlap")  # 'word_overlap': its summary.json key

Used by summary.json (`summary_metrics`), the workflow schema (`primary_metric` enum, written by
scripts/write_schema.py), aggregation and its tables, plots, scripts/compare.py and the plot rule's
wildcard. No imports beyond the standard library: the Snakefile imports it at parse time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")  # also a column name, a file-name part and a wildcard value


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool = True
    fmt: str = ".4f"  # format spec for tables (str.format mini-language)
    required: bool = False  # every completed summary.json has it, as a number
    shown: bool = True  # a column of the terminal and HTML tables (every metric is in the CSVs)
    description: str = ""
    low: float = -math.inf  # the values the metric can take: anything outside is no result of it
    high: float = math.inf

    def format(self, value: Any) -> str:
        """`value` in this metric's display format; '' for None, 'nan'/'inf' as Python writes them."""
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return str(value)
        return format(value, self.fmt)

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be this metric's result ('is not a number: ...', 'is nan', 'is -5, outside
        [0, inf]'), or None. The one range check: evaluation (summary_metrics) and the tables use it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"is not a number: {value!r}"
        if not math.isfinite(value):
            return f"is {value}"
        if not self.low <= value <= self.high:
            return f"is {value:g}, outside [{self.low:g}, {self.high:g}]"
        return None


BUILTIN = (
    Metric(
        "loss",
        higher_is_better=False,
        required=True,
        description="mean token cross-entropy of the reference summaries on the test split",
        low=0.0,
    ),
    Metric(
        "rouge1", required=True, description="ROUGE-1 F1 (rouge-score, stemmed), mean over examples", low=0.0, high=1.0
    ),
    Metric("rouge2", required=True, description="ROUGE-2 F1, mean over examples", low=0.0, high=1.0),
    Metric(
        "rougeL",
        required=True,
        description="ROUGE-L F1 (longest common subsequence), mean over examples",
        low=0.0,
        high=1.0,
    ),
    Metric(
        "rougeLsum",
        required=True,
        description="ROUGE-Lsum F1 (one sentence per line), mean over examples",
        low=0.0,
        high=1.0,
    ),
    Metric(
        "bertscore",
        description="BERTScore F1, mean over examples; null without evaluation.bertscore_model",
        low=0.0,
        high=1.0,
    ),
    Metric(
        "bertscore_precision", shown=False, description="BERTScore precision, mean over examples", low=0.0, high=1.0
    ),
    Metric("bertscore_recall", shown=False, description="BERTScore recall, mean over examples", low=0.0, high=1.0),
    Metric("exact_match", shown=False, description="fraction of predictions equal to the reference", low=0.0, high=1.0),
)
_REGISTRY: dict[str, Metric] = {m.name: m for m in BUILTIN}


def names(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The built-in metrics in order, then `extra` (a sweep's extra metrics) not already among them."""
    return tuple(dict.fromkeys([*(m.name for m in BUILTIN), *extra]))


def get(name: str) -> Metric:
    """The metric `name`: built-in, registered, or an extra one with the defaults (higher is better, 4 decimals)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        check_name(name)
        return Metric(name)


def is_known(name: str) -> bool:
    """A built-in or registered metric (other names still work through `get`, with the defaults)."""
    return name in _REGISTRY


def register(
    name: str, higher_is_better: bool = True, fmt: str = ".4f", shown: bool = True, description: str = ""
) -> Metric:
    """Declare an extra metric whose direction or format is not the default; returns it. Registering
    the same properties again is a no-op; a built-in metric, or other properties, raise ValueError."""
    check_name(name)
    format(0.5, fmt)  # a bad format spec fails here, not in a table
    metric = Metric(name, higher_is_better, fmt, False, shown, description)
    known = _REGISTRY.get(name)
    if known is not None and known != metric:
        what = "a built-in metric" if known in BUILTIN else f"already registered as {known}"
        raise ValueError(f"metric {name!r}: {what}")
    _REGISTRY[name] = metric
    return metric


def check_name(name: Any) -> None:
    """ValueError unless `name` can be a metric name (a column, file-name part and wildcard value)."""
    if not isinstance(name, str) or not NAME.match(name) or "_vs_" in name:
        raise ValueError(
            f"metric name {name!r}: expected letters, digits, '_' and '-', starting with a letter (and no '_vs_')"
        )


def extra_metric_name(spec: str) -> str:
    """The summary.json key and column of an `evaluation.extra_metrics` entry: what evaluate names the
    module. A hub name as written ('meteor'), a community module's last part ('org/my_metric' ->
    'my_metric'), a local module's file stem ('metrics/word_overlap' or '.../word_overlap.py' ->
    'word_overlap'). The name is not checked here (see check_name)."""
    last = [p for p in spec.split("/") if p]
    name = last[-1] if last else spec
    return name[: -len(".py")] if name.endswith(".py") else name


def summary_metrics(values: Mapping[str, Any], extra: Iterable[str] = ()) -> dict[str, Any]:
    """summary.json's `metrics` object: every built-in metric in registry order (None where not computed,
    e.g. BERTScore without a scorer model), then the `extra` metrics. ValueError when a required metric is
    missing, a name in `values` is neither built-in nor in `extra`, or a value is no result of its metric
    (NaN, infinite, outside its range: the run fails instead of writing it)."""
    order = names(extra)
    unknown = [k for k in values if k not in order]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected among {list(order)}")
    missing = [m.name for m in BUILTIN if m.required and values.get(m.name) is None]
    if missing:
        raise ValueError(f"required metrics missing: {missing}")
    bad = [f"metrics.{k} {why}" for k in order if values.get(k) is not None and (why := get(k).problem(values[k]))]
    if bad:
        raise ValueError("no result: " + "; ".join(bad))
    return {k: values.get(k) for k in order}
