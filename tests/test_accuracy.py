"""The accuracy targets, on the corpus test split, through the same code as `evaluate`."""

from __future__ import annotations

import pytest

from pipeline.corpus import load_corpus, split
from pipeline.evaluate import evaluate_model
from pipeline.train import train_on_corpus


@pytest.fixture(scope="module")
def scores():
    corpus = load_corpus()
    model = train_on_corpus(corpus, seed=0).model
    return evaluate_model(model, split(corpus, "test"), "test", "model", split(corpus, "train"))


def test_targets_on_the_test_split(scores):
    ev, _ = scores
    assert ev.heads["area"].macro_f1 >= 0.88
    assert ev.heads["attention"].macro_f1 >= 0.82
    assert ev.heads["attention"].per_class["further"].recall >= 0.85


def test_traditional_within_003_of_simplified(scores):
    ev, _ = scores
    for head in ("attention", "area"):
        assert abs(ev.by_script["traditional"][head] - ev.by_script["simplified"][head]) <= 0.03


def test_model_beats_both_baselines(scores):
    ev, baselines = scores
    for baseline in baselines:
        for head in ("attention", "area"):
            assert ev.heads[head].macro_f1 > baseline.heads[head].macro_f1 + 0.2, baseline.name


def test_probabilities_are_calibrated(scores):
    ev, _ = scores
    assert ev.heads["attention"].ece < 0.06
    assert ev.heads["area"].ece < 0.06
