"""Issue 13: bad input, concurrent use and failure messages, one test (or more) per numbered item.

Most tests call the library or the real CLIs on inputs that are refused before any training; the
ones that train stop after a few steps. Bad-input files live in tests/bad_inputs/ (test_bad_inputs.py,
test_sweep.py); the property-based test is tests/test_input_properties.py.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import PY, REPO, TINY, run_cli, write_config

from ledsweep import cli
from ledsweep import config as C
from ledsweep import schema as S
from ledsweep.errors import report_unexpected
from ledsweep.run import check_recorded_config
from ledsweep.runfolder import RunFolder, RunFolderError, RunLock, RunLocked, check_run_location
from ledsweep.sweep import SweepError, format_value, load_sweeps

HOLDER = (
    "import sys, time; sys.path.insert(0, sys.argv[2]); from ledsweep.runfolder import RunLock; "
    "RunLock(sys.argv[1], 'test holder').acquire(); print('held', flush=True); time.sleep(600)"
)


def hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run lock of run_dir (until killed)."""
    proc = subprocess.Popen([PY, "-c", HOLDER, str(run_dir), str(REPO / "src")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stderr_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def tiny_dict(**overrides) -> dict:
    data = yaml.safe_load(TINY.read_text())
    for dotted, value in overrides.items():
        C.set_dotted(data, dotted, value)
    return data


# ----------------------------------------------------------------------------- 1. run lock
def test_run_lock_is_exclusive_and_names_its_holder(tmp_path):
    holder = hold_lock(tmp_path / "run")
    try:
        info = json.loads((tmp_path / "run" / ".lock").read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname() and info["since"]
        t0 = time.monotonic()
        with pytest.raises(RunLocked) as err:
            RunLock(tmp_path / "run").acquire()
        assert time.monotonic() - t0 < 2, "a busy lock must be refused at once, not waited for"
        assert f"pid {holder.pid} on host {socket.gethostname()} since {info['since']}" in str(err.value)
        with pytest.raises(RunLocked):
            RunLock(tmp_path / "run").check_free()
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_never_blocks(tmp_path):
    holder = hold_lock(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / ".lock").read_text(), "the killed holder's info is still in the file"
    t0 = time.monotonic()
    with RunLock(tmp_path / "run", "rerun") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - t0 < 2
    assert (tmp_path / "run" / ".lock").read_text() == "", "released: no holder recorded"


def test_second_train_baseline_on_a_locked_run_exits_2_at_once(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results")
    holder = hold_lock(tmp_path / "results" / "tiny_run")
    try:
        t0 = time.monotonic()
        proc = run_cli("train_baseline.py", "--config", cfg, timeout=120)
        elapsed = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"in use by pid {holder.pid} on host {socket.gethostname()}" in proc.stderr
    assert "Traceback" not in proc.stderr and len(stderr_lines(proc)) == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["tiny_run"], "nothing prepared"
    assert [p.name for p in (tmp_path / "results" / "tiny_run").iterdir()] == [".lock"]
    assert elapsed < 30


@pytest.mark.slow
def test_concurrent_runs_on_one_folder_one_refused_and_a_kill_never_blocks(tmp_path):
    """The issue's reproduction: two trainings of one run with different learning rates."""
    a_cfg = write_config(tmp_path / "a.yaml", tmp_path / "results", training__max_steps=5000)
    b_cfg = write_config(
        tmp_path / "b.yaml", tmp_path / "results", training__max_steps=5000, training__learning_rate=3.0e-4
    )
    run = tmp_path / "results" / "tiny_run"
    a = subprocess.Popen(
        [PY, str(REPO / "scripts" / "train_baseline.py"), "--config", str(a_cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until A holds the lock and has written its config (it trains on)
            try:
                if (
                    json.loads((run / ".lock").read_text() or "null")["pid"] == a.pid
                    and (run / "config.yaml").is_file()
                ):
                    break
            except (FileNotFoundError, TypeError):
                pass
            assert a.poll() is None, "A ended early"
            time.sleep(0.2)
        else:
            raise AssertionError("A never took the run lock")
        recorded = (run / "config.yaml").read_text()
        b = run_cli("train_baseline.py", "--config", b_cfg, timeout=120)
        assert b.returncode == 2, b.stderr[-2000:]
        assert f"in use by pid {a.pid}" in b.stderr and "Traceback" not in b.stderr
        assert (run / "config.yaml").read_text() == recorded, "B must not touch A's folder"
        assert a.poll() is None, "A goes on"
    finally:
        a.kill()
        a.wait()
    # A was killed -9 while holding the lock: a rerun of A's config takes it at once
    c = run_cli("train_baseline.py", "--config", a_cfg, "--stage", "train", "--stop-after-step", "1", timeout=300)
    assert c.returncode == 143, c.stderr[-3000:]
    assert "in use" not in c.stderr


# ----------------------------------------------------------------------------- 2. values that failed later
INT_KEYS = [k for k, t in C.leaf_types().items() if "integer" in t]
NUMBER_KEYS = [k for k, t in C.leaf_types().items() if "integer" in t or "number" in t]


@pytest.mark.parametrize("key", INT_KEYS)
def test_integer_keys_refuse_whole_floats(key):
    valid = C.get_dotted(C.from_dict(tiny_dict()).to_dict(), key)
    value = float(valid if valid is not None else 4)
    C.from_dict(tiny_dict(**{key: int(value)}))  # the same number as an integer is fine
    with pytest.raises(C.ConfigError) as err:
        C.from_dict(tiny_dict(**{key: value}), "c.yaml")
    assert str(err.value) == f"c.yaml: {key}: expected an integer, got float {value!r} (write {int(value)})"


@pytest.mark.parametrize("key", NUMBER_KEYS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_number_keys_refuse_nan_and_infinity(key, value):
    with pytest.raises(C.ConfigError) as err:
        C.from_dict(tiny_dict(**{key: value}), "c.yaml")
    assert str(err.value).startswith(f"c.yaml: {key}: ") and "\n" not in str(err.value)


def test_seed_range_is_numpys():
    import numpy as np
    import torch

    assert C.from_dict(tiny_dict(seed=S.SEED_MAX)).seed == S.SEED_MAX
    np.random.seed(S.SEED_MAX)
    torch.manual_seed(S.SEED_MAX)  # the largest accepted seed works in both
    with pytest.raises(ValueError):
        np.random.seed(S.SEED_MAX + 1)
    with pytest.raises(C.ConfigError, match="seed: expected a value <= 4294967295"):
        C.from_dict(tiny_dict(seed=S.SEED_MAX + 1))


def test_optimizer_names_are_transformers_own():
    from transformers.training_args import OptimizerNames

    assert sorted(S.OPTIMIZERS) == sorted(o.value for o in OptimizerNames)
    with pytest.raises(C.ConfigError, match="training.optim: unknown optimizer 'adam_w'"):
        C.from_dict(tiny_dict(**{"training.optim": "adam_w"}))


def test_tracker_names_are_transformers_own():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert sorted(S.REPORT_TO) == sorted(set(INTEGRATION_TO_CALLBACK) - {"tensorboard"})
    with pytest.raises(C.ConfigError, match="training.report_to: unknown tracker 'wandbb' \\(did you mean 'wandb'"):
        C.from_dict(tiny_dict(**{"training.report_to": ["wandbb"]}))
    with pytest.raises(C.ConfigError, match="training.report_to: 'tensorboard' is always on"):
        C.from_dict(tiny_dict(**{"training.report_to": ["tensorboard"]}))


def test_scheduler_names_are_transformers_own():
    import typing

    from transformers.trainer_utils import SchedulerType

    hints = typing.get_type_hints(C.TrainingConfig)
    assert set(typing.get_args(hints["lr_scheduler_type"])) <= {s.value for s in SchedulerType}


def test_config_module_stays_free_of_torch():
    code = "import sys, ledsweep.config, ledsweep.sweep; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    out = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")}
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize(
    "grid,message",
    [
        ({"training.max_steps": [4, 8.0]}, "grid.training.max_steps: expected an integer, got float 8.0"),
        (
            {"training.learning_rate": [1e-3, math.nan]},
            "grid.training.learning_rate: expected a finite number, got nan",
        ),
        (
            {"generation.length_penalty": [math.inf]},
            "grid.generation.length_penalty: expected a finite number, got inf",
        ),
        ({"seed": [1, 2**32]}, "grid.seed: expected a value <= 4294967295"),
        ({"training.optim": ["sgd", "adam"]}, "grid.training.optim: unknown optimizer 'adam'"),
    ],
)
def test_sweep_values_follow_the_run_config_rules(grid, message):
    with pytest.raises(SweepError, match="sweep 's'") as err:
        load_sweeps({"sweeps": {"s": {"base": str(TINY), "grid": grid}}})
    assert message in str(err.value)
    point = {k: v[-1] for k, v in grid.items()}  # the same value in a run config: the same refusal
    with pytest.raises(C.ConfigError) as direct:
        C.from_dict(tiny_dict(**point))
    assert message.removeprefix("grid.") in str(direct.value)


# ----------------------------------------------------------------------------- 3. silent failures
def test_output_dir_that_is_a_file_fails_with_one_line(tmp_path, in_process):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder\n")
    cfg = write_config(tmp_path / "c.yaml", blocker)
    proc = in_process(cli.train_main, "--config", cfg)
    assert proc.returncode == 2
    assert stderr_lines(proc) == [
        f"error: output_dir: {blocker} is a file (or a broken link), not a folder; cannot create {blocker / 'tiny_run'}"
    ]
    assert blocker.read_text() == "not a folder\n"


def test_run_name_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "tiny_run").write_text("x")
    with pytest.raises(RunFolderError, match="run_name: .* is a file"):
        check_run_location(tmp_path / "tiny_run")


@pytest.mark.slow
def test_failure_in_a_run_prints_one_line_and_keeps_the_traceback_in_the_run(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", tmp_path, training__learning_rate=1.0e30, training__max_grad_norm=0.0)
    proc = run_cli("train_baseline.py", "--config", cfg, "--stage", "train")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in stderr_lines(proc) if " E " in ln or ln.startswith("error:")]
    assert len(errors) == 1 and "failed in train: training loss is" in errors[0], proc.stderr[-3000:]
    failure = json.loads((tmp_path / "tiny_run" / "failure.json").read_text())
    assert "Traceback (most recent call last)" in failure["traceback"]
    assert "NonFiniteLoss" in failure["traceback"].splitlines()[-1]


def test_failure_outside_a_run_folder_ends_with_one_line(capsys):
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError as e:
        report_unexpected(e)
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1] == "error: RuntimeError: boom; second line"


# ----------------------------------------------------------------------------- 4. '~' in paths
def test_tilde_is_expanded_in_every_path_key_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    data = tiny_dict(**{k: f"~/{k}" for k in S.PATH_KEYS})
    cfg = C.from_dict(data)
    for key in S.PATH_KEYS:
        assert C.get_dotted(cfg.to_dict(), key) == f"{tmp_path}/{key}", key
    assert cfg.run_dir == tmp_path / "output_dir" / "tiny_run"
    again = C.from_dict(cfg.to_dict())
    assert again == cfg  # idempotent: a resolved config.yaml resolves to itself
    # sweeps: the first grid point goes through from_dict, later ones are patched: both expanded
    s = load_sweeps({"sweeps": {"s": {"base": str(TINY), "grid": {"data.test_file": ["~/a.jsonl", "~/b.jsonl"]}}}})
    assert sorted(r.config["data"]["test_file"] for r in s["s"].runs.values()) == [
        f"{tmp_path}/a.jsonl",
        f"{tmp_path}/b.jsonl",
    ]


@pytest.mark.slow
def test_tilde_output_dir_puts_the_run_and_its_resume_state_in_home(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    cfg = write_config(tmp_path / "c.yaml", Path("~/out"))
    proc = run_cli(
        "train_baseline.py",
        "--config",
        cfg,
        "--stage",
        "train",
        "--stop-after-step",
        "1",
        cwd=cwd,
        env={"HOME": str(home)},
    )
    assert proc.returncode == 143, proc.stderr[-3000:]
    run = home / "out" / "tiny_run"
    assert (run / "config.yaml").is_file() and (run / "resume").is_dir()
    assert yaml.safe_load((run / "config.yaml").read_text())["output_dir"] == str(home / "out")
    assert list(cwd.iterdir()) == [], "no literal '~' folder"


# ----------------------------------------------------------------------------- 5. evaluate with another config
def fake_trained_run(output_dir: Path) -> Path:
    """A run folder of the tiny config as the train stage leaves it, as far as the checks read it."""
    cfg = C.load_config(write_config(output_dir.parent / "recorded.yaml", output_dir))
    run = cfg.run_dir
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "config.json").write_text("{}")
    (run / "config.yaml").write_text(C.dump_yaml(cfg.to_dict()))
    (run / "meta.json").write_text("{}")
    return run


def test_evaluate_with_a_different_config_is_refused_naming_the_keys(tmp_path, in_process):
    run = fake_trained_run(tmp_path / "results")
    before = sorted(p.name for p in run.iterdir())
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", training__learning_rate=3.0e-4, seed=7)
    proc = in_process(cli.train_main, "--config", cfg, "--stage", "evaluate", "--overwrite")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "differs from the config" in proc.stderr and "in seed, training.learning_rate;" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == before, "no failure.json, no summary.json"


def test_recorded_config_check_ignores_only_identity_keys(tmp_path):
    run = fake_trained_run(tmp_path / "results")
    same = C.load_config(write_config(tmp_path / "same.yaml", tmp_path / "elsewhere"))
    check_recorded_config(same, RunFolder(run))  # only output_dir differs
    other = C.load_config(
        write_config(
            tmp_path / "other.yaml", tmp_path / "results", evaluation__rouge_workers=2, data__max_target_length=30
        )
    )
    with pytest.raises(RunFolderError, match=r"in data\.max_target_length, evaluation\.rouge_workers;"):
        check_recorded_config(other, RunFolder(run))


def test_refused_input_marks_only_its_own_unfinished_run(tmp_path, in_process):
    """A run whose input broke gets failure.json; another config's run of the same name is left alone."""
    data = tmp_path / "test.jsonl"
    data.write_text((REPO / "data/demo/test.jsonl").read_text())
    mine = write_config(tmp_path / "mine.yaml", tmp_path / "results", data__test_file=str(data))
    run = tmp_path / "results" / "tiny_run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(C.dump_yaml(C.load_config(mine).to_dict()))
    data.unlink()  # the run's input broke
    other = write_config(tmp_path / "other.yaml", tmp_path / "results", data__test_file=str(data), seed=9)
    proc = in_process(cli.train_main, "--config", other)
    assert proc.returncode == 2 and "data.test_file" in proc.stderr, proc.stderr[-2000:]
    assert not (run / "failure.json").exists(), "another config's run is not ours to mark"
    proc = in_process(cli.train_main, "--config", mine)
    assert proc.returncode == 2 and "data.test_file" in proc.stderr, proc.stderr[-2000:]
    failure = json.loads((run / "failure.json").read_text())
    assert failure["stage"] == "preflight" and "data.test_file" in failure["reason"]


# ----------------------------------------------------------------------------- 6. run names of every grid point
def test_every_grid_point_name_is_checked():
    long = "d" * 190
    with pytest.raises(SweepError, match=r"sweep 's': data.text_column: the run name .* over the limit of 200"):
        load_sweeps({"sweeps": {"s": {"base": str(TINY), "grid": {"data.text_column": ["document", long]}}}})


@pytest.mark.parametrize(
    "value,text",
    [(1e20, "1e20"), (-2.5e-7, "2.5e-07"), ("a+b", "a-b"), ("x..y", "x.y"), ("../..", "x"), (1e300, "1e300")],
)
def test_format_value_emits_only_run_name_characters(value, text):
    assert format_value(value) == text


# ----------------------------------------------------------------------------- 7. run_sweeps: []
def test_empty_run_sweeps_is_an_error():
    spec = {"sweeps": {"a": {"base": str(TINY), "grid": {"seed": [1]}}}}
    with pytest.raises(SweepError, match=r"run_sweeps: expected a non-empty list of sweep names"):
        load_sweeps(spec, only=[])
    assert list(load_sweeps(spec, only=None)) == ["a"]


# ----------------------------------------------------------------------------- 8. summarize.py
@pytest.fixture
def existing_output(tmp_path) -> Path:
    out = tmp_path / "summaries.jsonl"
    out.write_text('{"document": "kept", "summary": "kept"}\n')
    return out


@pytest.mark.parametrize("option,value", [("--batch-size", "0"), ("--max-new-tokens", "-3"), ("--num-beams", "0")])
def test_summarize_refuses_bad_numbers(option, value, tmp_path, existing_output, in_process):
    before = existing_output.read_text()
    proc = in_process(
        cli.summarize_main,
        "--checkpoint",
        tmp_path,
        "--input",
        REPO / "data/demo/test.jsonl",
        "--output",
        existing_output,
        option,
        value,
    )
    assert proc.returncode == 2
    assert f"argument {option}: expected an integer >= 1, got {int(value)}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert existing_output.read_text() == before


def test_summarize_empty_input_has_no_rows(tmp_path, existing_output, in_process):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_bytes(b"")
    empty = REPO / "tests" / "bad_inputs" / "data" / "empty.jsonl"
    proc = in_process(cli.summarize_main, "--checkpoint", ckpt, "--input", empty, "--output", existing_output)
    assert proc.returncode == 2
    assert stderr_lines(proc) == [f"error: --input: {empty} has no rows"]
    assert existing_output.read_text() == '{"document": "kept", "summary": "kept"}\n'


def test_summarize_keeps_an_existing_output_when_the_model_fails_to_load(tmp_path, existing_output):
    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "led"}')
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 100)  # truncated weights
    proc = run_cli(
        "summarize.py",
        "--checkpoint",
        ckpt,
        "--input",
        REPO / "data/demo/test.jsonl",
        "--output",
        existing_output,
        timeout=120,
    )
    assert proc.returncode == 1
    assert stderr_lines(proc)[-1].startswith("error: ")
    assert existing_output.read_text() == '{"document": "kept", "summary": "kept"}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temp file left"


def test_summarize_refuses_a_checkpoint_without_weights(tmp_path, existing_output, in_process):
    (tmp_path / "config.json").write_text("{}")
    proc = in_process(
        cli.summarize_main, "--checkpoint", tmp_path, "--input", REPO / "data/demo/test.jsonl", "--output",
        existing_output,
    )  # fmt: skip
    assert proc.returncode == 2
    assert stderr_lines(proc) == [f"error: --checkpoint: {tmp_path} has no weights (model.safetensors)"]


def test_summarize_reads_every_input_format(tmp_path):
    import pandas as pd

    from ledsweep.summarize import read_documents

    rows = [{"document": 'one, "two"\nthree', "x": 1}, {"document": "four", "x": 2}]
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("d.parquet", "d.csv", "d.json", "d.jsonl"):
        assert read_documents(str(tmp_path / name), "document") == ['one, "two"\nthree', "four"], name
    with pytest.raises(C.ConfigError, match="--text-column: .* row 1 has no 'text' column"):
        read_documents(str(tmp_path / "d.jsonl"), "text")


# ----------------------------------------------------------------------------- 10. output_dir inside a run
def test_output_dir_inside_another_run_is_refused(tmp_path, in_process):
    other = fake_trained_run(tmp_path / "results")
    (other / "summary.json").write_text("{}")
    before = sorted(str(p) for p in other.rglob("*"))
    cfg = write_config(tmp_path / "c.yaml", other / "checkpoint")
    proc = in_process(cli.train_main, "--config", cfg)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"output_dir: {other / 'checkpoint'} is inside the run folder {other}" in proc.stderr
    assert len(stderr_lines(proc)) == 1
    assert sorted(str(p) for p in other.rglob("*")) == before


def test_unfinished_run_counts_as_a_run_folder(tmp_path):
    other = fake_trained_run(tmp_path / "results")  # config.yaml + meta.json, no summary.json yet
    with pytest.raises(RunFolderError, match="it has config.yaml and meta.json"):
        check_run_location(other / "nested" / "deeper" / "run")
    check_run_location(tmp_path / "results" / "sibling_run")  # next to a run: fine


# ----------------------------------------------------------------------------- issue 21: late errors, early
def test_broken_extra_metric_is_refused_before_training(tmp_path, in_process):
    """A local metric module with a syntax error (or an uncached hub metric) failed only after the whole
    training; now train_baseline.py loads every extra metric before it prepares or trains anything."""
    module = tmp_path / "broken" / "broken.py"
    module.parent.mkdir()
    module.write_text("import evaluate\n\n\nclass Broken(evaluate.Metric)  # no colon\n    pass\n")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", evaluation__extra_metrics=[str(module.parent)])
    proc = in_process(cli.train_main, "--config", cfg)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"evaluation.extra_metrics: '{module.parent}': evaluate cannot load it: SyntaxError" in proc.stderr
    assert not (tmp_path / "results").exists(), "refused before any folder or preparation"


def test_ledsweep_console_script_runs_each_command(tmp_path):
    """`[project.scripts]`: `ledsweep train|summarize|verify|compare|aggregate` are the scripts' commands."""
    exe = Path(PY).parent / "ledsweep"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and all(
        c in out.stdout for c in ("train", "summarize", "verify", "compare", "aggregate")
    )
    out = subprocess.run([exe, "nosuch"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown command 'nosuch'" in out.stderr
    missing = tmp_path / "nope.yaml"
    out = subprocess.run([exe, "train", "--config", missing], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("error:"), out.stderr
    assert str(missing) in out.stderr
    out = subprocess.run([exe, "compare", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: ledsweep compare") and "--top" in out.stdout
