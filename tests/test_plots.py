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


# ---------------------------------------------------------------------------------------------------------------
# plots that do not mislead (issue 25): every run drawn, the metric's range kept, log and category axes


def figure_of(results: Path, sweep, key: str, metric: str = "rougeL"):
    """The metric plot's axes, made from the run folders as plot_metric_vs_key makes them (then closed)."""
    import matplotlib.pyplot as plt

    from ledsweep.aggregate import collect

    fig = plots.metric_figure(collect(results, sweep), sweep, metric, key)
    plt.close(fig)
    return fig.axes[0]


def sweep_with_scores(tmp_path: Path, grid: dict, scores: list[float | None], spec: dict | None = None):
    """A sweep (grid, or a whole `spec`) whose runs, in sweep order (grid keys sorted, the first varying
    slowest: seed before training.*), scored `scores` (None: still running)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    sweep = make_sweep(tmp_path, grid) if spec is None else load_sweeps({"sweeps": {"t": spec}})["t"]
    for (name, run), score in zip(sweep.runs.items(), scores):
        write_run(tmp_path / "results", name, score, config=run.config)
    return sweep, tmp_path / "results"


def run_dots(ax) -> list[tuple[float, float]]:
    return [(x, y) for line in ax.lines if line.get_gid() == "runs" for x, y in zip(*line.get_data())]


def test_metric_plot_draws_every_run_and_never_leaves_the_metric_range(tmp_path):
    # two seeds that disagree: t with 1 degree of freedom gives 0.585 +- 4.9, far outside ROUGE-L's [0, 1]
    sweep, results = sweep_with_scores(
        tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]}, [0.2, 0.9, 0.97, None]
    )
    ax = figure_of(results, sweep, "training.learning_rate")
    assert sorted(run_dots(ax)) == [(1e-3, 0.2), (1e-3, 0.97), (2e-3, 0.9)]  # each completed run, none running
    low, high = ax.get_ylim()
    assert 0.0 <= low < 0.2 and 0.97 < high <= 1.0  # before: -4.3 to 5.5, the interval's reach
    bars = [seg for c in ax.collections for seg in c.get_segments()]  # the CI bars, cut at the range
    assert bars and all(0.0 <= y <= 1.0 for seg in bars for _, y in seg)
    assert min(y for seg in bars for _, y in seg) == 0.0 and max(y for seg in bars for _, y in seg) == 1.0
    loss = figure_of(results, sweep, "training.learning_rate", "loss")  # [0, inf): nothing cut above
    assert loss.get_ylim()[0] >= 0.0 and loss.get_ylim()[1] > 5.0


def test_y_limits_and_error_bars_follow_the_registry_range():
    from ledsweep.plotaxes import error_bar, y_limits

    assert error_bar("rougeL", 0.785, 2.73) == pytest.approx((0.785, 0.215))
    assert error_bar("rougeL", 0.5, 0.1) == pytest.approx((0.1, 0.1)) and error_bar("rougeL", 0.5, None) == (0, 0)
    assert error_bar("loss", 0.5, 2.0) == pytest.approx((0.5, 2.0))
    assert error_bar("meteor", 0.5, 2.0) == pytest.approx((2.0, 2.0))  # an extra metric: no range known
    assert y_limits("rougeL", [1.0, 1.0]) == pytest.approx((0.95, 1.0))
    assert y_limits("rougeL", [0.0, 1.0]) == (0.0, 1.0)
    assert y_limits("meteor", [-1.0, 1.0]) == pytest.approx((-1.1, 1.1)) and y_limits("rougeL", []) is None


def test_log_grid_rule():
    from ledsweep.plotaxes import log_grid

    assert log_grid([1e-4, 1e-3])  # a factor 10
    assert log_grid([1, 2, 4]) and log_grid([1e-4, 3e-4, 1e-3]) and log_grid([8, 2, 4, 1])  # geometric
    assert not log_grid([3e-4, 1e-3])  # two values: no progression to see
    assert not log_grid([100, 200, 300]) and not log_grid([1, 2, 3])  # arithmetic
    assert not log_grid([0.0, 0.1, 1.0]) and not log_grid([-1.0, 10.0])  # not all > 0
    assert log_grid([3e-4, 1e-3], loguniform=True) and not log_grid(["a", "b"])


def test_metric_plot_x_scale_log_on_a_log_grid_linear_otherwise(tmp_path):
    grid = {"training.learning_rate": [1e-4, 3e-4, 1e-3]}
    sweep, results = sweep_with_scores(tmp_path / "log", grid, [0.1, 0.2, 0.3])
    ax = figure_of(results, sweep, "training.learning_rate")
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1e-4, 3e-4, 1e-3]
    sweep, results = sweep_with_scores(tmp_path / "lin", {"training.warmup_steps": [100, 200, 300]}, [0.1, 0.2, 0.3])
    assert figure_of(results, sweep, "training.warmup_steps").get_xscale() == "linear"


def test_metric_plot_of_a_loguniform_sample_is_log(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    space = {"training.learning_rate": {"loguniform": [1e-4, 3e-4]}}  # a factor 3: log only as sampled
    spec = {"base": str(tmp_path / "base.yaml"), "sample": {"n": 4, "seed": 0, "space": space}}
    sweep, results = sweep_with_scores(tmp_path, {}, [0.3, 0.4, None, 0.5], spec)
    assert sweep.space == {"training.learning_rate": ("loguniform", [1e-4, 3e-4])}
    ax = figure_of(results, sweep, "training.learning_rate")
    assert ax.get_xscale() == "log" and len(run_dots(ax)) == 3 and ax.get_ylim()[1] <= 1.0


def no_line_through(ax) -> bool:
    """No line joins two different x positions (error bars are vertical; gridlines are not ax.lines)."""
    return all(line.get_linestyle() == "None" or len(set(line.get_xdata())) < 2 for line in ax.lines)


def test_metric_plot_draws_model_names_as_categories(tmp_path):
    grid = {"model.name": ["models/t5", "models/bart"], "seed": [1, 2]}
    sweep, results = sweep_with_scores(tmp_path, grid, [0.2, 0.3, 0.5, 0.6])
    ax = figure_of(results, sweep, "model.name")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["models/t5", "models/bart"]  # sweep order
    assert sorted(run_dots(ax)) == [(0.0, 0.2), (0.0, 0.3), (1.0, 0.5), (1.0, 0.6)]
    assert ax.get_xlim() == (-0.5, 1.5) and no_line_through(ax)
    sweep, results = sweep_with_scores(tmp_path / "n", {"training.warmup_steps": [1, 5]}, [0.2, 0.3])
    assert not no_line_through(figure_of(results, sweep, "training.warmup_steps"))  # numbers: means joined


def test_metric_plot_draws_factory_args_as_categories(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE + "model: {factory: f.py:build}\n")
    grid = {"model.factory_args": [{"gain": 0.5}, {"act": "gelu", "gain": 1.0}], "training.learning_rate": [1e-3, 2e-3]}
    spec = {"base": str(tmp_path / "base.yaml"), "grid": grid}
    sweep, results = sweep_with_scores(tmp_path, {}, [0.1, 0.2, 0.3, 0.4], spec)
    ax = figure_of(results, sweep, "model.factory_args")
    assert [t.get_text() for t in ax.get_xticklabels()] == ['{"gain": 0.5}', '{"act": "gelu", "gain": 1.0}']
    assert len(run_dots(ax)) == 4 and no_line_through(ax)
    assert figure_of(results, sweep, "training.learning_rate").get_xscale() == "linear"
