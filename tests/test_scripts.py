"""The measuring scripts' own arithmetic (``scripts/``), on small made-up predictions."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.intake.triage import Result
from pipeline.model.train import Example

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def transfer():
    spec = importlib.util.spec_from_file_location("transfer", SCRIPTS / "transfer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clues(n_right: int, n_wrong: int, wrong_conf: float):
    """``n_right`` right answers at confidence 0.95 and ``n_wrong`` wrong ones (attention
    only) at ``wrong_conf``; every clue familiar and without a misconduct term."""
    held, results = [], []
    for i in range(n_right + n_wrong):
        right = i < n_right
        held.append(Example(f"某局办公室第{i}次整改台账", "aware", "policy"))
        results.append(
            Result(
                "ok",
                attention="aware" if right else "reference",
                attention_conf=0.95 if right else wrong_conf,
                area="policy",
                area_conf=0.95,
                familiarity=1.0,
            )
        )
    return held, results


def test_frontier_finds_the_fewest_flags_when_the_errors_are_the_unsure_ones(transfer):
    held, results = _clues(80, 20, wrong_conf=0.50)
    fewest, best = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    assert fewest == pytest.approx(0.20)  # flag exactly the 20 unsure (and wrong) clues
    assert best == (1.0, 1.0)


def test_frontier_flags_everything_when_the_errors_are_confident(transfer):
    held, results = _clues(70, 30, wrong_conf=0.99)  # wrong and surer than the right ones
    fewest, best = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    # flagging by attention keeps the wrong (surer) clues; only flagging every clue, which an
    # area threshold above 0.95 does, meets the targets
    assert fewest == 1.0
    assert best == (pytest.approx(0.70), 1.0)  # flagging nothing is the best within the budget


def test_frontier_keeps_the_familiarity_floor(transfer):
    held, results = _clues(80, 20, wrong_conf=0.50)
    for r in results[:50]:
        r.familiarity = 0.1  # under the floor: flagged whatever the thresholds
    fewest, _ = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    assert fewest == pytest.approx(0.70)


def test_frontier_also_chooses_the_possible_further_threshold(transfer):
    """Wrong `aware` calls as sure as the right ones but with some probability of `further`:
    only the possible-`further` threshold tells them apart."""
    held, results = _clues(70, 30, wrong_conf=0.95)
    for i in range(70, 100):
        held[i] = Example(held[i].text, "further", "policy")  # the truth is `further`; called `aware`
    further = np.array([0.05] * 70 + [0.20] * 30)
    floor = SimpleNamespace(familiarity_floor=0.5)
    assert transfer.frontier(floor, held, results)[0] == 1.0
    fewest, best = transfer.frontier(floor, held, results, further_proba=further)
    assert fewest == pytest.approx(0.30)
    assert best == (1.0, 1.0)


def test_frontier_keeps_the_misconduct_term_rule(transfer):
    held, results = _clues(80, 20, wrong_conf=0.99)
    for i in range(80, 100):  # confidently archived allegations: the alarm rule flags them
        held[i] = Example(f"反映局长第{i}次收受企业红包", "further", "policy")
        results[i].attention = "reference"
    fewest, best = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    assert fewest == pytest.approx(0.20)
    assert best == (1.0, 1.0)


def test_frontier_weighs_the_area_head_too(transfer):
    held, results = _clues(100, 0, wrong_conf=0.5)
    for r in results[:10]:
        r.area, r.area_conf = "discipline", 0.40  # wrong on area, unsure
    fewest, _ = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    assert fewest == pytest.approx(0.10)


def test_frontier_says_when_nothing_fits_the_budget(transfer):
    held, results = _clues(100, 0, wrong_conf=0.5)
    for r in results[:50]:
        r.familiarity = 0.1  # the floor alone flags half the clues
    _, best = transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
    assert math.isnan(best[0]) and math.isnan(best[1])


def test_frontier_refuses_unclassified_clues(transfer):
    held, results = _clues(10, 0, wrong_conf=0.5)
    results[0].status = "too_short"
    with pytest.raises(ValueError, match="classified clues only"):
        transfer.frontier(SimpleNamespace(familiarity_floor=0.5), held, results)
