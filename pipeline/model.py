"""The two-head classifier: one scikit-learn pipeline per head over shared segmentation.

Each head is ``ClueFeatures → FeatureHasher → TfidfTransformer → CalibratedClassifierCV``.
Calibration (Platt scaling fitted on cross-validated predictions, one final estimator)
makes a confidence of 0.9 mean "right about nine times in ten", which the needs-review
thresholds and the `further` rule rely on. ``docs/model.md`` records how the
configuration below was chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from .features import (
    N_FEATURES,
    ClueFeatures,
    Prepared,
    ScriptMap,
    display_feature,
    word_columns,
)
from .labels import HEADS
from .normalize import fold

CLASSIFIERS = ("logreg", "linsvc")


@dataclass(frozen=True)
class HeadConfig:
    """How one head is built. Chosen by ``scripts/compare_models.py`` (see docs/model.md)."""

    features: str = "word+char2"
    classifier: str = "linsvc"
    C: float = 2.0
    class_weight: str | None = "balanced"
    calibration: str = "sigmoid"


DEFAULT_CONFIG: dict[str, HeadConfig] = {
    "attention": HeadConfig(features="word+char2", classifier="linsvc", C=2.0),
    "area": HeadConfig(features="word+char2", classifier="linsvc", C=2.0),
}


def build_pipeline(cfg: HeadConfig, seed: int = 0) -> Pipeline:
    """An unfitted pipeline for one head."""
    if cfg.classifier == "logreg":
        base = LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=3000, random_state=seed)
    elif cfg.classifier == "linsvc":
        base = LinearSVC(C=cfg.C, class_weight=cfg.class_weight, random_state=seed, max_iter=20000)
    else:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {cfg.classifier!r}")
    clf = (
        base
        if cfg.calibration == "none"
        else CalibratedClassifierCV(
            base,
            method=cfg.calibration,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
            ensemble=False,
        )
    )
    return Pipeline(
        [
            ("features", ClueFeatures(cfg.features)),
            ("hash", FeatureHasher(n_features=N_FEATURES, input_type="string", alternate_sign=False)),
            ("tfidf", TfidfTransformer(sublinear_tf=True)),
            ("clf", clf),
        ]
    )


@dataclass
class HeadResult:
    """Predictions of one head for a batch: labels, confidences, full probabilities."""

    classes: tuple[str, ...]
    proba: np.ndarray
    labels: list[str]
    confidence: np.ndarray
    margin: np.ndarray
    terms: list[list[str]] = field(default_factory=list)


def decide(classes: Sequence[str], proba: np.ndarray, further_threshold: float | None = None) -> np.ndarray:
    """Index of the chosen class per row.

    The arg-max, except that on the attention head a `further` probability at or above
    ``further_threshold`` chooses `further` (a missed serious clue costs more than a
    second look at a harmless one).
    """
    chosen = proba.argmax(axis=1)
    if further_threshold is not None and "further" in classes:
        k = list(classes).index("further")
        chosen = np.where(proba[:, k] >= further_threshold, k, chosen)
    return chosen


class TwoHeadModel:
    """Attention and area classifiers trained and applied together.

    Parameters
    ----------
    config : dict of head name to :class:`HeadConfig`
    seed : int
        Seeds every random choice; the same data and seed give identical predictions.
    further_threshold : float or None
        See :func:`decide`.
    """

    def __init__(
        self,
        config: dict[str, HeadConfig] | None = None,
        seed: int = 0,
        further_threshold: float | None = None,
    ) -> None:
        self.config = dict(config or DEFAULT_CONFIG)
        self.seed = seed
        self.further_threshold = further_threshold
        self.review_thresholds: dict[str, float] = {head: 1.0 for head in HEADS}
        self.heads_: dict[str, Pipeline] = {}

    def fit(
        self,
        docs: Sequence[Prepared],
        targets: dict[str, Sequence[str]],
        sample_weight: Mapping[str, Sequence[float]] | None = None,
    ) -> TwoHeadModel:
        """Fit both heads; ``sample_weight`` (per head) lets reviewed clues count more."""
        for head in HEADS:
            pipe = build_pipeline(self.config[head], self.seed)
            extra = {} if sample_weight is None else {"clf__sample_weight": np.asarray(sample_weight[head], dtype=float)}
            pipe.fit(list(docs), list(targets[head]), **extra)
            self.heads_[head] = pipe
        return self

    def config_dict(self) -> dict[str, object]:
        return {
            "heads": {head: asdict(cfg) for head, cfg in self.config.items()},
            "seed": self.seed,
            "further_threshold": self.further_threshold,
            "review_thresholds": self.review_thresholds,
        }

    def _matrices(self, docs: Sequence[Prepared]) -> dict[str, sparse.csr_matrix]:
        """Per head, the TF-IDF matrix of ``docs``; heads with the same features share the
        extraction and hashing.

        Nothing about a batch is kept on the model: a model saved after predicting must not
        carry the text of what it predicted (feature strings spell the clue out)."""
        hashed: dict[str, sparse.csr_matrix] = {}
        out = {}
        for head, pipe in self.heads_.items():
            kind = pipe.named_steps["features"].kind
            if kind not in hashed:
                hashed[kind] = pipe.named_steps["hash"].transform(pipe.named_steps["features"].transform(docs))
            out[head] = pipe.named_steps["tfidf"].transform(hashed[kind])
        return out

    def predict(self, docs: Sequence[Prepared], explain: int = 0, originals: Sequence[str] | None = None) -> dict[str, HeadResult]:
        """Predict both heads; with ``explain=k``, also the top ``k`` terms per clue and head."""
        if not docs:
            return {
                head: HeadResult(tuple(HEADS[head]), np.zeros((0, len(HEADS[head]))), [], np.zeros(0), np.zeros(0))
                for head in HEADS
            }
        matrices = self._matrices(docs)
        word_maps: list[dict[int, str]] | None = None
        scripts: list[ScriptMap] = []
        if explain:
            word_maps = word_columns(docs)
            scripts = [
                ScriptMap(d.text, d.folded or (fold(originals[i]) if originals is not None else d.text))
                for i, d in enumerate(docs)
            ]
        results = {}
        for head, pipe in self.heads_.items():
            clf = pipe.named_steps["clf"]
            classes = tuple(str(c) for c in clf.classes_)
            proba = clf.predict_proba(matrices[head])
            chosen = decide(classes, proba, self.further_threshold if head == "attention" else None)
            ordered = np.sort(proba, axis=1)
            result = HeadResult(
                classes=classes,
                proba=proba,
                labels=[classes[i] for i in chosen],
                confidence=proba[np.arange(len(chosen)), chosen],
                margin=ordered[:, -1] - ordered[:, -2],
            )
            if word_maps is not None:
                result.terms = self._explain(head, matrices[head], chosen, word_maps, scripts, explain)
            results[head] = result
        return results

    def coefficients(self, head: str) -> np.ndarray:
        """Linear coefficients (classes × features) of the head's underlying estimator."""
        clf = self.heads_[head].named_steps["clf"]
        base = clf.calibrated_classifiers_[0].estimator if hasattr(clf, "calibrated_classifiers_") else clf
        return np.asarray(base.coef_)

    def _explain(
        self,
        head: str,
        matrix: sparse.csr_matrix,
        chosen: np.ndarray,
        word_maps: list[dict[int, str]],
        scripts: list[ScriptMap],
        top: int,
    ) -> list[list[str]]:
        """Per clue, the word features that pushed it most towards its chosen class
        (coefficient × TF-IDF value), as the user wrote them. Character n-grams count in the
        prediction but are not shown: fragments of words mislead more than they explain."""
        coef = self.coefficients(head)
        n = len(word_maps)
        out: list[list[str]] = [[] for _ in range(n)]
        rows = np.repeat(np.arange(n), [len(m) for m in word_maps])
        if not len(rows):
            return out
        cols = np.fromiter((c for m in word_maps for c in m), dtype=np.int64, count=len(rows))
        # one vectorised pass over every (clue, word) pair of the batch
        values = np.asarray(matrix[rows, cols]).ravel() * coef[chosen[rows], cols]
        order = np.lexsort((-values, rows))  # by clue, then by decreasing contribution (stable)
        rows_o, cols_o, values_o = rows[order], cols[order], values[order]
        rank = np.arange(len(order)) - np.searchsorted(rows_o, np.arange(n))[rows_o]
        keep = (rank < 4 * top) & (values_o > 0)  # a few spare candidates per clue, for duplicates
        for i, column in zip(rows_o[keep].tolist(), cols_o[keep].tolist(), strict=True):
            terms = out[i]
            if len(terms) < top:
                shown = display_feature(word_maps[i][column], scripts[i])
                if shown and shown not in terms:
                    terms.append(shown)
        return out
