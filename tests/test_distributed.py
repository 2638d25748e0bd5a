"""One run on several processes: torchrun + the Trainer's DDP (gloo on CPU), and the Slurm layouts.

The training tests run `torchrun --standalone --nproc-per-node 2 scripts/train_baseline.py` on the tiny
config (1 torch thread per process: the machine has 2 cores). Tolerance of a 2-process run against a
1-process run with the same global batch (2 x 4 vs 1 x 8): every step loss within rtol 5e-3 (measured:
max 1.3e-3 over 12 steps; dropout masks and the summation order differ).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PY, REPO, run_cli, write_config

from ledsweep import distributed
from ledsweep.runfolder import sha256_file

LOSS_RTOL = 5e-3


def torchrun(*args, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    import os

    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(REPO / "scripts" / "train_baseline.py"), *map(str, args), "--threads", "1"]
    return subprocess.run(
        cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "step_losses.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------- layouts (no training)
class _Resources(dict):
    __getattr__ = dict.__getitem__


def _documented_layouts() -> dict[str, tuple[dict, str]]:
    """profiles/default/config.yaml's `[layout: NAME]` blocks: (the profile settings, the sbatch line)."""
    text = (REPO / "profiles/default/config.yaml").read_text()
    out = {}
    for m in re.finditer(r"^# \[layout: ([^\]]+)\]\n((?:#   .*\n)+)((?:# (?:->|  ) .*\n)+)", text, re.M):
        settings = yaml.safe_load("".join(line[4:] + "\n" for line in m.group(2).splitlines()))
        sbatch = " ".join(line[5:] for line in m.group(3).splitlines())
        out[m.group(1)] = (settings, " ".join(sbatch.split()))
    return out


def test_documented_layouts_give_the_documented_sbatch_lines():
    """The executor plugin's own submit string, for the train job of each layout the profile documents."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    rule_threads = 2  # workflow/rules/run.smk, rule train
    layouts = _documented_layouts()
    assert set(layouts) == {"1 node x 4 GPUs", "2 nodes x 4 GPUs", "2 CPU processes (CI)"}
    expected_layout = {
        "1 node x 4 GPUs": distributed.Layout(1, 4),
        "2 nodes x 4 GPUs": distributed.Layout(2, 4),
        "2 CPU processes (CI)": distributed.Layout(1, 2),
    }
    for name, (settings, sbatch) in layouts.items():
        resources = _Resources({**profile["set-resources"]["train"], **settings["set-resources"]["train"]})
        threads = (settings.get("set-threads") or {}).get("train", rule_threads)
        job = type("Job", (), {"resources": resources, "threads": threads})()
        params = {
            "run_uuid": "RUN_UUID",
            "slurm_logfile": ".snakemake/slurm_logs/rule_train/RUN/%j.log",
            "comment_str": "rule_train_wildcards_RUN",
            "account": "",
            "partition": "",
            "workdir": "WORKDIR",
        }
        call = get_submit_command(job, params) + set_gres_string(job)
        assert " ".join(call.split()) == sbatch, name
        assert distributed.layout_from_resources(resources) == expected_layout[name], name


def test_launch_commands():
    spec = Path("/r/trained/.ddp-spec.json")
    one = distributed.launch_command(distributed.Layout(1, 4), spec, python="py")
    assert one == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"] + [
        "-m",
        "ledsweep.worker",
        str(spec),
    ]
    two = distributed.launch_command(distributed.Layout(2, 4), spec, "1234", "gpu07", python="py")
    assert two[:6] == ["srun", "--jobid=1234", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--rdzv-endpoint=gpu07:30734" in two and "--rdzv-id=1234" in two and "--nnodes=2" in two
    with pytest.raises(distributed.LaunchError, match="SLURM_JOB_ID is not set"):
        distributed.slurm_first_node(None)
    with pytest.raises(distributed.LaunchError, match="do not split evenly"):
        distributed.layout_from_resources({"gpu": 3, "nodes": 2})
    assert distributed.layout_from_resources({"gpu": 1}) == distributed.Layout(1, 1)  # no torchrun
    assert distributed.layout_from_resources({"gres": "gpu:a100:8", "nodes": 3}) == distributed.Layout(3, 8)


# ----------------------------------------------------------------------------- training (torchrun, gloo)
@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """A finished 2-process run (train + evaluate), 2 x 4 examples per step."""
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = write_config(
        tmp / "two.yaml",
        tmp / "results",
        training__per_device_train_batch_size=4,
        evaluation__bertscore_model=None,
    )
    proc = torchrun("--config", cfg)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return tmp / "results" / "tiny_run"


@pytest.mark.slow
def test_two_processes_one_run_folder_close_to_one_process(two_processes, tmp_path):
    run = two_processes
    assert sorted(p.name for p in run.parent.iterdir()) == ["prepared", "tiny_run"]  # one run folder
    assert (run / "summary.json").is_file() and (run / "checkpoint/model.safetensors").is_file()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["num_nodes"] == 1 and len(meta["rank_devices"]) == 2
    assert meta["effective_batch_size"] == 8 and meta["per_device_train_batch_size"] == 4
    assert meta["global_step"] == 12 and meta["attempts"] == 1
    for ckpt in (run / "resume").glob("checkpoint-*"):  # every rank's part, then the marker
        assert {"rng_state_0.pth", "rng_state_1.pth", "ledsweep-checkpoint-complete"} <= {
            p.name for p in ckpt.iterdir()
        }
    # one process, the same global batch (1 x 8)
    cfg = write_config(tmp_path / "one.yaml", tmp_path / "results", evaluation__bertscore_model=None)
    prepared = run.parent / "prepared"  # the same data settings: prepared once
    run_cli(
        "train_baseline.py",
        "--config",
        cfg,
        "--stage",
        "train",
        "--threads",
        "1",
        "--prepared-dir",
        prepared,
        check=True,
    )
    one, two = losses(tmp_path / "results/tiny_run"), losses(run)
    assert len(one) == len(two) == 12
    assert two == pytest.approx(one, rel=LOSS_RTOL)
    # verify_run.py replays it in one process (accumulation x 2): at best within tolerance
    out = run_cli("verify_run.py", run, "--steps", "4", "--rtol", str(LOSS_RTOL), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["verdict"] == "within tolerance", out.stdout[-3000:] + out.stderr[-2000:]
    assert any(d["field"] == "world_size" for d in report["differences"])


@pytest.mark.slow
def test_kill9_after_a_checkpoint_resumes_bitwise(two_processes, tmp_path):
    """Both ranks SIGKILLed at the start of step 10 (checkpoint-8 complete); the rerun resumes from it on
    2 processes and ends with the weights and step losses of the uninterrupted 2-process run."""
    cfg = write_config(
        tmp_path / "two.yaml",
        tmp_path / "results",
        training__per_device_train_batch_size=4,
        evaluation__bertscore_model=None,
    )
    prepared = ("--prepared-dir", two_processes.parent / "prepared")
    killed = torchrun("--config", cfg, "--stage", "train", *prepared, env={"LEDSWEEP_FAULT": "step:10"})
    assert killed.returncode != 0
    run = tmp_path / "results/tiny_run"
    assert not (run / "checkpoint").exists() and (run / "resume/checkpoint-8").is_dir()
    # issue 21.3: resumed on 1 process it would train on with half the batch: refused, naming both layouts
    attempts = (run / "resume/attempts.json").read_text()
    one = run_cli("train_baseline.py", "--config", cfg, "--stage", "train", "--threads", "1", *prepared)
    assert one.returncode == 2 and "Traceback" not in one.stderr, one.stderr[-3000:]
    assert "trained on 2 process(es) on 1 node(s), batch 4 x accumulation 1 (effective 8)" in one.stderr
    assert "would resume on 1 process(es) on 1 node(s), batch 4 x accumulation 1 (effective 4)" in one.stderr
    assert "--allow-layout-change" in one.stderr and (run / "resume/attempts.json").read_text() == attempts
    again = torchrun("--config", cfg, "--stage", "train", *prepared)
    assert again.returncode == 0, again.stderr[-6000:]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumes"] == 1 and meta["attempt_history"][-1]["resumed_from_step"] == 8
    assert meta["world_size"] == 2 and [a["layout"]["world_size"] for a in meta["attempt_history"]] == [2, 2]
    assert sha256_file(run / "checkpoint/model.safetensors") == sha256_file(
        two_processes / "checkpoint/model.safetensors"
    )
    assert losses(run) == losses(two_processes)


def test_resume_on_another_layout_is_refused_unless_asked(tmp_path, monkeypatch, caplog):
    """issue 21.3: a 1-process run resumed under torchrun with 2 trained on with twice the batch, and meta.json
    said world size 2 for the whole run. Each attempt records its layout; another one is refused unless asked."""
    from ledsweep.config import ConfigError
    from ledsweep.resume import ALLOW_LAYOUT_CHANGE, LAYOUT_KEYS, check_resume_layout
    from ledsweep.runfolder import RunFolder, write_json

    one = {"world_size": 1, "num_nodes": 1, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
    run = RunFolder(tmp_path / "run")
    run.resume.mkdir(parents=True)
    write_json(run.attempts, [{"layout": {**one, "effective_batch_size": 8}}])
    check_resume_layout(run, {**one, "effective_batch_size": 8, "rank_devices": ["h:cpu"]})  # the same: fine
    two = {**one, "world_size": 2, "effective_batch_size": 16}
    with pytest.raises(ConfigError, match=r"trained on 1 process\(es\) .* \(effective 8\), would resume on 2 .*16"):
        check_resume_layout(run, two)
    for key in LAYOUT_KEYS[1:]:  # nodes, batch and accumulation count as well
        with pytest.raises(ConfigError, match="--allow-layout-change"):
            check_resume_layout(run, {**one, key: 2, "effective_batch_size": 16})
    monkeypatch.setenv(ALLOW_LAYOUT_CHANGE, "1")
    check_resume_layout(run, two)
    assert "resumes on another layout, as asked" in caplog.text


def test_uneven_epochs_are_named_at_start():
    """issue 21.4: 3 processes x batch 5 on 64 examples matched 1 process x accumulation 3 only until the first
    epoch edge. When it holds (full global batches every epoch) and when not, said at the start of training."""
    layout = {"world_size": 3, "per_device_train_batch_size": 5}
    why = distributed.uneven_epoch(64, layout)
    assert why and "64 training examples are not a multiple of 3 processes x batch 5" in why
    assert "1 process x accumulation 3" in why
    assert distributed.uneven_epoch(60, layout) is None  # 4 full global batches of 15 per epoch
    assert distributed.uneven_epoch(64, {**layout, "world_size": 1}) is None  # one process: nothing to match
    assert distributed.uneven_epoch(64, {"world_size": 2, "per_device_train_batch_size": 4}) is None


def test_a_rank_trains_its_spec_like_train_baseline_and_reports_its_outcome(tmp_path, prepared, baseline):
    """`python -m ledsweep.worker SPEC` in one process (what each torchrun rank runs): the same weights as
    train_baseline.py, and rank 0's outcome file; a spec with bad training keys is exit 2, recorded nowhere."""
    from ledsweep import run, worker
    from ledsweep.config import load_config, training_part

    cfg = load_config(write_config(tmp_path / "tiny.yaml", tmp_path / "results"))
    trained = tmp_path / "results" / cfg.run_name / "trained"
    trained.mkdir(parents=True)
    spec = {
        "config": training_part(cfg),
        "run_dir": str(trained),
        "failure_dir": str(trained.parent),
        "prepared": str(run.prepare_for(cfg, str(prepared), 1)),
        "threads": 1,
        "stop_after": None,
        "restart": True,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert worker.worker_main(str(tmp_path / "spec.json")) == 0
    assert json.loads((trained / worker.RESULT_FILE).read_text()) == {"rc": 0}
    assert sha256_file(trained / "checkpoint" / "model.safetensors") == sha256_file(
        baseline / "checkpoint" / "model.safetensors"
    )
    bad = tmp_path / "bad" / "trained"
    bad.mkdir(parents=True)
    spec.update(config={**spec["config"], "seed": -1}, run_dir=str(bad), failure_dir=str(bad.parent))
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    assert worker.worker_main(str(tmp_path / "bad.json")) == 2
    assert json.loads((bad / worker.RESULT_FILE).read_text()) == {"rc": 2}
    assert not (bad.parent / "failure.json").exists()  # bad input is said in the log, not a run's failure


def test_several_nodes_need_the_mpi_resource(tmp_path):
    from ledsweep.runfolder import RunFolder
    from ledsweep.worker import Followers, train_ranks

    with pytest.raises(distributed.LaunchError, match="needs the resources mpi"):
        train_ranks(RunFolder(tmp_path), distributed.Layout(2, 1), {}, tmp_path, 2, None, mpi=None)
    followers = Followers()
    assert followers.told  # outside torchrun there is no one to tell: tell/done are no-ops
    followers.done(0)
