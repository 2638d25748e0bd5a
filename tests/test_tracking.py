"""Experiment tracking (issue 25): TensorBoard curves live in each run folder, continued without duplicates
after a resume; the final metrics beside them."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import copy_tree, run_cli, summary_metrics, write_config

from ledsweep import cli


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of `folder` as TensorBoard reads it (orphaned events after a restart purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_curves_continue_after_a_resume_without_duplicates(tmp_path, prepared, baseline):
    """logging_steps 4, save_steps 4, killed after its step-4 checkpoint: TensorBoard shows loss at 4, 8 and 12
    once each, equal to the uninterrupted run's, and the final metrics of summary.json."""
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results")
    proc = run_cli("train_baseline.py", "--config", cfg, prepared=prepared, env={"LEDSWEEP_FAULT": "after_save:8"})
    assert proc.returncode != 0
    run = tmp_path / "results" / "tiny_run"
    assert [s for s, _ in tensorboard_scalars(run)["train/loss"]] == [4, 8]  # written live, flushed at the save
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    resumed, whole = tensorboard_scalars(run), tensorboard_scalars(baseline)
    assert [s for s, _ in resumed["train/loss"]] == [4, 8, 12]
    assert resumed["train/loss"] == whole["train/loss"]
    assert [s for s, _ in resumed["eval/loss"]] == [6, 12]
    for name, value in summary_metrics(run).items():
        if value is not None:
            assert resumed[f"test/{name}"] == [(12, pytest.approx(value, rel=1e-6))], name  # float32 in TensorBoard
    assert {"train/learning_rate", "train/grad_norm"} <= set(resumed)
    assert json.loads((run / "meta.json").read_text())["resumes"] == 1


def mlflow_runs(store) -> dict:
    """run name -> MLflow run of every active run in the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    runs = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            assert run.info.run_name not in runs, f"two MLflow runs for {run.info.run_name}"
            runs[run.info.run_name] = run
    return runs


def test_every_sweep_is_in_mlflow_one_run_per_run_folder(small_sweeps):
    """Issue 25.2: rule track (part of rule all) imported every run folder of every sweep; the metrics are
    summary.json's, the params the run's config, the history its step losses, the tags name the run folder."""
    results = small_sweeps / "results"
    runs = mlflow_runs(results / "mlflow.db")
    folders = [p.parent for p in results.glob("*/summary.json")]
    assert set(runs) == {f.name for f in folders}
    for folder in folders:
        run, summary = runs[folder.name], json.loads((folder / "summary.json").read_text())
        assert run.data.tags["ledsweep.run_dir"] == str(folder.resolve()) and run.info.status == "FINISHED"
        for name, value in summary["metrics"].items():
            assert run.data.metrics.get(name) == value or value is None, name
        assert run.data.params["seed"] == "1" and run.data.params["model.d_model"] == "32"
        curves = tensorboard_scalars(folder)  # the workflow's train (and rung) jobs wrote them as they trained
        last, step = curves["train/loss"][-1][0], json.loads((folder / "meta.json").read_text())["global_step"]
        assert last <= step < last + 4  # logging_steps 4 (a run halving stopped at step 6 logged at step 4)
    record = json.loads((results / "sweeps" / "one" / "mlflow.json").read_text())
    assert record["runs"] == {"one_seed1": runs["one_seed1"].info.run_id} and record["experiment"] == "one"
    from mlflow.tracking import MlflowClient

    history = MlflowClient(f"sqlite:///{results / 'mlflow.db'}").get_metric_history(
        runs["one_seed1"].info.run_id, "train_loss"
    )
    losses = [json.loads(line) for line in (results / "one_seed1" / "step_losses.jsonl").read_text().splitlines()]
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in losses]
    assert runs["half_s00"].data.tags["ledsweep.halving_rung"] in ("1", "2")


def test_importing_again_adds_nothing_and_a_changed_run_replaces_its_mlflow_run(small_sweeps, tmp_path, monkeypatch):
    from ledsweep.sweep import load_sweeps
    from ledsweep.tracking import import_sweep

    wd = copy_tree(small_sweeps, tmp_path / "wd")
    monkeypatch.chdir(wd)  # the sweep's base configs are relative to the workflow's folder
    store = wd / "results" / "mlflow.db"
    config = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    sweep = load_sweeps(config, only=["models"])["models"]
    uri = f"sqlite:///{store}"
    before = mlflow_runs(store)
    again = import_sweep(wd / "results", sweep, uri)
    assert again["unchanged"] == ["models_namebart", "models_namet5"] and not again["imported"] + again["updated"]
    assert {n: r.info.run_id for n, r in mlflow_runs(store).items()} == {n: r.info.run_id for n, r in before.items()}
    # a run whose config.yaml no longer matches what it recorded is "modified": its MLflow run says so
    cfg = wd / "results" / "models_namet5" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("seed: 1", "seed: 7"))
    changed = import_sweep(wd / "results", sweep, uri)
    assert changed["updated"] == ["models_namet5"] and changed["unchanged"] == ["models_namebart"]
    runs = mlflow_runs(store)
    assert len(runs) == len(before) and runs["models_namet5"].data.tags["ledsweep.status"] == "modified"
    assert runs["models_namet5"].info.run_id != before["models_namet5"].info.run_id


def test_report_to_passes_other_trackers_to_the_trainer(tmp_path, prepared, in_process, monkeypatch):
    """Issue 25.4: training.report_to names a tracker of transformers' (here MLflow, as a job would log to it
    while training); one that is not installed is refused before anything is written."""
    store = tmp_path / "trainer.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "live")
    cfg = write_config(
        tmp_path / "c.yaml", tmp_path / "results", training__report_to=["mlflow"], evaluation__bertscore_model=None
    )
    assert in_process(cli.train_main, "--config", cfg, "--prepared-dir", prepared).returncode == 0
    (run,) = mlflow_runs(store).values()
    history = [json.loads(line) for line in (tmp_path / "results/tiny_run/log_history.jsonl").read_text().splitlines()]
    last = [h for h in history if "loss" in h][-1]
    assert run.data.metrics["loss"] == pytest.approx(last["loss"])  # the Trainer's MLflowCallback logged it
    missing = write_config(tmp_path / "m.yaml", tmp_path / "other", training__report_to=["wandb"])
    proc = in_process(cli.train_main, "--config", missing, "--prepared-dir", prepared)
    assert proc.returncode == 2 and "training.report_to: wandb: not installed here" in proc.stderr
    assert not (tmp_path / "other").exists()
