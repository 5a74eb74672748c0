"""Model selection: compare feature sets and classifiers by cross-validation on `train`.

Used by ``scripts/compare_models.py``, whose printed table is copied into docs/model.md.
Selection uses macro-F1 of 5-fold cross-validation on the ``train`` split only; the
chosen configuration is then scored once on ``dev``. ``test`` is never looked at here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from .features import Prepared
from .model import HeadConfig, build_pipeline


@dataclass
class Candidate:
    head: str
    config: HeadConfig
    cv_macro_f1: float
    cv_std: float
    dev_macro_f1: float
    fit_seconds: float
    docs_per_second: float


def candidates(C_logreg: float = 10.0, C_svc: float = 0.5) -> list[HeadConfig]:
    """Word 1–2-grams, character 1–3-grams and their union, and cheaper character variants
    (1–2-grams; bigrams only), each with LR and a linear SVM; then the SVM's C for the two
    fastest unions."""
    out = []
    for kind in ("word", "char", "word+char", "char2", "word+char2", "word+bigram"):
        out.append(HeadConfig(kind, "logreg", C_logreg))
        out.append(HeadConfig(kind, "linsvc", C_svc))
    out += [HeadConfig(kind, "linsvc", C) for kind in ("word+char2", "word+bigram") for C in (0.1, 2.0, 8.0)]
    return out


def compare(
    head: str,
    configs: Sequence[HeadConfig],
    train: Sequence[Prepared],
    y_train: Sequence[str],
    dev: Sequence[Prepared],
    y_dev: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
) -> list[Candidate]:
    """Score each configuration: CV macro-F1 on train, macro-F1 on dev, speed."""
    y = np.asarray(y_train)
    docs = list(train)
    rows = []
    for cfg in configs:
        cfg = replace(cfg, calibration="none")
        scores = []
        for fit_idx, val_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(docs, y):
            pipe = build_pipeline(cfg, seed).fit([docs[i] for i in fit_idx], y[fit_idx])
            scores.append(f1_score(y[val_idx], pipe.predict([docs[i] for i in val_idx]), average="macro"))
        started = time.perf_counter()
        pipe = build_pipeline(cfg, seed).fit(docs, y)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predicted = pipe.predict(list(dev))
        per_second = len(dev) / max(time.perf_counter() - started, 1e-9)
        rows.append(
            Candidate(head, cfg, float(np.mean(scores)), float(np.std(scores)),
                      float(f1_score(y_dev, predicted, average="macro")), fit_seconds, per_second)
        )
    return rows
