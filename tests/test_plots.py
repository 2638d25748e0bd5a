"""Plots (src/ledsweep/plots.py) and the terminal view (scripts/compare.py) on synthetic run folders."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import run_cli

from ledsweep import plots
from ledsweep.config import config_sha256, dump_yaml
from ledsweep.sweep import load_sweeps

BASE = "run_name: x\ndata: {train_file: train.jsonl, test_file: test.jsonl}\n"
PNG = b"\x89PNG\r\n\x1a\n"


def make_sweep(tmp_path: Path, grid: dict, name: str = "t"):
    (tmp_path / "base.yaml").write_text(BASE)
    config = {"sweeps": {name: {"base": str(tmp_path / "base.yaml"), "grid": grid}}}
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return load_sweeps(config)[name]


def write_run(
    results: Path, name: str, rougeL: float | None, lr: float = 1e-3, history: bool = True, config: dict | None = None
) -> Path:
    """A run folder: completed (rougeL given) or running (None), with a loss history; config.yaml and
    meta.json's config_sha256 from `config` (the sweep's config for the run)."""
    d = results / name
    d.mkdir(parents=True, exist_ok=True)
    config = config or {"run_name": name}
    (d / "config.yaml").write_text(dump_yaml(config))
    (d / "meta.json").write_text(json.dumps({"device": "cpu", "config_sha256": config_sha256(config)}))
    if history:
        rows = [{"loss": 6.0 - lr * 100 * s, "step": s} for s in (2, 4, 6)] + [{"eval_loss": 5.9 - lr * 50, "step": 6}]
        (d / "log_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        steps = [{"step": s, "loss": 6.0 - lr * 90 * s} for s in range(1, 7)]
        (d / "step_losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    if rougeL is None:  # running: a live process holds it (this one, as its lock file says)
        from test_aggregate import hold

        hold(d)
    if rougeL is not None:
        metrics = {
            "loss": 5.0,
            "rouge1": 0.3,
            "rouge2": 0.1,
            "rougeL": rougeL,
            "rougeLsum": 0.25,
            "bertscore": None,
            "bertscore_precision": None,
            "bertscore_recall": None,
            "exact_match": 0.0,
        }
        (d / "summary.json").write_text(json.dumps({"status": "completed", "metrics": metrics, "runtime_seconds": 1.0}))
    return d


@pytest.fixture
def sweep_results(tmp_path):
    """A 2 lr x 2 seed sweep: three completed runs, one still running."""
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]})
    results = tmp_path / "results"
    scores = {(1e-3, 1): 0.20, (1e-3, 2): 0.22, (2e-3, 1): 0.30, (2e-3, 2): None}
    for name, run in sweep.runs.items():
        lr, seed = run.overrides["training.learning_rate"], run.overrides["seed"]
        write_run(results, name, scores[(lr, seed)], lr=lr, config=run.config)
    return sweep, results, tmp_path


def test_read_losses(tmp_path):
    d = write_run(tmp_path, "r", 0.1)
    losses = plots.read_losses(d)
    assert [s for s, _ in losses["train"]] == [2, 4, 6] and [s for s, _ in losses["eval"]] == [6]
    assert len(losses["step"]) == 6
    assert plots.read_losses(tmp_path / "nothing") == {"train": [], "eval": [], "step": []}
    with open(d / "step_losses.jsonl", "a") as f:
        f.write('{"step": 7, "lo')  # being written
    assert len(plots.read_losses(d)["step"]) == 6


def test_plots_are_png_and_byte_identical_across_runs(sweep_results):
    sweep, results, tmp = sweep_results
    run = next(iter(sweep.runs))
    made = {}
    for attempt in ("a", "b"):
        out = tmp / attempt
        made[attempt] = [
            plots.plot_run_loss(results / run, out / "loss.png"),
            plots.plot_metric_vs_key(results, sweep, "rougeL", "training.learning_rate", out / "m.png"),
            plots.plot_loss_curves(results, sweep, out / "curves.png"),
        ]
    for a, b in zip(made["a"], made["b"]):
        data = a.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
        assert data == b.read_bytes(), f"{a.name} differs between two runs on the same inputs"
        assert b"Software" not in data and b"matplotlib" not in data.lower()


def test_plots_work_with_no_history_and_no_completed_runs(tmp_path):
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3]})
    for name in sweep.runs:
        write_run(tmp_path / "results", name, None, history=False)
    assert plots.best_config([], "rougeL") is None
    for out in (
        plots.plot_run_loss(tmp_path / "results" / next(iter(sweep.runs)), tmp_path / "l.png"),
        plots.plot_metric_vs_key(tmp_path / "results", sweep, "rougeL", "training.learning_rate", tmp_path / "m.png"),
        plots.plot_loss_curves(tmp_path / "results", sweep, tmp_path / "c.png"),
    ):
        assert out.read_bytes().startswith(PNG)


def test_metric_plot_refuses_unknown_key_or_metric(sweep_results):
    sweep, results, tmp = sweep_results
    with pytest.raises(ValueError, match="not a swept key"):
        plots.plot_metric_vs_key(results, sweep, "rougeL", "seed", tmp / "x.png")
    with pytest.raises(ValueError, match="unknown metric"):
        plots.plot_metric_vs_key(results, sweep, "accuracy", "training.learning_rate", tmp / "x.png")


def test_best_config(sweep_results):
    sweep, results, _ = sweep_results
    from ledsweep.aggregate import by_config, collect

    best = plots.best_config(by_config(collect(results, sweep), sweep), "rougeL")
    assert best["training.learning_rate"] == 2e-3 and best["n"] == 1  # one seed of 2e-3 is still running


def test_comparison_html_lists_every_run_best_first(sweep_results):
    sweep, results, _ = sweep_results
    from ledsweep.aggregate import collect

    text = plots.comparison_html(collect(results, sweep), sweep)
    runs = [line.split('data-run="')[1].split('"')[0] for line in text.splitlines() if "data-run=" in line]
    assert sorted(runs) == sorted(sweep.runs) and runs[0] == "t_lr0.002_seed1"
    assert text.count('class="best"') == 1


def compare(tmp, *args):
    return run_cli(
        "compare.py", "--sweep", "t", "--config", tmp / "config.yaml", "--results", tmp / "results", *args, check=True
    )


def test_compare_table_sorted_with_best_marked_and_top(sweep_results):
    _, _, tmp = sweep_results
    out = compare(tmp).stdout
    lines = out.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("best"))
    assert lines[header + 2].startswith("*") and "t_lr0.002_seed1" in lines[header + 2]
    assert "running" in out and "\033[1m" not in out  # not a terminal: no ANSI bold
    assert "4 runs: 3 completed, 1 running" in out
    top = compare(tmp, "--top", "1", "--sort", "rougeL").stdout
    assert "t_lr0.002_seed1" in top and "t_lr0.001_seed2" not in top
    bold = compare(tmp, "--color", "always").stdout
    assert "\033[1m*" in bold


def test_compare_csv_markdown_json(sweep_results):
    _, _, tmp = sweep_results
    rows = list(csv.DictReader(io.StringIO(compare(tmp, "--format", "csv").stdout)))
    assert [r["run_name"] for r in rows][:3] == ["t_lr0.002_seed1", "t_lr0.001_seed2", "t_lr0.001_seed1"]
    assert rows[0]["best"] == "*" and {r["best"] for r in rows[1:]} == {""}
    md = compare(tmp, "--format", "markdown").stdout
    assert "| best | run_name | status |" in md and "\033" not in md
    data = json.loads(compare(tmp, "--format", "json", "--top", "2").stdout)
    assert data["best"] == "t_lr0.002_seed1" and len(data["runs"]) == 2 and data["counts"]["running"] == 1


def test_compare_unknown_sweep_is_an_error(sweep_results):
    _, _, tmp = sweep_results
    proc = run_cli("compare.py", "--sweep", "nope", "--config", tmp / "config.yaml", "--results", tmp / "results")
    assert proc.returncode == 2 and "nope" in proc.stderr
