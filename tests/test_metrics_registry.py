"""The metric registry (src/ledsweep/metrics_registry.py): one list of metric names, directions and formats,
and the places that take it from there: the workflow schema, sweep validation, sorting and the tables."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import yaml
from conftest import REPO

from ledsweep import aggregate as agg
from ledsweep import metrics_registry as mr
from ledsweep.sweep import SweepError, load_sweeps

BUILTIN = (
    "loss",
    "rouge1",
    "rouge2",
    "rougeL",
    "rougeLsum",
    "bertscore",
    "bertscore_precision",
    "bertscore_recall",
    "exact_match",
)


def test_builtin_metrics():
    assert mr.names() == BUILTIN
    assert [m for m in BUILTIN if not mr.get(m).higher_is_better] == ["loss"]
    assert [m for m in BUILTIN if mr.get(m).required] == ["loss", "rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert mr.get("rougeL").format(0.712345) == "0.7123" and mr.get("loss").format(None) == ""
    assert mr.get("rougeL").format(float("nan")) == "nan"
    assert all(mr.is_known(m) and mr.get(m).description for m in BUILTIN)


def test_extra_metric_by_name_has_defaults_and_can_be_registered():
    meteor = mr.get("meteor")  # issue 17: extra metrics by name
    assert (meteor.higher_is_better, meteor.format(0.123456), meteor.shown) == (True, "0.1235", True)
    assert not mr.is_known("meteor")
    assert mr.names(["meteor", "loss", "meteor"]) == (*BUILTIN, "meteor")

    ter = mr.register("ter_test", higher_is_better=False, fmt=".2f")
    assert mr.get("ter_test") is ter and mr.is_known("ter_test")
    assert mr.register("ter_test", higher_is_better=False, fmt=".2f") == ter  # the same again: fine
    with pytest.raises(ValueError, match="already registered"):
        mr.register("ter_test")
    with pytest.raises(ValueError, match="built-in"):
        mr.register("loss")
    rows = [{"run_name": "a", "ter_test": 0.5}, {"run_name": "b", "ter_test": 0.2}]
    assert [r["run_name"] for r in agg.sort_rows(rows, "ter_test")] == ["b", "a"]  # lower is better
    assert agg.format_cell("ter_test", 0.123) == "0.12" and agg.format_cell("ter_test_ci95", 0.123) == "0.12"


@pytest.mark.parametrize("bad", ["", "1st", "rouge L", "a/b", "rougeL_vs_lr", None, 3])
def test_metric_names_must_be_usable_as_columns_files_and_wildcards(bad):
    with pytest.raises(ValueError, match="metric name"):
        mr.get(bad)


def test_summary_metrics_orders_fills_and_checks():
    values = {"exact_match": 1.0, "rougeLsum": 0.4, "rougeL": 0.3, "rouge2": 0.2, "rouge1": 0.1, "loss": 2.0}
    out = mr.summary_metrics(values)
    assert tuple(out) == BUILTIN and out["bertscore"] is None and out["loss"] == 2.0
    assert tuple(mr.summary_metrics({**values, "meteor": 0.5}, extra=["meteor"]))[-1] == "meteor"
    with pytest.raises(ValueError, match="required metrics missing: \\['loss'\\]"):
        mr.summary_metrics({k: v for k, v in values.items() if k != "loss"})
    with pytest.raises(ValueError, match="unknown metrics \\['meteor'\\]"):
        mr.summary_metrics({**values, "meteor": 0.5})


def _write_schema_module():
    spec = importlib.util.spec_from_file_location("write_schema", REPO / "scripts" / "write_schema.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "scripts"))
    spec.loader.exec_module(mod)
    return mod


def test_workflow_schema_primary_metric_comes_from_the_registry():
    path = REPO / "workflow" / "schemas" / "config.schema.yaml"
    text = path.read_text()
    assert _write_schema_module().config_schema_with_metrics(text) == text, "run: python scripts/write_schema.py"
    prop = yaml.safe_load(text)["properties"]["sweeps"]["additionalProperties"]["properties"]["primary_metric"]
    assert tuple(prop["enum"]) == mr.names() and prop["default"] == "rougeL"


def test_sweep_primary_metric_is_checked_against_the_registry(tmp_path):
    (tmp_path / "base.yaml").write_text("run_name: x\ndata: {train_file: a.jsonl, test_file: b.jsonl}\n")
    spec = {"base": str(tmp_path / "base.yaml"), "grid": {"seed": [1, 2]}}
    for metric in BUILTIN:
        assert load_sweeps({"sweeps": {"s": {**spec, "primary_metric": metric}}})["s"].primary_metric == metric
    with pytest.raises(SweepError, match="primary_metric: expected one of"):
        load_sweeps({"sweeps": {"s": {**spec, "primary_metric": "accuracy"}}})


def test_summary_metrics_refuse_values_that_are_no_result():
    """issue 21.5: an extra metric returning NaN used to end the run `completed` with NaN in summary.json (not
    strict JSON); a built-in metric outside its range is no result either. Any finite extra value is kept."""
    base = {"loss": 1.0, "rouge1": 0.5, "rouge2": 0.5, "rougeL": 0.5, "rougeLsum": 0.5}
    for value, why in ((math.nan, "metrics.word_overlap is nan"), (-math.inf, "metrics.word_overlap is -inf")):
        with pytest.raises(ValueError, match=f"no result: {why}"):
            mr.summary_metrics({**base, "word_overlap": value}, ["word_overlap"])
    with pytest.raises(
        ValueError, match=r"metrics.loss is -1, outside \[0, inf\]; metrics.rouge1 is 1.5, outside \[0, 1\]"
    ):
        mr.summary_metrics({**base, "rouge1": 1.5, "loss": -1.0})
    assert mr.summary_metrics({**base, "word_overlap": -3.0}, ["word_overlap"])["word_overlap"] == -3.0
    assert mr.get("bertscore").problem(True) == "is not a number: True"
