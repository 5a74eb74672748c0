"""Metrics for both heads, calibration error, and the two baselines a model must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ..labels import HEADS


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class HeadMetrics:
    """Scores of one head on one set of clues."""

    head: str
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    labels: list[str]
    confusion: list[list[int]]
    ece: float | None = None


@dataclass
class Evaluation:
    """Scores of one predictor (a model version or a baseline) on one data set."""

    name: str
    data: str
    heads: dict[str, HeadMetrics]
    by_script: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> dict[str, float]:
        """The few numbers a gate or a manifest needs."""
        out: dict[str, float] = {}
        for head, m in self.heads.items():
            out[f"{head}_macro_f1"] = round(m.macro_f1, 4)
            out[f"{head}_accuracy"] = round(m.accuracy, 4)
            if m.ece is not None:
                out[f"{head}_ece"] = round(m.ece, 4)
        if "attention" in self.heads and "further" in self.heads["attention"].per_class:
            out["further_recall"] = round(self.heads["attention"].per_class["further"].recall, 4)
        return out


def expected_calibration_error(
    correct: Sequence[bool], confidence: Sequence[float] | np.ndarray, bins: int = 10
) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    correct_a = np.asarray(correct, dtype=float)
    conf = np.asarray(confidence, dtype=float)
    if len(conf) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(correct_a[mask].mean() - conf[mask].mean())
    return float(total)


def head_metrics(
    head: str, y_true: Sequence[str], y_pred: Sequence[str], confidence: Sequence[float] | np.ndarray | None = None
) -> HeadMetrics:
    labels = list(HEADS[head])
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        lab: ClassMetrics(float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i, lab in enumerate(labels)
    }
    present = [lab for lab in labels if lab in set(y_true)]
    ece = None
    if confidence is not None:
        ece = expected_calibration_error([a == b for a, b in zip(y_true, y_pred, strict=True)], confidence)
    return HeadMetrics(
        head=head,
        n=len(y_true),
        accuracy=float(accuracy_score(y_true, y_pred)),
        macro_f1=float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        per_class=per_class,
        labels=labels,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        ece=ece,
    )


def evaluate_predictions(
    name: str,
    data: str,
    truth: Mapping[str, Sequence[str]],
    predicted: Mapping[str, Sequence[str]],
    confidence: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    scripts: Sequence[str] | None = None,
) -> Evaluation:
    """Score predictions of both heads; with ``scripts``, macro-F1 per script as well."""
    heads = {
        head: head_metrics(head, truth[head], predicted[head], confidence[head] if confidence else None)
        for head in HEADS
    }
    by_script: dict[str, dict[str, float]] = {}
    if scripts is not None:
        for script in sorted(set(scripts)):
            idx = [i for i, s in enumerate(scripts) if s == script]
            by_script[script] = {
                head: head_metrics(head, [truth[head][i] for i in idx], [predicted[head][i] for i in idx]).macro_f1
                for head in HEADS
            }
            by_script[script]["n"] = len(idx)
    return Evaluation(name=name, data=data, heads=heads, by_script=by_script)


def evaluate_decided(
    name: str,
    data: str,
    truth: Mapping[str, Sequence[str]],
    predicted: Mapping[str, Sequence[str]],
    decided: Sequence[Sequence[str]],
    confidence: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> Evaluation:
    """Score reviewed clues: each head only on the clues where a person decided it.

    A head the reviewer left at the model's label carries that model's own guess, not
    evidence; a head nobody decided on any clue gets ``n = 0`` and no scores."""
    heads = {}
    for head in HEADS:
        keep = [i for i in range(len(decided)) if head in decided[i]]
        if keep:
            conf = None if confidence is None else np.asarray(confidence[head])[keep]
            heads[head] = head_metrics(head, [truth[head][i] for i in keep], [predicted[head][i] for i in keep], conf)
        else:
            heads[head] = HeadMetrics(head, 0, 0.0, 0.0, {}, list(HEADS[head]), [])
    return Evaluation(name=name, data=data, heads=heads)


def majority_baseline(train_labels: Mapping[str, Sequence[str]], n: int) -> dict[str, list[str]]:
    """Predict each head's most frequent training label for every clue."""
    return {head: [Counter(train_labels[head]).most_common(1)[0][0]] * n for head in HEADS}


def evaluate_model(
    model: object, clues: Sequence[object], data: str, name: str, majority_from: Sequence[object]
) -> tuple[Evaluation, list[Evaluation]]:
    """Score a :class:`~pipeline.model.model.TwoHeadModel` and both baselines on labeled clues.

    ``clues`` and ``majority_from`` are :class:`~pipeline.model.corpus.Clue` objects; the majority
    baseline predicts the most frequent label of ``majority_from`` (the training split).
    """
    from ..text.features import prepare
    from .baseline import keyword_predict

    docs = prepare([c.text for c in clues])  # type: ignore[attr-defined]
    truth = {h: [c.label(h) for c in clues] for h in HEADS}  # type: ignore[attr-defined]
    scripts = [c.script for c in clues]  # type: ignore[attr-defined]
    result = model.predict(docs)  # type: ignore[attr-defined]
    ev = evaluate_predictions(
        name, data, truth, {h: result[h].labels for h in HEADS}, {h: result[h].confidence for h in HEADS}, scripts
    )
    majority = majority_baseline({h: [c.label(h) for c in majority_from] for h in HEADS}, len(clues))  # type: ignore[attr-defined]
    baselines = [
        evaluate_predictions("majority class", data, truth, majority),
        evaluate_predictions("keyword rules", data, truth, keyword_predict(docs)),
    ]
    return ev, baselines
