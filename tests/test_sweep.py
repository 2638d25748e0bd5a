"""Sweep expansion and naming; bad sweeps are refused at parse time, before any job runs."""

from __future__ import annotations

import pytest
from conftest import REPO
from snakemake.exceptions import WorkflowError
from workflow_helpers import make_workdir, snakemake

from ledsweep.config import load_yaml
from ledsweep.sweep import (
    SweepError,
    check_config_files,
    load_sweeps,
    run_name,
    validate_workflow_config,
    vanished_inputs,
)

BASE = str(REPO / "tests" / "configs" / "tiny_run.yaml")
BAD = sorted((REPO / "tests" / "bad_inputs" / "sweeps").glob("*.yaml"))
AS_SNAKEMAKE = ["anchors_bomb", "grid_nan", "unknown_grid_key"]  # also parsed by the real Snakemake


def sweeps(**spec):
    return load_sweeps({"sweeps": {"s": {"base": BASE, **spec}}})["s"]


def test_grid_expands_to_every_combination_with_readable_names():
    s = sweeps(grid={"training.learning_rate": [3.0e-4, 1.0e-3], "seed": [1, 2]})
    assert sorted(s.runs) == ["s_lr0.0003_seed1", "s_lr0.0003_seed2", "s_lr0.001_seed1", "s_lr0.001_seed2"]
    run = s.runs["s_lr0.001_seed2"]
    assert run.config["training"]["learning_rate"] == 1.0e-3 and run.config["seed"] == 2
    assert run.config["run_name"] == "s_lr0.001_seed2" and run.config["output_dir"] == "results"
    assert run.config["training"]["optim"] == "adamw_torch_fused"  # defaults resolved
    assert s.keys == ["seed", "training.learning_rate"]


def test_names_do_not_depend_on_key_order():
    a = sweeps(grid={"seed": [1], "model.d_model": [32], "training.learning_rate": [1.0e-3]})
    b = sweeps(grid={"training.learning_rate": [1.0e-3], "model.d_model": [32], "seed": [1]})
    assert list(a.runs) == list(b.runs) == ["s_dm32_lr0.001_seed1"]


def test_zip_and_set():
    s = sweeps(
        grid={"seed": [1]}, zip={"model.d_model": [32, 64], "model.ffn_dim": [64, 128]}, set={"training.max_steps": 3}
    )
    assert sorted(s.runs) == ["s_dm32_ffn_dim64_seed1", "s_dm64_ffn_dim128_seed1"]
    assert all(r.config["training"]["max_steps"] == 3 for r in s.runs.values())


def test_names_are_valid_run_names_and_sanitised():
    assert run_name("x", {"model.name": "allenai/led-base 16384"}) == "x_nameled-base-16384"
    assert run_name("x", {"data.train_file": "/data/v2/train_b.jsonl"}) == "x_train_filetrain-b"
    assert run_name("x", {"training.gradient_checkpointing": True}) == "x_gradient_checkpointingtrue"


@pytest.mark.parametrize(
    "grid,message",
    [
        ({"training.learning_rate": []}, "grid.training.learning_rate: expected a non-empty list"),
        ({"training.lr": [1.0]}, "unknown config key 'training.lr'"),
        ({"training.learning_rate": ["fast"]}, "grid.training.learning_rate: value 'fast'"),
        ({"training.learning_rate": [1.0e-3, 1.00001e-3]}, "two grid points map to the run name 's_lr0.001'"),
        ({"output_dir": ["a"]}, "grid.output_dir: cannot be swept"),
    ],
)
def test_bad_grids_name_sweep_and_key(grid, message):
    with pytest.raises(SweepError, match="sweep 's'") as err:
        sweeps(grid=grid)
    assert message in str(err.value)


def test_run_names_unique_across_sweeps():
    spec = {"base": BASE, "grid": {"seed": [1]}}
    assert load_sweeps({"sweeps": {"a": spec, "b": spec}})  # a_seed1, b_seed1: fine
    with pytest.raises(SweepError, match="no sweep named"):
        load_sweeps({"sweeps": {"a": spec}}, only=["z"])


def parse_like_the_snakefile(path: str) -> None:
    """The Snakefile's checks of its config, in its order (workflow/Snakefile, rules/common.smk)."""
    check_config_files([path])
    config = load_yaml(path)
    validate_workflow_config(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    load_sweeps(config, only=config.get("run_sweeps"))


def test_corpus_of_bad_sweeps():
    assert len(BAD) >= 20 and set(AS_SNAKEMAKE) <= {c.stem for c in BAD}


@pytest.mark.parametrize("case", BAD, ids=[c.stem for c in BAD])
def test_bad_sweep_refused_at_parse_time(case, tmp_path, monkeypatch):
    expected = case.read_text().splitlines()[0].removeprefix("# expect: ")
    wd = make_workdir(tmp_path / "wd", case)
    (wd / "tests").symlink_to(REPO / "tests")
    monkeypatch.chdir(wd)
    with pytest.raises((WorkflowError, SweepError)) as err:
        parse_like_the_snakefile("config/config.yaml")
    assert expected in str(err.value)
    assert not (wd / "results").exists()


@pytest.mark.parametrize("name", AS_SNAKEMAKE)
def test_bad_sweep_refused_by_snakemake(name, tmp_path):
    case = REPO / "tests" / "bad_inputs" / "sweeps" / f"{name}.yaml"
    expected = case.read_text().splitlines()[0].removeprefix("# expect: ")
    wd = make_workdir(tmp_path / "wd", case)
    (wd / "tests").symlink_to(REPO / "tests")
    proc = snakemake(wd, "--profile", "profiles/local", timeout=120)
    assert proc.returncode != 0
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert not (wd / "results").exists(), "no job may run for a refused sweep"


def test_an_input_removed_mid_sweep_is_named_not_blamed_on_latency(tmp_path, monkeypatch):
    """Issue 21: a prepared folder deleted while the sweep runs made Snakemake say "This might be due to
    filesystem latency". The Snakefile's onerror hook reads Snakemake's own message (made here by its own
    wait_for_files) and names the folder and the way out."""
    import asyncio

    from snakemake.io import IOFile, wait_for_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "prepared").mkdir(parents=True)
    missing = [IOFile("results/prepared/0123456789abcdef"), IOFile("results/r1/config.yaml")]
    with pytest.raises(OSError) as err:
        asyncio.run(wait_for_files(missing, latency_wait=0))
    log = f"Error in rule train:\n{err.value}\nShutting down\n"
    assert "filesystem latency" in log
    lines = vanished_inputs(log)
    assert lines[0].startswith("results/prepared/0123456789abcdef: prepared data removed while the sweep ran")
    assert "run snakemake again" in lines[0] and lines[1].startswith("results/r1/config.yaml: an input removed")
    assert vanished_inputs("Error in rule train:\nsomething else\n") == []
