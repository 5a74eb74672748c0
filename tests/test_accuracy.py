"""The accuracy targets: on the corpus test split, and on registers the model was not trained on.

In-corpus scores are an upper bound (the corpus is written, not a real intake). What
matters is how the model and its review flag do on a register it has not seen: the
training protocol scores every training clue with a model that never saw its register
(``metrics.out_of_register`` and ``registers`` in the manifest), and those are the
targets held here. ``scripts/transfer.py`` prints the full leave-one-register-out table.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.intake.triage import classify_texts
from pipeline.model.corpus import load_corpus, split
from pipeline.model.evaluate import evaluate_model
from pipeline.model.train import train_on_corpus


@pytest.fixture(scope="module")
def outcome():
    return train_on_corpus(load_corpus(), seed=0)


@pytest.fixture(scope="module")
def scores(outcome):
    corpus = load_corpus()
    return evaluate_model(outcome.model, split(corpus, "test"), "test", "model", split(corpus, "train"))


def test_targets_on_the_test_split(scores):
    ev, _ = scores
    assert ev.heads["area"].macro_f1 >= 0.88
    assert ev.heads["attention"].macro_f1 >= 0.82
    assert ev.heads["attention"].per_class["further"].recall >= 0.85


def test_traditional_is_not_worse_than_simplified(scores):
    """(Both scripts of one text get the same prediction: tests/test_model.py.)"""
    ev, _ = scores
    for head in ("attention", "area"):
        assert ev.by_script["traditional"][head] >= ev.by_script["simplified"][head] - 0.03


def test_model_beats_both_baselines(scores):
    ev, baselines = scores
    for baseline in baselines:
        for head in ("attention", "area"):
            assert ev.heads[head].macro_f1 > baseline.heads[head].macro_f1 + 0.2, baseline.name


def test_probabilities_are_calibrated_out_of_register_and_never_overconfident_in_it(outcome, scores):
    """Calibration is fitted for text the model has not seen; on more of the same (the test
    split) a confidence may be low, never high: a confident wrong answer is the worst outcome."""
    oor = outcome.manifest["metrics"]["out_of_register"]
    assert oor["attention_ece"] < 0.06 and oor["area_ece"] < 0.06
    ev, _ = scores
    corpus = load_corpus()
    test = split(corpus, "test")
    results = classify_texts(outcome.model, [c.text for c in test])
    for head in ("attention", "area"):
        conf = np.mean([getattr(r, f"{head}_conf") for r in results])
        assert conf <= ev.heads[head].accuracy + 0.02, (head, conf, ev.heads[head].accuracy)


def test_review_flag_targets_on_registers_the_model_did_not_see(outcome):
    th = outcome.manifest["thresholds"]
    oor = outcome.manifest["metrics"]["out_of_register"]
    assert th["targets_met"]
    assert th["unflagged_accuracy"]["attention"] >= 0.90
    assert th["unflagged_accuracy"]["area"] >= 0.95
    # the ceiling is 0.40 and it is not met (docs/model.md): the thresholds keeping
    # unflagged clues right 91 % / 96 % flagged 0.46 of the out-of-register predictions
    # before corpus wave 3 and 0.50 with its harder text; a floor just above today's figure
    assert th["flagged_share"] <= 0.52
    assert "possible_further" in th["needs_review"]
    assert oor["further_recall"] >= 0.90
    # every register: a floor under today's figures (docs/model.md has the table)
    for name, row in outcome.manifest["registers"].items():
        assert row["attention_unflagged_accuracy"] >= 0.70, name
        assert row["area_unflagged_accuracy"] >= 0.88, name
        assert row["flagged"] <= 0.70, name
    # `further` clues neither called `further` nor flagged: nobody looks at them again
    missed = [row["further_missed_unflagged"] for row in outcome.manifest["registers"].values()
              if row["further_missed_unflagged"] == row["further_missed_unflagged"]]
    assert np.mean(missed) <= 0.06 and max(missed) <= 0.20


SHORT_ALLEGATIONS = [
    "局长多次收受红包",
    "科长挪用公款",
    "书记违规提拔亲属",
    "站长篡改监测数据",
    "副局长收受企业购物卡",
    "村支书侵占征地补偿款",
    "所长公车私用",
    "队长充当保护伞",
    "主任虚报冒领补贴",
    "局長多次收受紅包",
]


@pytest.mark.parametrize("text", SHORT_ALLEGATIONS)
def test_a_short_allegation_is_never_archived_unseen(outcome, text):
    """A few words accusing an identifiable target of misconduct: never `reference` unflagged."""
    (result,) = classify_texts(outcome.model, [text])
    assert result.attention != "reference" or result.needs_review, (result.attention, result.attention_conf)
