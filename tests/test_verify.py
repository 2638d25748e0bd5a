"""scripts/verify_run.py: drift check, quick and full replay, verdicts, and that the run folder stays untouched.

Every test works on a copy of the session's `baseline` run (shutil.copytree): nothing here edits the
shared run, the repository's data or its git state; drift is simulated by editing the copy's record.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from conftest import copy_tree, run_cli
from workflow_helpers import LOCAL, jobs_run, snakemake

from ledsweep.config import config_sha256, dump_yaml, load_config
from ledsweep.drift import Difference
from ledsweep.runfolder import sha256_file
from ledsweep.verify import Tolerance, compare_number, compare_step_losses, decide, verify_run


# ----------------------------------------------------------------------------- helpers
def copy_run(baseline: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(baseline, tmp_path / baseline.name))


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (a new, removed or changed file changes the dict)."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=2))


def verify_cli(run: Path, *args) -> tuple[int, dict]:
    proc = run_cli("verify_run.py", run, "--json", *args)
    assert proc.returncode in (0, 1, 2, 3), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def fields(report) -> dict[str, Difference]:
    return {d.field: d for d in report.differences}


# ----------------------------------------------------------------------------- verdict rules (no training)
def test_compare_number_is_bitwise_unless_tolerance_is_in_effect():
    tol = Tolerance(rtol=1e-6)
    assert compare_number("loss", 2.0, 2.0, tol, in_effect=False) is None
    assert compare_number("loss", float("nan"), float("nan"), tol, in_effect=False) is None
    strict = compare_number("loss", 2.0, 2.0 + 1e-9, tol, in_effect=False)
    assert strict.severity == "differs" and math.isclose(strict.rel_diff, 5e-10, rel_tol=1e-3)
    assert compare_number("loss", 2.0, 2.0 + 1e-9, tol, in_effect=True).severity == "within tolerance"
    assert compare_number("loss", 2.0, 2.1, tol, in_effect=True).severity == "differs"
    assert compare_number("bertscore", None, 0.5, tol, in_effect=True).severity == "differs"


def test_step_losses_name_the_first_and_worst_step():
    was = [{"step": s, "loss": 1.0} for s in range(1, 6)]
    now = [{"step": s, "loss": 1.0 + (0.1 * s if s >= 3 else 0)} for s in range(1, 6)]
    d = compare_step_losses(was, now, 5, Tolerance(), in_effect=False)
    assert d.severity == "differs" and d.recorded == 1.0 and d.now == pytest.approx(1.3)
    assert "3 of 5 steps differ, first at step 3" in d.detail and "max rel 0.5 at step 5" in d.detail
    assert compare_step_losses(was, was, 5, Tolerance(), in_effect=False) is None
    assert compare_step_losses(was, was[:3], 5, Tolerance(), in_effect=True).severity == "differs"  # missing steps


def test_decide_takes_the_worst_and_ignores_info():
    d = lambda sev: Difference("f", 1, 2, "result", sev)  # noqa: E731
    assert decide([]) == "identical"
    assert decide([d("info")]) == "identical"
    assert decide([d("info"), d("within tolerance")]) == "within tolerance"
    assert decide([d("within tolerance"), d("differs")]) == "differs"


def test_not_a_run_folder_exits_3_naming_the_path(tmp_path):
    proc = run_cli("verify_run.py", tmp_path / "nope")
    assert proc.returncode == 3 and f"{tmp_path / 'nope'}: no such run folder" in proc.stderr
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("run_name: half\n")
    (tmp_path / "half" / "meta.json").write_text("{}")
    proc = run_cli("verify_run.py", tmp_path / "half", "--json")
    assert proc.returncode == 3 and "not a finished run (no summary.json)" in proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "error"


# ----------------------------------------------------------------------------- replays
@pytest.mark.slow
def test_quick_replay_is_identical_and_leaves_the_run_untouched(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    before = tree_hashes(run)
    rc, report = verify_cli(run)  # default 20 steps, capped by the run's 12
    assert rc == 0 and report["verdict"] == "identical", report
    assert report["mode"] == "quick" and report["replay"]["steps"] == 12
    assert "12 step losses (bitwise)" in report["checked"]
    assert tree_hashes(run) == before


@pytest.mark.slow
def test_full_replay_is_identical_and_leaves_the_run_untouched(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    before = tree_hashes(run)
    proc = run_cli("verify_run.py", run, "--full")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "verdict: identical" in proc.stdout and "9 metrics, weights sha256" in proc.stdout
    assert tree_hashes(run) == before


@pytest.mark.slow
def test_different_seed_in_the_replay_differs_naming_the_metrics(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    rc, report = verify_cli(run, "--full", "--replay-override", "seed=2")
    differs = {d["field"] for d in report["differences"] if d["severity"] == "differs"}
    assert rc == 2 and report["verdict"] == "differs"
    assert {"metrics.loss", "weights_sha256", "step_losses"} <= differs, differs
    assert report["replay"]["overrides"] == ["seed=2"]


@pytest.mark.slow
def test_library_drift_turns_tolerances_on(baseline, tmp_path):
    """A loss off by 1e-9 (relative): `within tolerance` when a library version differs, else `differs`."""
    run = copy_run(baseline, tmp_path)
    losses = [json.loads(line) for line in (run / "step_losses.jsonl").read_text().splitlines()]
    losses[1]["loss"] *= 1 + 1e-9
    (run / "step_losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in losses))
    meta = json.loads((run / "meta.json").read_text())
    edit_json(run / "meta.json", versions={**meta["versions"], "torch": "2.12.0"})
    rc, report = verify_cli(run, "--steps", "3")
    assert rc == 1 and report["verdict"] == "within tolerance", report
    by_field = {d["field"]: d for d in report["differences"]}
    assert by_field["versions.torch"]["severity"] == "info" and report["tolerance"]["in_effect"]
    assert by_field["step_losses"]["severity"] == "within tolerance" and "step 2" in by_field["step_losses"]["detail"]
    rc, report = verify_cli(run, "--steps", "3", "--rtol", "1e-12")
    assert rc == 2 and report["verdict"] == "differs"


# ----------------------------------------------------------------------------- drift (no training)
def test_edited_data_file_is_detected(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    cfg, meta = yaml.safe_load((run / "config.yaml").read_text()), json.loads((run / "meta.json").read_text())
    meta["data_files"], meta["data_sha256"] = {}, {}
    for split in ("train", "validation", "test"):  # as if the run had been trained on copies of the data
        copy = Path(shutil.copy(cfg["data"][f"{split}_file"], tmp_path / f"{split}.jsonl"))
        cfg["data"][f"{split}_file"] = meta["data_files"][split] = str(copy)
        meta["data_sha256"][str(copy)] = sha256_file(copy)
    (run / "config.yaml").write_text(dump_yaml(cfg))
    meta["config_sha256"] = config_sha256(load_config(run / "config.yaml"))
    (run / "meta.json").write_text(json.dumps(meta))
    assert not [d for d in verify_run(run, steps=0).differences if d.kind == "input"]

    with open(tmp_path / "train.jsonl", "a") as f:
        f.write(json.dumps({"document": "An extra document.", "summary": "Extra."}) + "\n")
    report = verify_run(run, steps=0)
    d = fields(report)["data.train_file"]
    assert report.verdict == "differs" and d.kind == "input" and str(tmp_path / "train.jsonl") in d.detail
    assert d.recorded == meta["data_sha256"][str(tmp_path / "train.jsonl")] and d.now == sha256_file(d.detail)
    assert "data.test_file" not in fields(report)


def test_changed_config_value_changes_the_config_hash(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("learning_rate: 0.001", "learning_rate: 0.002"))
    report = verify_run(run, steps=0)
    assert report.verdict == "differs" and fields(report)["config_sha256"].kind == "input"


def test_different_package_versions_are_named(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    edit_json(run / "meta.json", versions={**meta["versions"], "transformers": "4.0.0"})
    reqs = (run / "requirements.txt").read_text().splitlines()
    reqs = [f"{ln.split('==')[0]}==0.0.1" if ln.lower().startswith("pyyaml==") else ln for ln in reqs]
    (run / "requirements.txt").write_text("\n".join(reqs + ["left-pad==1.0"]) + "\n")
    report = verify_run(run, steps=0)
    found = fields(report)
    assert found["versions.transformers"].recorded == "4.0.0" and found[
        "versions.transformers"
    ].now == metadata.version("transformers")
    assert found["package.pyyaml"].recorded == "0.0.1"
    assert found["package.left-pad"].now == "absent"
    assert {found[f].kind for f in ("versions.transformers", "package.pyyaml")} == {"environment"}
    assert report.verdict == "differs"  # a drift check alone: any drift differs


def test_uncommitted_code_changes_are_named(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    edit_json(run / "meta.json", git_commit="0" * 40, git_dirty=True)
    (run / "git.diff").write_text(
        "diff --git a/src/ledsweep/model.py b/src/ledsweep/model.py\n--- a/src/ledsweep/model.py\n"
        "+++ b/src/ledsweep/model.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    )
    report = verify_run(run, steps=0)
    found = fields(report)
    assert found["git_commit"].recorded == "0" * 40 and found["git_commit"].kind == "code"
    assert "src/ledsweep/model.py" in found["git_diff"].detail
    assert report.verdict == "differs"


def test_tampered_checkpoint_is_detected(baseline, tmp_path):
    run = copy_run(baseline, tmp_path)
    with open(run / "checkpoint" / "model.safetensors", "ab") as f:
        f.write(b"\0")
    report = verify_run(run, steps=0)
    assert report.verdict == "differs" and fields(report)["checkpoint_sha256"].kind == "input"


# ----------------------------------------------------------------------------- workflow
@pytest.mark.slow
def test_workflow_verify_target(tiny_sweep, tmp_path):
    wd = copy_tree(tiny_sweep, tmp_path / "wd")
    dry = snakemake(wd, *LOCAL, "-n")
    assert dry.returncode == 0 and "verify" not in jobs_run(dry.stdout), dry.stdout[-3000:]  # not in `rule all`
    proc = snakemake(wd, *LOCAL, targets=["results/sweeps/tiny/verify.csv"])
    assert proc.returncode == 0, proc.stdout[-6000:]
    with open(wd / "results/sweeps/tiny/verify.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    runs = ["tiny_lr0.001_seed1", "tiny_lr0.001_seed2", "tiny_lr0.002_seed1", "tiny_lr0.002_seed2"]
    assert sorted((r["run_name"], r["verdict"], r["exit_code"], r["steps"]) for r in rows) == [
        (run, "identical", "0", "12") for run in runs
    ], rows
    assert "verdict: identical" in (wd / "results/sweeps/tiny/logs/verify.log").read_text()
