"""Search beyond the grid: sampled points (sobol/random) and successive halving, as sweep definitions and as
decisions. The workflow runs of halving are in tests/test_halving.py."""

from __future__ import annotations

import math

import pytest
from conftest import REPO

from ledsweep import search
from ledsweep.sweep import SweepError, load_sweeps

BASE = str(REPO / "tests" / "configs" / "tiny_run.yaml")
SPACE = {
    "training.learning_rate": {"loguniform": [1.0e-4, 3.0e-3]},
    "training.warmup_steps": {"int": [0, 200]},
    "model.dropout": {"uniform": [0.0, 0.2]},
    "generation.num_beams": {"choice": [1, 2, 4]},
}


def sweep(**spec):
    return load_sweeps({"sweeps": {"s": {"base": BASE, **spec}}})["s"]


@pytest.mark.parametrize("method", ["sobol", "random"])
def test_sampling_is_deterministic_and_in_range(method):
    a = sweep(sample={"method": method, "n": 16, "seed": 3, "space": SPACE})
    b = sweep(sample={"method": method, "n": 16, "seed": 3, "space": dict(reversed(SPACE.items()))})
    assert list(a.runs) == [f"s_s{i:02d}" for i in range(16)] == list(b.runs)
    assert [r.overrides for r in a.runs.values()] == [r.overrides for r in b.runs.values()]
    other = sweep(sample={"method": method, "n": 16, "seed": 4, "space": SPACE})
    assert [r.overrides for r in other.runs.values()] != [r.overrides for r in a.runs.values()]
    for run in a.runs.values():
        lr, warmup = run.config["training"]["learning_rate"], run.config["training"]["warmup_steps"]
        assert 1.0e-4 <= lr <= 3.0e-3 and isinstance(warmup, int) and 0 <= warmup <= 200
        assert 0.0 <= run.config["model"]["dropout"] <= 0.2
        assert run.config["generation"]["num_beams"] in (1, 2, 4)
        assert lr == float(f"{lr:.4g}")  # rounded to 4 significant digits
    assert a.keys == sorted(SPACE) and a.sampled == 16


def test_sobol_points_are_scipys_and_stable_when_n_grows():
    from scipy.stats import qmc

    space = {"model.dropout": {"uniform": [0.0, 1.0]}, "training.warmup_steps": {"int": [0, 99]}}
    pts = search.sample_points("sobol", 5, 7, search.check_sample("s", {"n": 5, "seed": 7, "space": space})[3])
    ref = qmc.Sobol(d=2, scramble=True, rng=7).random_base2(3)[:5]
    assert [p["model.dropout"] for p in pts] == [float(f"{u:.4g}") for u in ref[:, 0]]
    assert [p["training.warmup_steps"] for p in pts] == [int(u * 100) for u in ref[:, 1]]
    s8 = sweep(sample={"n": 8, "seed": 7, "space": space})
    s5 = sweep(sample={"n": 5, "seed": 7, "space": space})
    assert all(s8.runs[n].overrides == s5.runs[n].overrides for n in s5.runs)  # run names keep their config


@pytest.mark.parametrize("method", ["sobol", "random"])
def test_growing_n_past_a_power_of_ten_keeps_every_name(method):
    """issue 21.7: n 100 -> 101 turned `s05` into `s005`, so every finished run was renamed and trained again."""
    space = {"model.dropout": {"uniform": [0.0, 0.2]}}
    small = sweep(sample={"method": method, "n": 100, "seed": 1, "space": space})
    big = sweep(sample={"method": method, "n": 101, "seed": 1, "space": space})
    assert list(big.runs)[:100] == list(small.runs) and list(big.runs)[100] == "s_s100"
    assert all(big.runs[n].overrides == small.runs[n].overrides for n in small.runs)
    assert "s_s05" in small.runs and "s_s99" in small.runs


def test_sample_crossed_with_grid_names_grid_then_point():
    s = sweep(grid={"seed": [1, 2]}, sample={"n": 2, "space": {"model.dropout": {"uniform": [0.0, 0.2]}}})
    assert list(s.runs) == ["s_seed1_s00", "s_seed1_s01", "s_seed2_s00", "s_seed2_s01"]
    assert s.runs["s_seed1_s01"].overrides["model.dropout"] == s.runs["s_seed2_s01"].overrides["model.dropout"]


@pytest.mark.parametrize(
    "sample, message",
    [
        ({"n": 0, "space": SPACE}, "sample.n: expected a whole number of points >= 1"),
        ({"n": 4, "method": "grid", "space": SPACE}, "sample.method: expected one of ['sobol', 'random']"),
        ({"n": 4, "space": {"training.learning_rate": {"loguniform": [0, 1]}}}, "loguniform: bounds must be > 0"),
        ({"n": 4, "space": {"training.warmup_steps": {"int": [0, 2.5]}}}, "int: expected integer bounds, got"),
        ({"n": 4, "space": {"training.warmup_steps": {"int": [1.0, 4.0]}}}, "got [1.0, 4.0] (write [1, 4])"),
        ({"n": 4, "space": {"model.dropout": {"normal": [0, 1]}}}, "sample.space.model.dropout: expected one of"),
        ({"n": 4, "space": {"model.dropout": {"uniform": [0.3, 0.1]}}}, "expected [low, high] with low < high"),
        ({"n": 4, "space": {"training.learnin_rate": {"uniform": [0, 1]}}}, "unknown config key"),
        # every sampled value is validated like a grid value (dropout must be <= 1)
        ({"n": 4, "space": {"model.dropout": {"uniform": [0.5, 3.0]}}}, "sample.space.model.dropout: value"),
        ({"n": 4, "space": {"generation.num_beams": {"choice": [1, 0]}}}, "sample.space.generation.num_beams"),
    ],
)
def test_bad_samples_name_the_key(sample, message):
    with pytest.raises(SweepError) as e:
        sweep(sample=sample)
    assert message in str(e.value) and "sweep 's'" in str(e.value)


def test_sample_key_also_in_grid_is_refused():
    with pytest.raises(SweepError, match="more than one of grid/zip/set/sample"):
        sweep(grid={"model.dropout": [0.1]}, sample={"n": 2, "space": {"model.dropout": {"uniform": [0, 0.2]}}})


def test_halving_sets_the_budget_and_trains_every_run_itself():
    s = sweep(
        sample={"n": 4, "space": {"generation.num_beams": {"choice": [1, 2]}}},
        halving={"rungs": [20, 60], "keep": 0.5, "metric": "rougeL"},
    )
    assert s.halving == search.Halving((20, 60), 0.5, "rougeL")
    assert {r.config["training"]["max_steps"] for r in s.runs.values()} == {60}
    from ledsweep.sweep import trainers

    assert trainers(s) == {n: n for n in s.runs}  # decoding variants do not share training under halving


@pytest.mark.parametrize(
    "halving, extra, message",
    [
        ({"rungs": [20]}, {}, "halving.rungs: expected at least two increasing"),
        ({"rungs": [60, 20]}, {}, "halving.rungs: expected at least two increasing"),
        ({"rungs": [20, 60], "keep": 1.0}, {}, "halving.keep: expected the share"),
        ({"rungs": [20, 60], "metric": "rouge3"}, {}, "halving.metric: expected one of"),
        ({"rungs": [20, 60]}, {"set": {"training.max_steps": 100}}, "halving.rungs ends at 60"),
        ({"rungs": [20, 60]}, {"grid": {"training.max_steps": [60, 80]}}, "training.max_steps cannot be swept"),
        ({"rungs": [20, 60], "metric": "bertscore"}, {"set": {"evaluation.bertscore_model": None}}, "needs evaluation"),
        ({"rungs": [20, 60]}, {"set": {"data.validation_file": None, "training.eval_steps": None}}, "no data.valid"),
    ],
)
def test_bad_halving_is_refused(halving, extra, message):
    spec = {"grid": {"seed": [1, 2]}, **extra}
    with pytest.raises(SweepError) as e:
        sweep(halving=halving, **spec)
    assert message in str(e.value)


def test_decision_keeps_the_best_share_ties_by_name_and_nan_last():
    h = search.Halving((20, 60), 0.5, "rougeL")
    scores = {"b": 0.5, "a": 0.5, "c": 0.9, "d": math.nan, "e": 0.1, "f": None, "g": 0.7, "h": 0.2}
    ranking, kept, stopped = search.decide(scores, h, higher_is_better=True)
    assert ranking == ["c", "g", "a", "b", "h", "e", "d", "f"]
    assert kept == sorted("cgab") and stopped == sorted("hedf")
    ranking, kept, _ = search.decide({"x": 2.0, "y": 1.0, "z": 3.0}, search.Halving((1, 2), 0.34, "loss"), False)
    assert ranking == ["y", "x", "z"] and kept == ["y"]  # floor(0.34 * 3) = 1; lower loss is better
    assert search.Halving((1, 2), 0.1, "loss").kept(3) == 1  # never fewer than one
