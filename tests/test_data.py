"""Real-sized data path: Arrow splits prepared once and shared, bounded memory, resumes that never mix data,
long inputs, position limits checked before any folder exists."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import yaml
from conftest import REPO, run_cli, summary_metrics, write_config
from workflow_helpers import make_workdir, snakemake

from ledsweep.config import ConfigError, load_config
from ledsweep.data import MANIFEST, data_key, data_spec
from ledsweep.runfolder import sha256_file
from ledsweep.sweep import SweepError, load_sweeps

DEMO = REPO / "data" / "demo"


def demo_rows(split: str, n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (DEMO / f"{split}.jsonl").read_text().splitlines()]
    return rows[:n] if n else rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# ----------------------------------------------------------------------------- 1: datasets, every format
def test_prepared_splits_are_memory_mapped_arrow_with_exact_tokens(tmp_path):
    from datasets import Dataset
    from transformers import AutoTokenizer

    from ledsweep.data import load_prepared
    from ledsweep.prepare import ensure_prepared

    cfg = load_config(write_config(tmp_path / "c.yaml", tmp_path / "results"))
    path, manifest = ensure_prepared(cfg, tmp_path / "prepared", num_proc=1)
    assert path.name == data_key(data_spec(cfg)) == manifest["key"]
    train = load_prepared(path, "train")
    assert isinstance(train, Dataset) and train.cache_files, "read back memory-mapped from disk, not built in memory"
    assert manifest["rows"] == {"train": 64, "validation": 16, "test": 16}
    tok = AutoTokenizer.from_pretrained(path / "tokenizer")
    docs = [r["document"] for r in demo_rows("train", 64)]
    assert train["input_ids"] == tok(docs, max_length=256, truncation=True)["input_ids"]
    full = [len(x) for x in tok(docs)["input_ids"]]
    src = manifest["token_lengths"]["train"]["source"]
    assert src["max"] == max(full) and src["tokens"] == sum(full)
    assert src["truncated_share"] == pytest.approx(sum(n > 256 for n in full) / len(full))
    for split, rec in manifest["data_files"].items():
        assert rec["sha256"] == sha256_file(DEMO / f"{split}.jsonl")
    assert len(manifest["tokenizer_sha256"]) == 64 and manifest["fingerprint"]
    test = load_prepared(path, "test", ("reference",))
    assert test["reference"] == [r["summary"] for r in demo_rows("test", 16)]


def test_csv_and_parquet_give_the_same_prepared_data_as_jsonl(tmp_path):
    import pandas as pd

    from ledsweep.data import load_prepared
    from ledsweep.prepare import ensure_prepared

    got = {}
    for fmt in ("jsonl", "csv", "parquet"):
        files = {}
        for split in ("train", "validation", "test"):
            df = pd.DataFrame(demo_rows(split, 80))
            path = tmp_path / f"{split}.{fmt}"
            if fmt == "jsonl":
                write_jsonl(path, demo_rows(split, 80))
            elif fmt == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path)
            files[f"data__{split}_file"] = str(path)
        cfg = load_config(write_config(tmp_path / f"{fmt}.yaml", tmp_path / "results", **files))
        path, _ = ensure_prepared(cfg, tmp_path / "prepared", num_proc=1)
        got[fmt] = (load_prepared(path, "train")["input_ids"], load_prepared(path, "test")["labels"])
    assert got["jsonl"] == got["csv"] == got["parquet"]


def test_bad_rows_are_refused_naming_the_file_and_nothing_is_written(tmp_path):
    rows = demo_rows("train", 20)
    rows[7]["summary"] = None
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", data__train_file=bad)
    proc = run_cli("train_baseline.py", "--config", cfg, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.train_file" in proc.stderr and "bad.jsonl" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- 2: once per data setting
@pytest.mark.slow
def test_train_baseline_reuses_prepared_data_across_runs(tmp_path):
    a = write_config(tmp_path / "a.yaml", tmp_path / "results", training__max_steps=2, evaluation__bertscore_model=None)
    b = write_config(
        tmp_path / "b.yaml",
        tmp_path / "results",
        run_name="tiny_b",
        training__learning_rate=2.0e-3,
        seed=7,
        training__max_steps=2,
        evaluation__bertscore_model=None,
    )
    first = run_cli("train_baseline.py", "--config", a, check=True)
    assert "preparing data into" in first.stderr
    prepared = list((tmp_path / "results" / "prepared").iterdir())
    [folder] = [p for p in prepared if p.is_dir()]
    created = json.loads((folder / MANIFEST).read_text())["created"]
    second = run_cli("train_baseline.py", "--config", b, check=True)
    assert "reused" in second.stderr and "preparing data into" not in second.stderr
    assert json.loads((folder / MANIFEST).read_text())["created"] == created
    metas = [json.loads((tmp_path / "results" / r / "meta.json").read_text()) for r in ("tiny_run", "tiny_b")]
    assert metas[0]["prepared_data"]["key"] == metas[1]["prepared_data"]["key"] == folder.name
    assert metas[0]["prepared_data"]["tokenizer_sha256"] == metas[1]["prepared_data"]["tokenizer_sha256"]


def test_workflow_prepares_once_per_data_setting(tmp_path):
    """Two sweeps (4 + 2 runs) on the same data and lengths share one prepare_data job; a sweep over
    data.max_source_length needs one per length. Seeds and learning rates never re-prepare."""
    sweeps = {
        "run_sweeps": ["a", "b", "c"],
        "sweeps": {
            "a": {"base": "config/tiny_run.yaml", "grid": {"training.learning_rate": [1.0e-3, 2.0e-3], "seed": [1, 2]}},
            "b": {"base": "config/tiny_run.yaml", "grid": {"seed": [3, 4]}},
            "c": {"base": "config/tiny_run.yaml", "grid": {"data.max_source_length": [128, 192]}},
        },
    }
    (tmp_path / "sweeps.yaml").write_text(yaml.safe_dump(sweeps))
    wd = make_workdir(tmp_path / "wd", tmp_path / "sweeps.yaml")
    proc = snakemake(wd, "-n", "--profile", "profiles/local", "--quiet", "rules")
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = {
        ln.split()[0]: int(ln.split()[1])
        for ln in proc.stdout.splitlines()
        if len(ln.split()) == 2 and ln.split()[1].isdigit()
    }
    assert counts["prepare_data"] == 3 and counts["train"] == 8, proc.stdout


# ----------------------------------------------------------------------------- 4: length-grouped batching
@pytest.mark.slow
def test_group_by_length_stays_bitwise_resumable(tmp_path, prepared):
    common = dict(training__group_by_length=True, evaluation__bertscore_model=None)
    ref = write_config(tmp_path / "ref.yaml", tmp_path / "ref", **common)
    run_cli("train_baseline.py", "--config", ref, check=True, prepared=prepared)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "cut", **common)
    assert run_cli("train_baseline.py", "--config", cfg, "--stop-after-step", "5", prepared=prepared).returncode == 143
    run_cli("train_baseline.py", "--config", cfg, check=True, prepared=prepared)
    a, b = tmp_path / "ref" / "tiny_run", tmp_path / "cut" / "tiny_run"
    assert (a / "step_losses.jsonl").read_text() == (b / "step_losses.jsonl").read_text()
    assert sha256_file(a / "checkpoint/model.safetensors") == sha256_file(b / "checkpoint/model.safetensors")
    plain = write_config(tmp_path / "plain.yaml", tmp_path / "plain", evaluation__bertscore_model=None)
    run_cli("train_baseline.py", "--config", plain, check=True, prepared=prepared)
    assert (tmp_path / "plain/tiny_run/step_losses.jsonl").read_text() != (a / "step_losses.jsonl").read_text()


# ----------------------------------------------------------------------------- 5: resume never mixes data
@pytest.mark.slow
def test_resume_refuses_data_changed_since_the_first_attempt(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", demo_rows("train", 64))
    cfg = write_config(
        tmp_path / "c.yaml", tmp_path / "results", data__train_file=train, evaluation__bertscore_model=None
    )
    killed = run_cli("train_baseline.py", "--config", cfg, env={"LEDSWEEP_FAULT": "after_save:4"})
    assert killed.returncode == -signal.SIGKILL
    write_jsonl(tmp_path / "train.jsonl", demo_rows("train")[100:164])  # other documents, same path
    proc = run_cli("train_baseline.py", "--config", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"{train} and the tokenizer changed since this run started" in proc.stderr and "--overwrite" in proc.stderr
    run = tmp_path / "results" / "tiny_run"
    assert (run / "resume" / "checkpoint-4").is_dir() and not (run / "summary.json").exists()
    # --overwrite starts over on the new data: the same result as a fresh run on it
    run_cli("train_baseline.py", "--config", cfg, "--overwrite", check=True)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["resumes"] == 0 and meta["data_sha256"][train] == sha256_file(train)
    fresh = write_config(
        tmp_path / "f.yaml", tmp_path / "fresh", data__train_file=train, evaluation__bertscore_model=None
    )
    run_cli("train_baseline.py", "--config", fresh, check=True)
    assert sha256_file(run / "checkpoint/model.safetensors") == sha256_file(
        tmp_path / "fresh/tiny_run/checkpoint/model.safetensors"
    )


@pytest.mark.slow
def test_evaluate_only_refuses_data_changed_since_training(tmp_path):
    """issue 21.2: `--stage train`, a changed training file, `--stage evaluate` prepared the data again with a new
    scratch tokenizer and evaluated with it (exit 0). Now: exit 2 naming what changed, nothing prepared anew;
    with the data restored, the evaluation runs on exactly the data of the training."""
    rows = demo_rows("train", 64)
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    common = dict(data__train_file=train, evaluation__bertscore_model=None)
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", **common)
    run_cli("train_baseline.py", "--config", cfg, "--stage", "train", check=True)
    run = tmp_path / "results" / "tiny_run"
    [manifest] = (tmp_path / "results" / "prepared").glob(f"*/{MANIFEST}")
    prepared_before = manifest.read_bytes()
    write_jsonl(tmp_path / "train.jsonl", demo_rows("train")[100:164])  # other documents, same path
    proc = run_cli("train_baseline.py", "--config", cfg, "--stage", "evaluate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"data.train_file ({train}) changed since the run was trained on it" in proc.stderr
    assert manifest.read_bytes() == prepared_before and not (run / "summary.json").exists()
    # another run of the same data setting prepares the new data: the checkpoint still refuses it
    other = write_config(tmp_path / "o.yaml", tmp_path / "results", run_name="other", **common)
    assert run_cli("train_baseline.py", "--config", other, "--stop-after-step", "1").returncode == 143
    proc = run_cli("train_baseline.py", "--config", cfg, "--stage", "evaluate")
    assert proc.returncode == 2 and f"{train} and the tokenizer changed since its checkpoint" in proc.stderr
    assert not (run / "summary.json").exists()
    # the data restored: prepared again, the same fingerprint as at training, evaluated
    write_jsonl(tmp_path / "train.jsonl", rows)
    run_cli("train_baseline.py", "--config", cfg, "--stage", "evaluate", check=True)
    meta, summary = (json.loads((run / f).read_text()) for f in ("meta.json", "summary.json"))
    assert json.loads(manifest.read_text())["fingerprint"] == meta["prepared_data"]["fingerprint"]
    assert summary["prepared_data"] == meta["prepared_data"]["key"]


@pytest.mark.slow
def test_verify_reports_replaced_data(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", demo_rows("train", 64))
    cfg = write_config(
        tmp_path / "c.yaml",
        tmp_path / "results",
        data__train_file=train,
        training__max_steps=2,
        evaluation__bertscore_model=None,
    )
    run_cli("train_baseline.py", "--config", cfg, check=True)
    write_jsonl(tmp_path / "train.jsonl", demo_rows("train")[100:164])
    proc = run_cli("verify_run.py", tmp_path / "results" / "tiny_run", "--steps", "0")
    assert proc.returncode == 2 and "differs" in proc.stdout, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- 6: long inputs
LONG = dict(
    model__attention_window=256,
    model__max_encoder_position_embeddings=4096,
    model__encoder_layers=1,
    model__decoder_layers=1,
    data__max_source_length=4096,
    data__max_train_samples=8,
    data__max_eval_samples=2,
    data__max_predict_samples=2,
    training__per_device_train_batch_size=2,
    training__per_device_eval_batch_size=2,
    training__max_steps=4,
    training__save_steps=2,
    training__eval_steps=None,
    training__logging_steps=1,
    evaluation__bertscore_model=None,
)


def long_documents(tmp_path) -> dict:
    """Each document: 40 demo documents glued together (about 11,000 tokens with the tiny tokenizer)."""
    rows, files, start = demo_rows("train"), {}, 0
    for split, n in (("train", 8), ("validation", 2), ("test", 2)):
        long = []
        for _ in range(n):
            block, start = rows[start : start + 40], start + 40
            long.append({"document": " ".join(r["document"] for r in block), "summary": block[0]["summary"]})
        files[f"data__{split}_file"] = write_jsonl(tmp_path / f"long_{split}.jsonl", long)
    return files


@pytest.mark.slow
def test_long_inputs_4096_tokens_train_evaluate_and_resume(tmp_path):
    files = long_documents(tmp_path)
    ref = write_config(tmp_path / "ref.yaml", tmp_path / "ref", **LONG, **files)
    run_cli("train_baseline.py", "--config", ref, check=True, timeout=600)
    run = tmp_path / "ref" / "tiny_run"
    manifest = json.loads(next((tmp_path / "ref" / "prepared").glob(f"*/{MANIFEST}")).read_text())
    assert manifest["token_lengths"]["train"]["source"]["p50"] > 4096  # really long, really truncated
    assert manifest["token_lengths"]["train"]["source"]["truncated_share"] == 1.0
    log = [json.loads(x) for x in (run / "log_history.jsonl").read_text().splitlines()]
    assert log[0]["num_input_tokens_seen"] == 2 * 4096  # two full 4,096-token inputs per step
    assert set(summary_metrics(run)) >= {"loss", "rougeL"}
    cut = write_config(tmp_path / "cut.yaml", tmp_path / "cut", **LONG, **files)
    assert run_cli("train_baseline.py", "--config", cut, "--stop-after-step", "2", timeout=600).returncode == 143
    run_cli("train_baseline.py", "--config", cut, check=True, timeout=600)
    assert sha256_file(run / "checkpoint/model.safetensors") == sha256_file(
        tmp_path / "cut/tiny_run/checkpoint/model.safetensors"
    )
    assert summary_metrics(run) == summary_metrics(tmp_path / "cut" / "tiny_run")


def make_local_model(folder, max_source: int = 512, max_target: int = 64):
    from transformers import LEDConfig, LEDForConditionalGeneration

    config = LEDConfig(
        vocab_size=300,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        attention_window=32,
        max_encoder_position_embeddings=max_source,
        max_decoder_position_embeddings=max_target,
    )
    LEDForConditionalGeneration(config).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("data__max_source_length", 1024, "data.max_source_length: 1024 exceeds the model's 512 encoder positions"),
        ("data__max_target_length", 100, "data.max_target_length: 100 exceeds the model's 64 decoder positions"),
        ("generation__max_new_tokens", 64, "generation.max_new_tokens: 64 exceeds the model's decoder positions"),
    ],
)
def test_lengths_beyond_a_local_models_positions_are_refused_before_any_folder(tmp_path, key, value, message):
    model = make_local_model(tmp_path / "led")
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "results", model__name=model, **{key: value})
    proc = run_cli("train_baseline.py", "--config", cfg, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()
    # the same check when a sweep is expanded (snakemake -n): no job is ever planned
    dotted = key.replace("__", ".")
    base = yaml.safe_load(cfg.read_text())
    base[dotted.split(".")[0]][dotted.split(".")[1]] = 8
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"sweeps": {"s": {"base": str(tmp_path / "base.yaml"), "grid": {dotted: [8, value]}}}}
    with pytest.raises(SweepError, match=message.split(":")[0]):
        load_sweeps(spec)


def test_config_example_for_led_base_16384_is_valid_offline():
    """config/examples/: the documented fine-tuning recipe validates (no download needed)."""
    path = REPO / "config" / "examples" / "led_base_16384_pubmed.yaml"
    cfg = load_config(path)
    assert cfg.model.name == "allenai/led-base-16384" and cfg.data.dataset_name
    assert cfg.data.max_source_length == 8192 and cfg.training.precision == "bf16"
    assert cfg.training.gradient_checkpointing and cfg.generation.num_beams == 4
    assert cfg.generation.max_new_tokens == 256


def test_damaged_prepared_data_is_prepared_again_or_named(tmp_path, caplog):
    """issue 21.9: a truncated Arrow file in a prepared folder was reused, and every rerun failed in pyarrow
    naming no folder. The manifest records each file's size: a reuse prepares a damaged folder again, and a
    job handed one (the workflow's train and evaluate) refuses it naming the folder and the fix."""
    from ledsweep.data import check_prepared, load_prepared, prepared_damage, read_manifest
    from ledsweep.prepare import ensure_prepared

    cfg = load_config(write_config(tmp_path / "c.yaml", tmp_path / "results"))
    path, manifest = ensure_prepared(cfg, tmp_path / "prepared", num_proc=1)
    assert manifest["files"] and not prepared_damage(path, manifest)
    [arrow] = (path / "train").glob("*.arrow")
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(ConfigError, match=rf"{path}: the prepared data is damaged \(train/.*\.arrow is \d+ bytes"):
        check_prepared(path, read_manifest(path))
    again, rebuilt = ensure_prepared(cfg, tmp_path / "prepared", num_proc=1)
    assert again == path and "is damaged" in caplog.text and "preparing it again" in caplog.text
    assert rebuilt["fingerprint"] == manifest["fingerprint"] and not prepared_damage(path, rebuilt)
    assert len(load_prepared(path, "train")["input_ids"]) == 64


def test_data_change_names_only_the_changed_files(tmp_path, caplog):
    """issue 21: the workflow's restart on changed data named every data file as changed (its trained/meta.json,
    a train job's output, is removed before the job runs). Each attempt records what it trained on."""
    from ledsweep.resume import DataChanged, check_resume_data
    from ledsweep.runfolder import RunFolder, write_json

    run = RunFolder(tmp_path / "run")
    run.resume.mkdir(parents=True)
    attempt = {"data_fingerprint": "old", "data_sha256": {"a.jsonl": "1", "b.jsonl": "2"}, "tokenizer_sha256": "t"}
    write_json(run.attempts, [attempt])
    files = {"train": {"path": "a.jsonl", "sha256": "9"}, "test": {"path": "b.jsonl", "sha256": "2"}}
    manifest = {"fingerprint": "new", "tokenizer_sha256": "t", "data_files": files}
    with pytest.raises(DataChanged, match=rf"{run.path}: a.jsonl changed since this run started"):
        check_resume_data(run, manifest, restart_on_change=False)
    check_resume_data(run, manifest, restart_on_change=True)  # no meta.json, as in a workflow train job
    assert "a.jsonl changed since run started: discarding its resume state" in caplog.text
    assert "b.jsonl" not in caplog.text and not run.resume.exists()


def test_prepare_errors_name_the_key(tmp_path):
    from ledsweep.prepare import prepare_data

    spec = data_spec(load_config(write_config(tmp_path / "c.yaml", tmp_path, data__text_column="missing")))
    with pytest.raises(ConfigError, match="data.text_column: column 'missing' not found"):
        prepare_data(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    shutil.rmtree(tmp_path, ignore_errors=True)


# ----------------------------------------------------------------------------- data files are workflow inputs
def plan(proc) -> dict[str, int]:
    """Jobs per rule in the `snakemake -n --quiet rules` table."""
    return {
        ln.split()[0]: int(ln.split()[1])
        for ln in proc.stdout.splitlines()
        if len(ln.split()) == 2 and ln.split()[1].isdigit() and ln.split()[0] != "total"
    }


@pytest.mark.slow
def test_changed_data_file_re_prepares_and_retrains(tmp_path):
    """After a finished sweep, a data file edited in place (same path) plans one prepare_data and a
    retrain and re-evaluation of every run on it: Snakemake sees the change (data files are inputs of
    prepare_data), with no hashing of our own."""
    data = tmp_path / "data"
    data.mkdir()
    files = {f"data.{s}_file": str(shutil.copy(DEMO / f"{s}.jsonl", data)) for s in ("train", "validation", "test")}
    sweeps = {
        "sweeps": {
            "d": {
                "base": "config/tiny_run.yaml",
                "grid": {"seed": [1, 2]},
                "set": {"evaluation.bertscore_model": None, **files},
            }
        }
    }
    (tmp_path / "sweeps.yaml").write_text(yaml.safe_dump(sweeps))
    wd = make_workdir(tmp_path / "wd", tmp_path / "sweeps.yaml")
    local = ("--profile", "profiles/local", "--set-threads", "train=1", "evaluate=1")
    proc = snakemake(wd, *local)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert (wd / "results/sweeps/d/comparison.csv").read_text().count(",completed,") == 2
    proc = snakemake(wd, *local, "-n", "--quiet", "rules")
    assert proc.returncode == 0 and not {"prepare_data", "train", "evaluate"} & set(plan(proc)), proc.stdout[-3000:]

    rows = demo_rows("train")
    rows[0]["document"] += " Edited."
    write_jsonl(data / "train.jsonl", rows)  # in place: the path in every config stays the same
    proc = snakemake(wd, *local, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = plan(proc)
    assert (counts.get("prepare_data"), counts.get("train"), counts.get("evaluate")) == (1, 2, 2), proc.stdout
