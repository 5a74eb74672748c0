"""When a prediction needs a person's look (``needs_review``), for triage and for training.

One function decides it from a batch's predictions, so the thresholds chosen in training
(:mod:`pipeline.model.train`) are tested on exactly the rule that triage applies:

- a head's confidence below its threshold (thresholds chosen on out-of-register
  predictions, see ``docs/model.md``);
- the clue is less familiar than ``familiarity_floor`` (more unfamiliar than about 95 % of
  training clues: too far from anything the model has seen to trust its confidence);
- the clue is called `reference` but uses a misconduct term from ``data/alarm_terms.txt``
  (收受, 挪用, 违规提拔 …): a short allegation must never be archived unseen;
- the clue is not called `further`, yet `further` keeps at least the ``possible_further``
  share of the probability (chosen in training, spending what is left of the flag budget:
  a `further` clue filed as `aware` or `reference` unseen is the costliest mistake the tool
  can make). Models saved without that threshold do not apply this part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..paths import ALARM_TERMS_PATH


@lru_cache(maxsize=4)
def alarm_terms(path: Path = ALARM_TERMS_PATH) -> tuple[str, ...]:
    """The misconduct terms (comments and blank lines skipped), longest first."""
    with open(path, encoding="utf-8") as handle:
        terms = {line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")}
    return tuple(sorted(terms, key=lambda t: (-len(t), t)))


@lru_cache(maxsize=4)
def _alarm_re(path: Path = ALARM_TERMS_PATH) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(t) for t in alarm_terms(path)))


def has_alarm(normalized: str) -> bool:
    """True when normalised (Simplified) text contains a misconduct term."""
    return _alarm_re().search(normalized) is not None


def needs_review(
    attention: Sequence[str],
    attention_conf: np.ndarray,
    area_conf: np.ndarray,
    familiarity: np.ndarray,
    alarm: Sequence[bool],
    thresholds: Mapping[str, float],
    familiarity_floor: float,
    further_proba: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean per clue: does it need a reviewer? (See the module docstring.)

    ``further_proba`` is the attention head's probability of `further` per clue; without it
    (or without a ``possible_further`` threshold) the possible-`further` part is off."""
    att = np.asarray(attention)
    flagged = (
        (np.asarray(attention_conf) < thresholds.get("attention", 1.0))
        | (np.asarray(area_conf) < thresholds.get("area", 1.0))
        | (np.asarray(familiarity) < familiarity_floor)
        | ((att == "reference") & np.asarray(alarm, dtype=bool))
    )
    possible = thresholds.get("possible_further")
    if possible is not None and further_proba is not None:
        flagged |= (att != "further") & (np.asarray(further_proba) >= possible)
    return flagged
