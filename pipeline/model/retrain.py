"""Retraining: reviewed clues flow into a challenger that must not be worse than the champion.

Training data is the corpus ``train`` + ``dev`` splits plus every reviewed clue (an
override wins over the corpus label for the same normalised text; reviewed copies of
corpus ``test`` clues and copies of one text labelled differently are left out and counted).
No reviewed clue is held out of training any more: the gate's evidence on reviewed clues
comes from K-fold instead.

**The K-fold gate.** Calibration (:func:`pipeline.model.train.calibrate`) already spreads
the reviewed clues over its five folds by a hash of their text and scores each fold with
members trained on the other folds. Those are out-of-fold challenger predictions for
every reviewed clue, at no extra cost (no fit is added, whether there are 30 reviewed
clues or 20,000), and the gate reuses them. They come from models that also lacked the
corpus registers of that fold (about a fifth of the corpus): if anything they understate
the challenger, so the shortcut can cost a promotion but never win one.

**Whose evidence is fair.** The champion is scored as it is, on clues it was not trained
on: reviewed clues whose text had no override up to the champion's
``data.overrides_max_id`` (read in the same snapshot as the clues it trained on) and is not
a corpus ``train``/``dev`` text. A clue the champion learned would make it look better than
it is; a clue reviewed after it was trained is new to both models. The alternative, to
K-fold the champion's recipe too, would double the fits and score a re-fit rather than the
model in service (its code and corpus may have changed since), so it was not taken.

The challenger is compared with the champion item by item (a paired bootstrap) on the
corpus ``test`` split and on those clues reviewed since the champion was trained: it is
promoted unless, on either, a head's macro-F1 is worse by more than ``max_drop`` *with
confidence* (the whole 95 % interval of the difference below the tolerance) or `further`
recall is worse with confidence. Fewer than ``MIN_EVIDENCE`` reviewed clues are reported
and cannot fail the gate: the outcome says the real-clue evidence is too thin and that the
corpus alone decided. Otherwise the challenger stays a candidate and the outcome says why,
head by head, with the numbers. ``force`` promotes anyway and the registry records that it
was forced.

:func:`audit` flags labels that look wrong (confident learning on out-of-fold
probabilities): they are reported, never dropped. ``retrain`` counts them on the
calibration's out-of-fold probabilities (no extra fits).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from ..errors import InputError, NoModelError
from ..fsutil import sha256_file
from ..labels import HEADS
from ..paths import CORPUS_PATH, Home
from ..review.review import ReviewedClue, reviewed_examples
from ..store.store import connect
from ..text.features import prepare
from ..text.normalize import normalize
from .corpus import Clue, load_corpus, split
from .evaluate import evaluate_decided
from .model import DEFAULT_CONFIG, TwoHeadModel, fit_stacker, softmax
from .registry import Registry
from .train import (
    REVIEWED_GROUP,
    Example,
    calibration_sample,
    examples_from,
    fit_and_calibrate,
    out_of_group,
)

DEFAULT_MAX_DROP = 0.01


@lru_cache(maxsize=1 << 17)
def _normalized(text: str) -> str:
    """:func:`normalize`, memoised: a retrain normalises each of its (up to tens of
    thousands of) reviewed texts several times over; :func:`retrain` empties it when done."""
    return normalize(text)


@dataclass(frozen=True)
class TrainingSet:
    train: list[Example]  # corpus train clues, then the reviewed clues (in the order of ``reviewed``)
    dev: list[Example]
    dev_scripts: list[str]
    reviewed: list[ReviewedClue]  # every reviewed clue trained on
    reviewed_used: int
    corpus_replaced: int
    refs: list[str]  # corpus id or clue key of each example of train + dev, in order
    skipped: dict[str, int] = field(default_factory=dict)  # reviewed clues not used, by reason


def one_per_text(reviewed: Sequence[ReviewedClue]) -> tuple[list[ReviewedClue], int]:
    """One reviewed clue per normalised text (the latest decided); texts whose copies carry
    different decided labels are left out and counted, not guessed."""
    groups: dict[str, list[ReviewedClue]] = {}
    for r in reviewed:
        groups.setdefault(_normalized(r.text), []).append(r)
    kept, conflicts = [], 0
    for copies in groups.values():
        labels = {(h, getattr(r, h)) for r in copies for h in r.decided}
        if len({h for h, _ in labels}) != len(labels):
            conflicts += len(copies)
            continue
        kept.append(max(copies, key=lambda r: r.last_decided))
    return kept, conflicts


def training_set(corpus: Sequence[Clue], reviewed: Sequence[ReviewedClue]) -> TrainingSet:
    """Corpus train+dev plus reviewed clues; overrides win over corpus labels for the same text."""
    test_texts = {_normalized(c.text) for c in split(corpus, "test")}
    unique, conflicts = one_per_text(reviewed)
    in_test = [r for r in unique if _normalized(r.text) in test_texts]
    used = [r for r in unique if _normalized(r.text) not in test_texts]
    reviewed_texts = {_normalized(r.text) for r in used}
    train_clues = [c for c in split(corpus, "train") if _normalized(c.text) not in reviewed_texts]
    dev_clues = [c for c in split(corpus, "dev") if _normalized(c.text) not in reviewed_texts]
    replaced = len(split(corpus, "train", "dev")) - len(train_clues) - len(dev_clues)
    train = examples_from(train_clues) + [Example(r.text, r.attention, r.area, "review", r.decided, REVIEWED_GROUP) for r in used]
    refs = [c.id for c in train_clues] + [r.clue_key for r in used] + [c.id for c in dev_clues]
    skipped = {"conflicting_copies": conflicts, "corpus_test_text": len(in_test),
               "duplicate_copies": len(reviewed) - len(unique) - conflicts}
    return TrainingSet(train, examples_from(dev_clues), [c.script for c in dev_clues], used, len(used), replaced,
                       refs, skipped)


def seen_texts(db: Any, overrides_max_id: int) -> set[str]:
    """Normalised texts of every clue with an override row up to ``overrides_max_id``: the
    reviewed texts a model whose manifest records that id may have been trained on."""
    rows = db.execute("SELECT DISTINCT c.text FROM overrides o JOIN clues c ON c.clue_key = o.clue_key "
                      "WHERE o.override_id <= ?", (overrides_max_id,))
    return {_normalized(r[0]) for r in rows}


def trained_on(manifest: Mapping[str, Any], db: Any, corpus: Sequence[Clue]) -> set[str]:
    """Normalised texts a model may have been trained on: the corpus ``train`` and ``dev``
    splits and the clues reviewed up to its ``data.overrides_max_id``. Conservative: a clue
    that training left out (a conflicting copy, the old 20 % hold-out) counts as seen."""
    seen = seen_texts(db, int(manifest.get("data", {}).get("overrides_max_id", 0) or 0))
    return seen | {_normalized(c.text) for c in split(corpus, "train", "dev")}


@dataclass
class Comparison:
    """Champion against challenger on one data set: per metric the difference (challenger
    minus champion) and its 95 % paired-bootstrap interval."""

    data: str
    n: int
    champion: dict[str, float]
    challenger: dict[str, float]
    failures: list[str] = field(default_factory=list)
    intervals: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    note: str = ""
    #: per metric: better / no clear difference / worse, within tolerance / not gated (n < 30) / FAILS
    verdicts: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # per metric: the clues it was measured on

    @property
    def passed(self) -> bool:
        return not self.failures


#: Below this many items a data set is reported but cannot fail the gate: one item's worth of
#: F1 on 25 clues is noise, not evidence.
MIN_EVIDENCE = 30
BOOTSTRAP = 1000


def _macro_f1(weights: np.ndarray, truth: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Macro-F1 of each resample (rows of ``weights``: how often each item was drawn)."""
    f1 = []
    for c in labels:
        tp = weights @ ((truth == c) & (pred == c))
        fp = weights @ ((truth != c) & (pred == c))
        fn = weights @ ((truth == c) & (pred != c))
        denom = 2 * tp + fp + fn
        f1.append(np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0))
    return np.mean(f1, axis=0)


def _recall(weights: np.ndarray, truth: np.ndarray, pred: np.ndarray, label: str) -> np.ndarray:
    hit = weights @ ((truth == label) & (pred == label))
    total = weights @ (truth == label)
    return np.divide(hit, total, out=np.ones_like(total, dtype=float), where=total > 0)


def paired_bootstrap(truth: Sequence[str], champion: Sequence[str], challenger: Sequence[str],
                     metric: str, labels: Sequence[str], *, seed: int = 0,
                     draws: int = BOOTSTRAP) -> tuple[float, float, float]:
    """Challenger minus champion on the same items, and its 95 % interval (both models are
    scored on the same resampled items, so what they share cancels out)."""
    y, a, b = np.asarray(truth), np.asarray(champion), np.asarray(challenger)
    n = len(y)
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=draws)]).astype(float)
    score = (lambda w, p: _macro_f1(w, y, p, labels)) if metric == "macro_f1" else (lambda w, p: _recall(w, y, p, "further"))
    diff = score(weights, b) - score(weights, a)
    lo, hi = np.percentile(diff[1:], [2.5, 97.5])
    return float(diff[0]), float(lo), float(hi)


def compare(data: str, truth: Mapping[str, Sequence[str]], champion: Mapping[str, Sequence[str]],
            challenger: Mapping[str, Sequence[str]], max_drop: float,
            decided: Sequence[Sequence[str]] | None = None) -> Comparison:
    """The gate on one data set. A head fails only when it is worse *with confidence*: the
    whole 95 % interval of its macro-F1 difference lies below ``-max_drop``; `further` recall
    fails when the whole interval lies below zero. Under ``MIN_EVIDENCE`` items the set is
    reported and cannot fail."""
    result = Comparison(data, 0, {}, {})
    for head in HEADS:
        keep = [i for i in range(len(truth[head])) if decided is None or head in decided[i]]
        if not keep:
            continue
        y = [truth[head][i] for i in keep]
        a = [champion[head][i] for i in keep]
        b = [challenger[head][i] for i in keep]
        result.n = max(result.n, len(keep))
        labels = [c for c in HEADS[head] if c in set(y)]
        checks = [(f"{head}_macro_f1", "macro_f1", max_drop)]
        if head == "attention" and "further" in labels:
            checks.append(("further_recall", "further_recall", 0.0))
        for name, metric, tolerance in checks:
            diff, lo, hi = paired_bootstrap(y, a, b, metric, labels)
            base = float(_macro_f1(np.ones((1, len(y))), np.asarray(y), np.asarray(a), labels)[0]) if metric == "macro_f1" \
                else float(_recall(np.ones((1, len(y))), np.asarray(y), np.asarray(a), "further")[0])
            result.champion[name], result.challenger[name] = round(base, 4), round(base + diff, 4)
            result.intervals[name] = (round(diff, 4), round(lo, 4), round(hi, 4))
            result.counts[name] = len(keep) if metric == "macro_f1" else int(sum(v == "further" for v in y))
            label = "macro-F1" if metric == "macro_f1" else "recall"
            what = head if metric == "macro_f1" else "further"
            if len(keep) < MIN_EVIDENCE:
                result.verdicts[name] = f"not gated (n < {MIN_EVIDENCE})"
            elif hi < -tolerance:
                result.verdicts[name] = "FAILS: worse with confidence"
                result.failures.append(
                    f"{data}: {what} {label} falls {base:.3f} → {base + diff:.3f} (difference {diff:+.3f}, 95 % "
                    f"interval {lo:+.3f} to {hi:+.3f}: worse than the tolerance {tolerance:.3f} with confidence)")
            elif lo > 0:
                result.verdicts[name] = "better"
            elif hi < 0:
                result.verdicts[name] = "worse, within tolerance"
            else:
                result.verdicts[name] = "no clear difference"
    if 0 < result.n < MIN_EVIDENCE:
        result.note = f"{data}: {result.n} clues are too few to decide on; reported, not gated"
    return result


def _labels(model: TwoHeadModel, docs: Sequence[Any]) -> dict[str, list[str]]:
    result = model.predict(docs)
    return {h: result[h].labels for h in HEADS}


@dataclass(frozen=True)
class Suspect:
    """A training label that out-of-fold predictions disagree with confidently."""

    origin: str  # "corpus" or "review"
    ref: str  # corpus id or clue key
    text: str
    head: str
    given: str
    suggested: str
    p_given: float
    p_suggested: float


def audit(examples: Sequence[Example], refs: Sequence[str], *, seed: int = 0, folds: int = 5,
          proba: Mapping[str, np.ndarray] | None = None) -> list[Suspect]:
    """Confident learning: per class, the threshold is the mean out-of-fold probability of
    that class among examples labeled with it; an example is suspect when its given label
    falls below its class threshold while another class reaches its own. Sorted most
    suspicious first.

    The out-of-fold probabilities come from ``folds`` stratified folds, or are given
    (``proba``: per head, one row per example, classes in the contract's order), as retrain
    gives those of its calibration and so fits nothing more."""
    if proba is None:
        proba = _stratified_proba(examples, seed, folds)
    suspects = []
    for head in HEADS:
        y = np.array([e.label(head) for e in examples])
        classes = np.array(HEADS[head])
        p = proba[head]
        index = {c: i for i, c in enumerate(classes)}
        given = np.array([index[v] for v in y])
        present = [k for k in range(len(classes)) if (given == k).any()]
        thresholds = np.array([p[given == k, k].mean() if k in present else 1.0 for k in range(len(classes))])
        for i in range(len(examples)):
            p_given = p[i, given[i]]
            above = [k for k in present if k != given[i] and p[i, k] >= thresholds[k]]
            if p_given < thresholds[given[i]] and above:
                k = max(above, key=lambda c: p[i, c])
                suspects.append(
                    Suspect(examples[i].origin, refs[i], examples[i].text, head, str(y[i]), str(classes[k]),
                            float(p_given), float(p[i, k]))
                )
    return sorted(suspects, key=lambda s: s.p_given - s.p_suggested)


def _stratified_proba(examples: Sequence[Example], seed: int, folds: int) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities on ``folds`` stratified folds (members, then a stacker)."""
    docs = prepare([e.text for e in examples])
    y_att = [e.attention for e in examples]
    fold_of = [""] * len(examples)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for f, (_, held) in enumerate(splitter.split(np.zeros(len(examples)), y_att)):
        for i in held:
            fold_of[i] = f"fold{f}"
    oof = out_of_group(examples, TwoHeadModel(DEFAULT_CONFIG, seed).keys(docs), DEFAULT_CONFIG, seed, fold_of)
    proba = {}
    for head in HEADS:
        w, b = fit_stacker(oof.scores[head], [e.label(head) for e in examples], HEADS[head])
        proba[head] = softmax(oof.scores[head] @ w.T + b)
    return proba


def audit_home(home: Home, *, corpus_path: Any = CORPUS_PATH, seed: int = 0) -> list[Suspect]:
    """Audit everything the next retrain would train on (corpus train+dev and reviewed clues)."""
    db = connect(home.db_path)
    try:
        reviewed = reviewed_examples(db)
    finally:
        db.close()
    data = training_set(load_corpus(corpus_path), reviewed)
    return audit([*data.train, *data.dev], data.refs, seed=seed)


@dataclass
class RetrainOutcome:
    status: str  # nothing_to_do | promoted | candidate | forced | first_model
    message: str
    version: str | None = None
    champion: str | None = None
    new_overrides: int = 0  # clues with an override since the last model was trained
    comparisons: list[Comparison] = field(default_factory=list)
    suspects: int = 0
    sizes: dict[str, int] = field(default_factory=dict)
    #: what the gate decided on, in words (corpus alone when the real-clue evidence is thin)
    evidence: str = ""
    #: the challenger's out-of-fold scores on every reviewed clue it was trained on (reported, not gated)
    reviewed_out_of_fold: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _override_count(db: Any) -> tuple[int, int]:
    row = db.execute("SELECT COUNT(*), COALESCE(MAX(override_id), 0) FROM overrides").fetchone()
    return int(row[0]), int(row[1])


def evidence_words(champion: str | None, fresh: int, corpus_test: int, new: int | None = None) -> str:
    """What the gate decided on, in one sentence (``new``: clues new to the champion, of
    which ``fresh`` were scored out of fold when calibration took a sample)."""
    if champion is None:
        return "no champion to compare with: the first model is promoted without a gate"
    if fresh == 0:
        return (f"no reviewed clue is new to {champion} (it was trained on every one, or none exists): "
                f"the gate decided on the corpus test split alone ({corpus_test} clues)")
    if fresh < MIN_EVIDENCE:
        return (f"real-clue evidence too thin: {fresh} clue(s) reviewed since {champion} was trained, fewer than "
                f"{MIN_EVIDENCE}; they are reported, and the gate decided on the corpus test split alone "
                f"({corpus_test} clues)")
    some = f"{fresh:,} of the {new:,}" if new is not None and new > fresh else f"{fresh:,}"
    return (f"the gate decided on the corpus test split ({corpus_test} clues) and on {some} clues reviewed since "
            f"{champion} was trained, which neither model was trained on (the challenger's predictions out of fold)")


def retrain(
    home: Home,
    *,
    corpus_path: Any = CORPUS_PATH,
    min_new_overrides: int = 0,
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    seed: int = 0,
    by: str = "retrain",
) -> RetrainOutcome:
    """Train a challenger on corpus + reviewed clues, compare, and promote if it passes the gate.

    The gate is described in the module docstring: the corpus ``test`` split, and the clues
    reviewed since the champion was trained, scored for the challenger out of fold."""
    try:
        return _retrain(home, corpus_path=corpus_path, min_new_overrides=min_new_overrides, max_drop=max_drop,
                        force=force, seed=seed, by=by)
    finally:
        _normalized.cache_clear()


def _retrain(home: Home, *, corpus_path: Any, min_new_overrides: int, max_drop: float, force: bool, seed: int,
             by: str) -> RetrainOutcome:
    started = time.perf_counter()
    registry = Registry(home.models)
    db = connect(home.db_path)
    try:
        db.execute("BEGIN")  # one read snapshot: the overrides counted are those trained on
        total, max_id = _override_count(db)
        try:
            champion = registry.load()
        except NoModelError:
            champion = None
        # counted from the newest model any retrain produced, not from the champion: after a
        # rollback, or a candidate that failed the gate, cron must not retrain the same data
        baseline = max((int(registry.manifest(v).get("data", {}).get("overrides_max_id", 0))
                        for v in registry.versions()), default=0)
        # clues, not override rows: one clue reviewed on both heads is one new reviewed clue
        new = int(db.execute("SELECT COUNT(DISTINCT clue_key) FROM overrides WHERE override_id > ? "
                             "AND override_id <= ?", (baseline, max_id)).fetchone()[0])
        if champion is not None and new < min_new_overrides:
            return RetrainOutcome("nothing_to_do", f"nothing to do: {new} newly reviewed clue(s) since the last "
                                  f"model was trained, fewer than {min_new_overrides}", champion=champion.version,
                                  new_overrides=new)
        reviewed = reviewed_examples(db)
        corpus = load_corpus(corpus_path)
        seen = trained_on(champion.manifest, db, corpus) if champion is not None else set()
    finally:
        db.execute("ROLLBACK")
        db.close()
    data = training_set(corpus, reviewed)
    examples = [*data.train, *data.dev]
    first = len(data.train) - len(data.reviewed)  # position of the first reviewed example
    new_to_champion = [j for j, r in enumerate(data.reviewed) if _normalized(r.text) not in seen]
    outcome = fit_and_calibrate(examples, seed=seed,
                                calibrate_on=calibration_sample(examples, [first + j for j in new_to_champion]))
    cal = outcome.calibrated
    assert cal is not None
    position = {int(p): k for k, p in enumerate(cal.index)}  # example position -> row of the calibration
    suspects = audit([examples[p] for p in cal.index], [data.refs[p] for p in cal.index], seed=seed, proba=cal.proba)

    # the challenger's out-of-fold predictions of the reviewed clues (see the module docstring)
    scored = [j for j in range(len(data.reviewed)) if first + j in position]
    rows = [position[first + j] for j in scored]
    oof = {h: [cal.predicted[h][k] for k in rows] for h in HEADS}
    oof_conf = {h: cal.confidence[h][rows] for h in HEADS}
    rev_truth = {h: [getattr(data.reviewed[j], h) for j in scored] for h in HEADS}
    rev_decided = [data.reviewed[j].decided for j in scored]
    metrics = {"out_of_register": outcome.manifest["metrics"]["out_of_register"]}
    reviewed_scores: dict[str, float] = {}
    if scored:
        reviewed_scores = {"n": len(scored), **evaluate_decided(
            "challenger", "reviewed, out of fold", rev_truth, oof, rev_decided, oof_conf).summary()}
        metrics["reviewed, out of fold"] = reviewed_scores

    test = split(corpus, "test")
    test_docs = prepare([c.text for c in test])
    test_truth = {h: [c.label(h) for c in test] for h in HEADS}
    mine = _labels(outcome.model, test_docs)
    metrics["corpus test"] = evaluate_decided("challenger", "corpus test", test_truth, mine,
                                              [tuple(HEADS)] * len(test)).summary()
    comparisons: list[Comparison] = []
    # the gate's real-clue evidence: clues new to the champion, scored out of fold (k: their rows above)
    fresh = [k for k, j in enumerate(scored) if _normalized(data.reviewed[j].text) not in seen]
    if champion is not None:
        comparisons.append(compare("corpus test", test_truth, _labels(champion.model, test_docs), mine, max_drop))
        if fresh:
            name = f"reviewed since {champion.version}"
            theirs = _labels(champion.model, prepare([data.reviewed[scored[k]].text for k in fresh]))
            comparisons.append(compare(name, {h: [rev_truth[h][j] for j in fresh] for h in HEADS}, theirs,
                                       {h: [oof[h][j] for j in fresh] for h in HEADS}, max_drop,
                                       [rev_decided[j] for j in fresh]))
    evidence = evidence_words(champion.version if champion else None, len(fresh) if champion else 0, len(test),
                              len(new_to_champion))
    sizes = {**outcome.data_sizes, "reviewed": data.reviewed_used, "corpus_replaced_by_review": data.corpus_replaced,
             "reviewed_new_to_champion": len(new_to_champion) if champion else 0,
             "reviewed_gate_evidence": len(fresh) if champion else 0,
             **{f"reviewed_skipped_{k}": v for k, v in data.skipped.items()}}
    manifest = outcome.manifest
    manifest["data"].update({"sizes": sizes, "overrides_used": total, "overrides_max_id": max_id,
                             "suspect_labels": len(suspects), "corpus_sha256": sha256_file(corpus_path)})
    manifest["metrics"] = metrics
    manifest["parent"] = champion.version if champion else None
    failures = [f for c in comparisons for f in c.failures]
    manifest["gate"] = {"max_drop": max_drop, "passed": not failures, "failures": failures, "forced": force and bool(failures),
                        "rule": "fail only when the 95 % paired-bootstrap interval of a difference lies wholly below "
                                "the tolerance", "intervals": {c.data: c.intervals for c in comparisons},
                        "notes": [c.note for c in comparisons if c.note],
                        "champion": champion.version if champion else None, "evidence": evidence,
                        "comparisons": [asdict(c) for c in comparisons]}
    saved = registry.save(outcome.model, manifest)
    version = str(saved["version"])
    result = RetrainOutcome("", "", version, None, new, comparisons, len(suspects), sizes, evidence, reviewed_scores)
    if champion is None:
        registry.promote(version, by=by, reason="first model")
        result.status, result.message, result.champion = "first_model", f"{version} trained and promoted (there was no champion)", version
    elif failures and not force:
        result.status, result.champion = "candidate", champion.version
        result.message = f"{version} kept as a candidate; {champion.version} stays champion"
    else:
        try:
            registry.promote(version, by=by, forced=bool(failures), expected_champion=champion.version,
                             reason="passed the gate" if not failures else "forced: " + "; ".join(failures))
        except InputError as exc:  # someone promoted or rolled back while we trained
            result.status, result.champion = "candidate", registry.champion()
            result.message = f"{version} kept as a candidate: {exc}"
            result.seconds = time.perf_counter() - started
            return result
        result.status, result.champion = ("forced" if failures else "promoted"), version
        result.message = f"{version} promoted over {champion.version}" + (" (forced)" if failures else "")
    result.seconds = time.perf_counter() - started
    return result
