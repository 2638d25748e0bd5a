"""The workflow owns the run: training reruns only for training keys, decoding variants share one training,
and what a run recorded is what the tables show."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from workflow_helpers import make_workdir, snakemake

pytestmark = pytest.mark.slow

DECODING_SWEEP = {
    "sweeps": {
        "dec": {
            "base": "config/tiny_run.yaml",
            "grid": {"training.learning_rate": [1.0e-3, 2.0e-3], "generation.num_beams": [1, 2]},
        }
    }
}


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> count."""
    lines = output.split("Job stats:", 1)[1].splitlines()[3:]
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="module")
def decoding_sweep(tmp_path_factory):
    """2 learning rates x 2 beam widths, run for real once (2 trainings, 4 evaluations)."""
    tmp = tmp_path_factory.mktemp("ownership")
    (tmp / "sweep.yaml").write_text(yaml.safe_dump(DECODING_SWEEP))
    wd = make_workdir(tmp / "wd", tmp / "sweep.yaml")
    cfg = yaml.safe_load((wd / "config" / "tiny_run.yaml").read_text())
    cfg["evaluation"] = {"bertscore_model": None}
    (wd / "config" / "tiny_run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    plan = snakemake(wd, "-n", "--profile", "profiles/local")
    assert plan.returncode == 0, plan.stdout[-3000:]
    counts = job_counts(plan.stdout)
    proc = snakemake(wd, "--profile", "profiles/local", timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return wd, counts, proc.stdout


def test_decoding_variants_share_one_training(decoding_sweep):
    wd, counts, out = decoding_sweep
    assert counts["train"] == 2 and counts["evaluate"] == 4 and counts["link_checkpoint"] == 4, counts
    rows = (wd / "results/sweeps/dec/comparison.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    results = wd / "results"
    trainer, variant = results / "dec_beams1_lr0.001", results / "dec_beams2_lr0.001"
    assert (trainer / "trained" / "checkpoint").is_dir() and not (variant / "trained").exists()
    # a complete standard run folder without duplicated bytes: the weights are the trained file itself
    weights = [p / "checkpoint/model.safetensors" for p in (trainer, variant)]
    assert (
        os.stat(weights[0]).st_ino
        == os.stat(weights[1]).st_ino
        == os.stat(trainer / "trained/checkpoint/model.safetensors").st_ino
    )
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig

    AutoModelForSeq2SeqLM.from_pretrained(variant / "checkpoint")
    AutoTokenizer.from_pretrained(variant / "checkpoint")
    assert GenerationConfig.from_pretrained(variant / "checkpoint").num_beams == 2
    assert GenerationConfig.from_pretrained(trainer / "checkpoint").num_beams == 1
    meta = json.loads((variant / "meta.json").read_text())
    assert meta["trained_by"] == trainer.name and meta["run_name"] == variant.name and meta["shared_checkpoint"]
    summary = json.loads((variant / "summary.json").read_text())
    assert summary["trained_by"] == trainer.name and summary["config_sha256"] == meta["config_sha256"]
    # the variant's loss plot has the shared training history
    assert (variant / "plots/loss.png").is_file() and (variant / "log_history.jsonl").read_text()


def test_decoding_change_reevaluates_without_retraining(decoding_sweep, tmp_path):
    wd, _, _ = decoding_sweep
    base = wd / "config" / "tiny_run.yaml"
    original = base.read_text()
    try:
        cfg = yaml.safe_load(original)
        cfg["generation"]["max_new_tokens"] = 10
        base.write_text(yaml.safe_dump(cfg, sort_keys=False))
        counts = job_counts(snakemake(wd, "-n", "--profile", "profiles/local").stdout)
        assert "train" not in counts and counts["evaluate"] == 4, counts
        cfg["training"]["weight_decay"] = 0.01  # a training key: both trainings rerun
        base.write_text(yaml.safe_dump(cfg, sort_keys=False))
        counts = job_counts(snakemake(wd, "-n", "--profile", "profiles/local").stdout)
        assert counts["train"] == 2 and counts["evaluate"] == 4, counts
    finally:
        base.write_text(original)
        os.utime(base, (1, 1))  # older than everything again


def test_evaluate_refuses_a_config_whose_training_keys_were_edited(decoding_sweep):
    """A hand edit of a training key in results/<run>/config.yaml: evaluating the old weights under it would
    describe a run that never happened."""
    wd, _, _ = decoding_sweep
    run = wd / "results" / "dec_beams2_lr0.002"
    original = (run / "config.yaml").read_text()
    try:
        cfg = yaml.safe_load(original)
        cfg["training"]["learning_rate"] = 0.5
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        proc = snakemake(
            wd, "--profile", "profiles/local", "--forcerun", "evaluate", targets=[run.relative_to(wd) / "summary.json"]
        )
        assert proc.returncode != 0
        log = (run / "logs" / "evaluate.log").read_text()
        assert "trained with other training keys" in log, log[-2000:]
    finally:
        (run / "config.yaml").write_text(original)
        snakemake(wd, "--profile", "profiles/local", targets=[run.relative_to(wd) / "summary.json"])


def test_hand_edited_config_is_marked_modified_in_the_table(decoding_sweep):
    """The table takes a run's config columns from its own config.yaml; an edit after the run makes it
    `modified` (with the reason), never a clean result."""
    import csv

    from conftest import run_cli

    wd, _, _ = decoding_sweep
    run = wd / "results" / "dec_beams1_lr0.002"
    original = (run / "config.yaml").read_text()
    try:
        cfg = yaml.safe_load(original)
        cfg["generation"]["num_beams"] = 3
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        out = run_cli(
            "aggregate.py",
            "--sweep",
            "dec",
            "--config",
            wd / "config/config.yaml",
            "--results",
            wd / "results",
            "--format",
            "csv",
            cwd=wd,
            check=True,
        )
        rows = {r["run_name"]: r for r in csv.DictReader(out.stdout.splitlines())}
        assert rows[run.name]["status"] == "modified" and "config_sha256" in rows[run.name]["reason"]
        assert rows[run.name]["generation.num_beams"] == "3"  # what the folder says now, flagged
        assert all(r["status"] == "completed" for name, r in rows.items() if name != run.name)
    finally:
        (run / "config.yaml").write_text(original)
