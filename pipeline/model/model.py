"""The two-head classifier: shared features, linear members per head, a calibrating stacker.

A batch is segmented once, turned into feature keys once and into one TF-IDF matrix over
the fitted :class:`~pipeline.model.vectorize.Vocabulary` (both heads share it). Each head has
one or more linear *members* (a linear SVM, logistic regression, with their own C); the
members' decision scores go through a small multinomial logistic *stacker* that turns them
into probabilities. The stacker is fitted on **out-of-register** scores (every training
clue scored by members that never saw its register, see :mod:`pipeline.model.train`), so a
confidence of 0.9 means "right about nine times in ten on a kind of text the model was
not trained on", not "on more of the same".

Everything fitted is plain arrays and JSON (:meth:`TwoHeadModel.to_arrays`): a model file
is loaded without unpickling anything, so a tampered home cannot run code.
``docs/model.md`` records how the configuration below was chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from ..labels import HEADS
from ..text.features import Prepared, ScriptMap, display_term, is_shown
from ..text.normalize import fold
from .vectorize import Batch, Counts, Keys, Vocabulary, Words, batch_keys, word_pair_key

CLASSIFIERS = ("linsvc", "logreg")


class _Shown(dict[str, bool]):
    """token -> may it be shown as a key term (a memo, see :func:`is_shown`)."""

    def __missing__(self, token: str) -> bool:
        shown = self[token] = is_shown(token)
        return shown


_SHOWN = _Shown()


@dataclass(frozen=True)
class Member:
    """One linear classifier of a head."""

    classifier: str = "linsvc"
    C: float = 0.5


@dataclass(frozen=True)
class HeadConfig:
    """How one head is built. Chosen by ``scripts/compare_models.py`` (see docs/model.md)."""

    members: tuple[Member, ...] = (Member("linsvc", 0.5),)
    class_weight: str | None = "balanced"


@dataclass(frozen=True)
class ModelConfig:
    """Features shared by both heads, and each head's members."""

    features: str = "word+char"
    binary: bool = False
    min_df: int = 1
    heads: Mapping[str, HeadConfig] = field(default_factory=lambda: dict(DEFAULT_HEADS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features, "binary": self.binary, "min_df": self.min_df,
            "heads": {h: {"members": [asdict(m) for m in c.members], "class_weight": c.class_weight}
                      for h, c in self.heads.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        heads = {
            h: HeadConfig(tuple(Member(str(m["classifier"]), float(m["C"])) for m in c["members"]), c["class_weight"])
            for h, c in data["heads"].items()
        }
        return cls(str(data["features"]), bool(data["binary"]), int(data["min_df"]), heads)


_VOTE = (Member("linsvc", 0.1), Member("linsvc", 0.5), Member("linsvc", 2.0))
#: liblinear's stopping tolerance for the linear SVMs (the projected-gradient gap of the dual).
#: scikit-learn's default is 1e-4, liblinear's own 0.1. At 1e-2 the member and fold fits of a
#: retrain with 20,000 reviewed clues take 69 CPU-s instead of 109 (the C = 2 members 136
#: passes instead of 233–339) and the leave-one-register-out table does not change beyond
#: a clue or two per register (docs/model.md, "Solver tolerance")
LINEAR_SVC_TOL = 1e-2
DEFAULT_HEADS: dict[str, HeadConfig] = {"attention": HeadConfig(_VOTE), "area": HeadConfig(_VOTE)}
DEFAULT_CONFIG = ModelConfig()


def _fit_member(member: Member, x: sparse.csr_matrix, y: np.ndarray, class_weight: str | None,
                weight: np.ndarray | None, seed: int, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fit one member; return its (coef, intercept), one row per class of ``classes``."""
    if member.classifier == "linsvc":
        est: LinearSVC | LogisticRegression = LinearSVC(
            C=member.C, class_weight=class_weight, random_state=seed, max_iter=20000, tol=LINEAR_SVC_TOL)
    elif member.classifier == "logreg":
        est = LogisticRegression(C=member.C, class_weight=class_weight, max_iter=3000, random_state=seed)
    else:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {member.classifier!r}")
    est.fit(x, y, sample_weight=weight)
    coef, intercept = np.asarray(est.coef_, dtype=float), np.asarray(est.intercept_, dtype=float)
    if len(est.classes_) == 2:  # one row for "second class against the first": make it two
        coef, intercept = np.vstack([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    order = [list(est.classes_).index(c) for c in classes]
    return coef[order], intercept[order]


def _present(head: str, y: np.ndarray) -> tuple[str, ...]:
    """The head's classes present in ``y``, in the contract's order."""
    present = set(y.tolist())
    return tuple(c for c in HEADS[head] if c in present)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass
class Head:
    """One fitted head: classes, members' weights, and the stacker over their scores."""

    classes: tuple[str, ...]
    coef: list[np.ndarray]  # per member: classes × features
    intercept: list[np.ndarray]
    stack_w: np.ndarray | None = None  # classes × (members · classes); None: softmax of mean score
    stack_b: np.ndarray | None = None

    def _members(self) -> None:
        if not self.coef:
            raise ValueError("this head's members were released (a model loaded for prediction only)")

    def scores(self, x: sparse.csr_matrix) -> np.ndarray:
        """Members' decision scores side by side (the stacker's input)."""
        self._members()
        return np.hstack([np.asarray(x @ c.T) + b for c, b in zip(self.coef, self.intercept, strict=True)])

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(classes × features, classes): the members and the stacker folded into one linear
        map. The stacker is linear in the members' scores, so a class's logit is
        ``x @ W[class] + b[class]`` (equal to :meth:`proba`'s input up to rounding, ~1e-15):
        one product scores every member, and ``W`` is also each feature's push towards a
        class, what the key terms are ranked by."""
        self._members()
        m = len(self.coef)
        if self.stack_w is None or self.stack_b is None:  # softmax of the members' mean score
            return np.asarray(sum(self.coef) / m), np.asarray(sum(self.intercept) / m)
        k = len(self.classes)
        blocks = [self.stack_w[:, j * k : (j + 1) * k] for j in range(m)]  # classes × member classes
        weights = sum(block @ coef for block, coef in zip(blocks, self.coef, strict=True))
        bias = self.stack_b + sum(block @ b for block, b in zip(blocks, self.intercept, strict=True))
        return np.asarray(weights), np.asarray(bias)

    def proba(self, scores: np.ndarray) -> np.ndarray:
        if self.stack_w is None or self.stack_b is None:
            k = len(self.classes)
            return softmax(scores.reshape(len(scores), -1, k).mean(axis=1))
        return softmax(scores @ self.stack_w.T + self.stack_b)


def fit_stacker(scores: np.ndarray, y: Sequence[str], classes: Sequence[str], C: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression from members' scores to classes (the calibration)."""
    est = LogisticRegression(C=C, max_iter=2000)
    est.fit(scores, np.asarray(y))
    order = [list(est.classes_).index(c) for c in classes]
    return np.asarray(est.coef_)[order], np.asarray(est.intercept_)[order]


@dataclass
class _Candidates:
    """Key-term candidates of a batch (see :meth:`TwoHeadModel._candidates`)."""

    rows: np.ndarray
    cols: np.ndarray
    start: np.ndarray  # index of the candidate's first word in ``tokens``
    is_pair: np.ndarray
    tokens: list[str]
    _cells: np.ndarray | None = None

    def cell_in(self, matrix: sparse.csr_matrix) -> np.ndarray:
        """Where each candidate's value sits in ``matrix.data`` (rows sorted, columns sorted
        within a row): one search over row * width + column, shared by both heads."""
        if self._cells is None:
            width = matrix.shape[1]
            nz_rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
            self._cells = np.searchsorted(nz_rows * width + matrix.indices, self.rows * width + self.cols)
        return self._cells


@dataclass
class _Scoring:
    """Both heads' folded weights (see :meth:`TwoHeadModel._scoring`)."""

    weights: np.ndarray  # features × (classes of every head), C order: one sparse product
    bias: np.ndarray
    offsets: dict[str, int]  # each head's first column
    made_of: tuple[Any, ...]  # the heads and fitted arrays it was made from (checked by identity)


@dataclass
class HeadResult:
    """Predictions of one head for a batch: labels, confidences, full probabilities."""

    classes: tuple[str, ...]
    proba: np.ndarray
    labels: list[str]
    confidence: np.ndarray
    margin: np.ndarray
    terms: list[list[str]] = field(default_factory=list)
    familiarity: np.ndarray = field(default_factory=lambda: np.zeros(0))


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
    config : ModelConfig
    seed : int
        Seeds every random choice; the same data and seed give identical predictions.
    further_threshold : float or None
        See :func:`decide`.
    """

    def __init__(self, config: ModelConfig | None = None, seed: int = 0,
                 further_threshold: float | None = None) -> None:
        self.config = config or DEFAULT_CONFIG
        self.seed = seed
        self.further_threshold = further_threshold
        self.review_thresholds: dict[str, float] = {head: 1.0 for head in HEADS}
        self.familiarity_floor = 0.0
        self.vocab_ = Vocabulary(self.config.features, self.config.binary, self.config.min_df)
        self.heads_: dict[str, Head] = {}

    # -- fitting ---------------------------------------------------------------------
    def keys(self, docs: Sequence[Prepared]) -> Keys:
        return batch_keys(docs, self.config.features)

    def fit(
        self,
        docs: Sequence[Prepared] | Keys,
        targets: Mapping[str, Sequence[str]],
        sample_weight: Mapping[str, Sequence[float]] | None = None,
    ) -> TwoHeadModel:
        """Fit the vocabulary and every head's members (``sample_weight``: per head).

        The stackers are left unfitted (probabilities are then a softmax of the mean member
        score); :func:`pipeline.model.train.fit_and_calibrate` fits them on out-of-register scores.
        """
        x = self.fit_vocabulary(docs if isinstance(docs, Keys) else self.keys(docs))
        return self.attach_members(targets, {task: self.fit_member(x, targets, sample_weight, *task)
                                             for task in self.member_tasks()})

    # The three steps of :meth:`fit`, for callers that fit the members in worker processes
    # (:func:`pipeline.model.train.fit_and_calibrate`): each member fit is seeded on its own,
    # so where and in which order they run does not change the model.
    def fit_vocabulary(self, keys: Keys, count: Counts | None = None) -> sparse.csr_matrix:
        """Fit the vocabulary on ``keys``; return their TF-IDF matrix (the members' input).
        ``count``: :func:`~pipeline.model.vectorize.counted` of ``keys``, if the caller has it."""
        self.vocab_ = Vocabulary(self.config.features, self.config.binary, self.config.min_df)
        return self.vocab_.fit_transform(keys, count).matrix

    def member_tasks(self) -> list[tuple[str, int]]:
        """(head, member number) of every member fit, in :meth:`fit`'s order."""
        return [(head, m) for head in HEADS for m in range(len(self.config.heads[head].members))]

    def fit_member(self, x: sparse.csr_matrix, targets: Mapping[str, Sequence[str]],
                   sample_weight: Mapping[str, Sequence[float]] | None, head: str,
                   member: int) -> tuple[np.ndarray, np.ndarray]:
        """Fit one member of ``head`` on ``x``: its (coef, intercept), rows in the head's classes."""
        cfg = self.config.heads[head]
        y = np.asarray(targets[head])
        weight = None if sample_weight is None else np.asarray(sample_weight[head], dtype=float)
        return _fit_member(cfg.members[member], x, y, cfg.class_weight, weight, self.seed, _present(head, y))

    def attach_members(self, targets: Mapping[str, Sequence[str]],
                       fitted: Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]]) -> TwoHeadModel:
        """Make the heads from every member's fit (keyed as :meth:`member_tasks`)."""
        for head in HEADS:
            members = [fitted[(head, m)] for m in range(len(self.config.heads[head].members))]
            self.heads_[head] = Head(_present(head, np.asarray(targets[head])), [c for c, _ in members],
                                     [b for _, b in members])
        return self

    def batch(self, docs: Sequence[Prepared] | Keys) -> Batch:
        return self.vocab_.transform(docs if isinstance(docs, Keys) else self.keys(docs))

    def config_dict(self) -> dict[str, object]:
        return {
            "model": self.config.to_dict(),
            "seed": self.seed,
            "further_threshold": self.further_threshold,
            "review_thresholds": self.review_thresholds,
            "familiarity_floor": self.familiarity_floor,
        }

    # -- predicting ------------------------------------------------------------------
    def predict(self, docs: Sequence[Prepared], explain: int = 0,
                originals: Sequence[str] | None = None) -> dict[str, HeadResult]:
        """Predict both heads; with ``explain=k``, also the top ``k`` terms per clue and head."""
        if not docs:
            return {
                head: HeadResult(tuple(HEADS[head]), np.zeros((0, len(HEADS[head]))), [], np.zeros(0), np.zeros(0))
                for head in HEADS
            }
        keys = self.keys(docs)
        batch = self.batch(keys)
        candidates = self._candidates(keys.words, batch.columns) if explain else None
        scoring = self._scoring()
        scripts: dict[int, ScriptMap] = {}  # per clue, how to show a term as written (both heads)
        logits = np.asarray(batch.matrix @ scoring.weights) + scoring.bias  # every head and member at once
        results = {}
        for head, h in self.heads_.items():
            at = scoring.offsets[head]
            proba = softmax(logits[:, at : at + len(h.classes)])
            chosen = decide(h.classes, proba, self.further_threshold if head == "attention" else None)
            ordered = np.sort(proba, axis=1)
            result = HeadResult(
                classes=h.classes,
                proba=proba,
                labels=[h.classes[i] for i in chosen],
                confidence=proba[np.arange(len(chosen)), chosen],
                margin=ordered[:, -1] - ordered[:, -2],
                familiarity=batch.familiarity,
            )
            if candidates is not None:
                result.terms = self._explain(scoring.weights, at, batch.matrix, chosen, candidates, docs, originals,
                                             explain, scripts)
            results[head] = result
        return results

    def _candidates(self, words: Words | None, columns: np.ndarray | None = None) -> _Candidates:
        """Every word and adjacent word pair of the batch that may be shown as a key term
        (see :func:`~pipeline.text.features.is_shown`) and that the vocabulary knows: its clue,
        its column, and where its words start in the batch's token list. ``columns``: the
        batch's columns as :meth:`Vocabulary.transform` found them (words first, then word
        pairs: :func:`batch_keys`), so that words are not looked up twice."""
        if words is None or not words.tokens:
            return _Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool), [])
        n = len(words.tokens)
        if len(_SHOWN) > 500_000:
            _SHOWN.clear()
        shown = np.fromiter(map(_SHOWN.__getitem__, words.tokens), dtype=bool, count=n)
        starts = np.arange(n, dtype=np.int64)
        pair = np.zeros(n, dtype=bool)
        pair[:-1] = (shown[:-1] & shown[1:] & (words.rows[:-1] == words.rows[1:])
                     & (words.keys[:-1] != words.keys[1:]))
        pair_starts = starts[pair]
        rows = np.concatenate([words.rows[shown], words.rows[pair_starts]])
        if columns is None:
            keys = np.concatenate([words.keys[shown],
                                   word_pair_key(words.keys[pair_starts], words.keys[pair_starts + 1])])
            cols = self.vocab_.columns_of(keys)
        else:
            same = words.rows[:-1] == words.rows[1:]  # batch_keys made a pair for each of these
            pair_cols = np.full(n, -1, dtype=np.int64)
            pair_cols[:-1][same] = columns[n : n + int(same.sum())]
            cols = np.concatenate([columns[:n][shown], pair_cols[pair_starts]])
        start = np.concatenate([starts[shown], pair_starts])
        is_pair = np.concatenate([np.zeros(int(shown.sum()), bool), np.ones(len(pair_starts), bool)])
        known = cols >= 0
        # one candidate per (clue, column): a word used five times is one term
        cells, first = np.unique(rows[known] * max(self.vocab_.size, 1) + cols[known], return_index=True)
        pick = np.flatnonzero(known)[first]
        return _Candidates(rows[pick], cols[pick], start[pick], is_pair[pick], words.tokens)

    def _scoring(self) -> _Scoring:
        """Both heads' folded weights side by side (:meth:`Head.folded`), made once per set of
        fitted heads (``from_arrays`` makes it before workers fork, so they share it)."""
        cached: _Scoring | None = self.__dict__.get("_scoring_cache")
        made_of = tuple(a for h in self.heads_.values() for a in (h, h.stack_w, h.stack_b, *h.coef, *h.intercept))
        if cached is None or len(cached.made_of) != len(made_of) or any(
                a is not b for a, b in zip(cached.made_of, made_of, strict=True)):
            folded = {head: h.folded() for head, h in self.heads_.items()}
            offsets, at = {}, 0
            for head, h in self.heads_.items():
                offsets[head], at = at, at + len(h.classes)
            cached = _Scoring(
                np.ascontiguousarray(np.vstack([w for w, _ in folded.values()]).T),
                np.concatenate([b for _, b in folded.values()]), offsets, made_of)
            self.__dict__["_scoring_cache"] = cached
        return cached

    def _explain(self, weights: np.ndarray, at: int, matrix: sparse.csr_matrix, chosen: np.ndarray,
                 cand: _Candidates, docs: Sequence[Prepared], originals: Sequence[str] | None,
                 top: int, scripts: dict[int, ScriptMap]) -> list[list[str]]:
        """Per clue, the words and adjacent word pairs that pushed it most towards its chosen
        class (weight × TF-IDF value), as the user wrote them. Placeholders (``<人名>``) and
        single characters count in the prediction but are never shown; character n-grams
        count but are not shown either (fragments of words mislead more than they explain)."""
        out: list[list[str]] = [[] for _ in docs]
        if not len(cand.rows):
            return out
        # the candidates' TF-IDF values, found among the matrix's stored cells (rows sorted,
        # columns sorted within a row) by one search over row * width + column, times the
        # head's folded weight of the chosen class (``weights``: features × classes of all heads)
        values = matrix.data[cand.cell_in(matrix)] * weights[cand.cols, at + chosen[cand.rows]]
        # only positive contributions are shown; by clue, then by decreasing contribution
        # (ties in input order): np.lexsort((-values, rows)) in two stable sorts, the second
        # a radix sort on small row numbers, several times faster
        positive = np.flatnonzero(values > 0)
        order = positive[np.argsort(-values[positive], kind="stable")]
        rows_o = cand.rows[order]
        order = order[np.argsort(rows_o.astype(np.int16) if len(docs) < 2**15 else rows_o, kind="stable")]
        rows_o = cand.rows[order]
        starts = np.flatnonzero(np.r_[True, rows_o[1:] != rows_o[:-1]])  # each clue's first candidate
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        keep = order[rank < 2 * top]  # spare candidates, for overlaps
        tokens = cand.tokens
        # plain lists: reading numpy arrays element by element costs more than the loop itself
        for i, at, is_pair in zip(cand.rows[keep].tolist(), cand.start[keep].tolist(), cand.is_pair[keep].tolist(),
                                  strict=True):
            terms = out[i]
            if len(terms) >= top:
                continue
            script = scripts.get(i)
            if script is None:
                doc = docs[i]
                folded = doc.folded or (fold(originals[i]) if originals is not None else doc.text)
                script = scripts[i] = ScriptMap(doc.text, folded)
            shown = display_term((tokens[at], tokens[at + 1]) if is_pair else (tokens[at],), script)
            if shown is not None and not any(shown in t or t in shown for t in terms):
                terms.append(shown)
        return out

    # -- arrays, for a model file that cannot run code ---------------------------------
    def release_members(self) -> TwoHeadModel:
        """Keep only what prediction uses: the folded weights (:meth:`_scoring`), the classes
        and the stackers; drop the members' own weights, as large again as the folded ones
        (37 MB for the default model), which triage never reads. The model then predicts
        exactly as before and cannot be saved or refitted."""
        scoring = self._scoring()
        for h in self.heads_.values():
            h.coef, h.intercept = [], []
        # what the cache is checked against, without the members' arrays (it held them): a
        # replaced stacker is still noticed, and then folding fails for want of members
        scoring.made_of = tuple(a for h in self.heads_.values() for a in (h, h.stack_w, h.stack_b))
        return self

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able description, named arrays): everything needed to predict."""
        if any(not h.coef for h in self.heads_.values()):  # released (a fitted head has members)
            raise ValueError("this model was loaded for prediction only (its members' weights were released)")
        arrays = self.vocab_.to_arrays("vocab/")
        heads: dict[str, Any] = {}
        for name, h in self.heads_.items():
            heads[name] = {"classes": list(h.classes), "members": len(h.coef), "stacked": h.stack_w is not None}
            for m, (c, b) in enumerate(zip(h.coef, h.intercept, strict=True)):
                arrays[f"{name}/coef{m}"] = c
                arrays[f"{name}/intercept{m}"] = b
            if h.stack_w is not None and h.stack_b is not None:
                arrays[f"{name}/stack_w"] = h.stack_w
                arrays[f"{name}/stack_b"] = h.stack_b
        return {**self.config_dict(), "vocab": self.vocab_.config(), "heads": heads}, arrays

    @classmethod
    def from_arrays(cls, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> TwoHeadModel:
        model = cls(ModelConfig.from_dict(spec["model"]), int(spec["seed"]), spec["further_threshold"])
        model.review_thresholds = {k: float(v) for k, v in spec["review_thresholds"].items()}
        model.familiarity_floor = float(spec["familiarity_floor"])
        model.vocab_ = Vocabulary.from_arrays(spec["vocab"], dict(arrays), "vocab/")
        for name, h in spec["heads"].items():
            n = int(h["members"])
            model.heads_[name] = Head(
                tuple(h["classes"]),
                [np.asarray(arrays[f"{name}/coef{m}"], dtype=float) for m in range(n)],
                [np.asarray(arrays[f"{name}/intercept{m}"], dtype=float) for m in range(n)],
                np.asarray(arrays[f"{name}/stack_w"], dtype=float) if h["stacked"] else None,
                np.asarray(arrays[f"{name}/stack_b"], dtype=float) if h["stacked"] else None,
            )
        model._scoring()
        return model
