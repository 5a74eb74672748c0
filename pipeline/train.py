"""Training: choose decision thresholds on `dev`, fit the final model on `train`+`dev`.

Protocol (``docs/model.md``):

1. fit on ``train``; predict ``dev``;
2. on those ``dev`` predictions choose the `further` threshold (best attention macro-F1
   with `further` recall ≥ 0.90) and each head's needs-review threshold (the lowest
   confidence above which ≥ 95 % of ``dev`` clues are right);
3. record the ``dev`` scores of step 1 in the manifest (honest: that model never saw ``dev``);
4. fit the final model with the same configuration on ``train`` + ``dev`` (+ reviewed clues
   when retraining). ``test`` is never used here.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .corpus import Clue, split
from .evaluate import Evaluation, evaluate_predictions
from .features import Prepared, prepare
from .fsutil import sha256_file
from .labels import AREA, ATTENTION, HEADS
from .model import DEFAULT_CONFIG, HeadConfig, TwoHeadModel, decide
from .paths import STOPWORDS_PATH, USERDICT_PATH, Home
from .segment import current_segmenter

REVIEW_PRECISION = 0.95
FURTHER_RECALL_FLOOR = 0.90
FURTHER_REVIEW_BELOW = 0.90
#: A reviewed clue counts this many times a corpus clue: it is a correction made by the
#: office on its own intake, usually of a pattern the model keeps getting wrong.
REVIEW_WEIGHT = 3.0


@dataclass(frozen=True)
class Example:
    """One training example: text and both labels, with where it came from."""

    text: str
    attention: str
    area: str
    origin: str = "corpus"  # or "review"
    decided: tuple[str, ...] = ("attention", "area")  # heads whose label a person gave

    def label(self, head: str) -> str:
        return self.attention if head == "attention" else self.area


@dataclass
class TrainOutcome:
    model: TwoHeadModel
    manifest: dict[str, Any]
    dev: Evaluation
    data_sizes: dict[str, int] = field(default_factory=dict)


def _weights(examples: Sequence[Example]) -> dict[str, list[float]] | None:
    """Per head: a reviewer's decision counts REVIEW_WEIGHT times; a head the reviewer left
    at the model's prediction counts once, so the model is not taught its own guesses."""
    if all(e.origin == "corpus" for e in examples):
        return None
    return {
        head: [REVIEW_WEIGHT if e.origin == "review" and head in e.decided else 1.0 for e in examples]
        for head in HEADS
    }


def examples_from(clues: Sequence[Clue]) -> list[Example]:
    return [Example(c.text, c.attention, c.area) for c in clues]


def wilson_lower(correct: float, n: float, z: float = 1.645) -> float:
    """One-sided 95 % lower confidence bound of a proportion (Wilson score interval)."""
    if n == 0:
        return 0.0
    p = correct / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def review_threshold(correct: np.ndarray, confidence: np.ndarray, precision: float = REVIEW_PRECISION) -> float:
    """Lowest confidence ``t`` such that clues with confidence ≥ ``t`` are right ≥ ``precision``.

    "Right ≥ 95 % of the time" is required of the lower 95 % confidence bound of the accuracy
    above ``t``, not of the accuracy itself: ``dev`` is a few hundred clues, and a threshold
    that only just reaches 95 % on them would be below it on new clues about half the time.
    """
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=float)[order])
    counts = np.arange(1, len(order) + 1)
    ok = [i for i in range(len(order)) if wilson_lower(hits[i], counts[i]) >= precision]
    if not ok:
        return 1.0
    return float(confidence[order][max(ok)])


def choose_further_threshold(truth: Sequence[str], classes: Sequence[str], proba: np.ndarray) -> float | None:
    """The `further` threshold giving the best macro-F1 among those with recall ≥ 0.90."""
    from sklearn.metrics import f1_score, recall_score

    best: tuple[float, float | None] | None = None
    fallback: tuple[float, float | None] | None = None
    for t in [None, *np.round(np.arange(0.50, 0.14, -0.05), 2)]:
        pred = [classes[i] for i in decide(classes, proba, t)]
        rec = recall_score(truth, pred, labels=["further"], average="macro", zero_division=0)
        f1 = f1_score(truth, pred, average="macro", zero_division=0)
        if rec >= FURTHER_RECALL_FLOOR and (best is None or f1 > best[0]):
            best = (f1, t)
        if fallback is None or rec > fallback[0]:
            fallback = (rec, t)
    chosen = best or fallback
    assert chosen is not None
    return None if chosen[1] is None else float(chosen[1])


def data_fingerprint(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.text}\t{e.attention}\t{e.area}\n".encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import jieba
    import joblib
    import opencc
    import rjieba  # noqa: F401
    import sklearn

    return {
        "python": platform.python_version(),
        "clue-triage": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "jieba": jieba.__version__,
        "rjieba": version("rjieba"),
        "opencc": getattr(opencc, "__version__", version("opencc")),
    }


def fit_and_calibrate(
    train: Sequence[Example],
    dev: Sequence[Example],
    dev_scripts: Sequence[str] | None = None,
    *,
    seed: int = 0,
    config: dict[str, HeadConfig] | None = None,
    extra_final: Sequence[Example] = (),
) -> TrainOutcome:
    """Run the protocol in the module docstring and return the final model."""
    config = config or DEFAULT_CONFIG
    train_docs = prepare([e.text for e in train])
    dev_docs = prepare([e.text for e in dev])
    probe = TwoHeadModel(config, seed).fit(
        train_docs, {h: [e.label(h) for e in train] for h in HEADS}, _weights(train)
    )
    raw = probe.predict(dev_docs)
    truth = {h: [e.label(h) for e in dev] for h in HEADS}
    further_t = choose_further_threshold(truth["attention"], raw["attention"].classes, raw["attention"].proba)
    probe.further_threshold = further_t
    tuned = probe.predict(dev_docs)
    thresholds = {
        h: review_threshold(np.array([a == b for a, b in zip(truth[h], tuned[h].labels, strict=True)]), tuned[h].confidence)
        for h in HEADS
    }
    dev_eval = evaluate_predictions(
        "dev (model fitted on train)", "dev",
        truth, {h: tuned[h].labels for h in HEADS}, {h: tuned[h].confidence for h in HEADS}, dev_scripts,
    )
    final_examples = [*train, *dev, *extra_final]
    final_docs: list[Prepared] = [*train_docs, *dev_docs, *prepare([e.text for e in extra_final])]
    final = TwoHeadModel(config, seed, further_threshold=further_t)
    final.fit(final_docs, {h: [e.label(h) for e in final_examples] for h in HEADS}, _weights(final_examples))
    final.review_thresholds = thresholds
    sizes = {"train": len(train), "dev": len(dev), "reviewed": len(extra_final), "final_fit": len(final_examples)}
    manifest = {
        "labels": {"attention": list(ATTENTION), "area": list(AREA)},
        "config": final.config_dict(),
        "segmenter": current_segmenter(),
        "libraries": library_versions(),
        "data": {
            "sizes": sizes,
            "examples_sha256": data_fingerprint(final_examples),
            "userdict_sha256": sha256_file(USERDICT_PATH),
            "stopwords_sha256": sha256_file(STOPWORDS_PATH),
        },
        "metrics": {"dev": dev_eval.summary()},
        "per_class": {
            f"{h}/{label}": vars(c) for h, m in dev_eval.heads.items() for label, c in m.per_class.items()
        },
        "thresholds": {"further": further_t, "needs_review": thresholds, "further_review_below": FURTHER_REVIEW_BELOW},
    }
    return TrainOutcome(final, manifest, dev_eval, sizes)


def train_on_corpus(clues: Sequence[Clue], *, seed: int = 0, config: dict[str, HeadConfig] | None = None) -> TrainOutcome:
    """Train from a corpus' ``train`` and ``dev`` splits (``test`` untouched)."""
    clues = list(clues)
    dev = split(clues, "dev")
    return fit_and_calibrate(
        examples_from(split(clues, "train")), examples_from(dev), [c.script for c in dev], seed=seed, config=config
    )


@dataclass
class Registered:
    manifest: dict[str, Any]
    promoted: bool


def train_and_register(
    home: Home, data: str | os.PathLike[str], *, seed: int = 0, promote: bool | None = None
) -> Registered:
    """Train on a corpus and save the model as a new version in ``home``.

    The new version becomes the champion when ``promote`` is true, or when it is ``None``
    and the home has no champion yet.
    """
    from .corpus import load_corpus
    from .registry import Registry

    outcome = train_on_corpus(load_corpus(data), seed=seed)
    registry = Registry(home.models)
    outcome.manifest["data"]["corpus_sha256"] = sha256_file(data)
    outcome.manifest["data"]["overrides_used"] = 0
    outcome.manifest["data"]["overrides_max_id"] = 0
    outcome.manifest["parent"] = registry.champion()
    manifest = registry.save(outcome.model, outcome.manifest)
    do_promote = promote if promote is not None else registry.champion() is None
    if do_promote:
        registry.promote(manifest["version"], by="train", reason="trained with --promote" if promote else "first model")
    return Registered(manifest, do_promote)
