"""Training: thresholds and calibration from registers the model did not see, then the final fit.

Protocol (``docs/model.md``). The training data (corpus ``train`` + ``dev``, and reviewed
clues when retraining) is grouped by **register** — how a clue is written: a petition
letter, a talk note, a line of an inspection feedback report, a case notice … Reviewed
clues form a group of their own.

1. Pack the corpus groups into five folds of whole groups, and spread the reviewed clues
   over the same five folds by a hash of their text (K-fold); for each fold, fit the
   members on the other folds and score it. Every corpus clue gets *out-of-register*
   scores, as if it came from a kind of text the model had never seen (the situation that
   matters: real intake is not our corpus); every reviewed clue gets *out-of-fold* scores
   from members trained on most of the corpus and the other reviewed folds (the office's
   own intake, as the next clue will meet it). The folds are fitted one after another in a
   forked process of their own, started as soon as the feature keys exist, side by side with
   the members of the final fit of step 5 (each member a job of its own: six of them on
   every example are the longest fits) and the familiarity folds of step 4 in a pool of
   forked workers (one per CPU, at most ``MAX_FIT_PROCESSES``). Not threads: liblinear draws
   from one random generator per process, so fits sharing a process would not be reproducible.
2. Fit each head's stacker (multinomial logistic regression over the members' scores) on
   those out-of-register scores: this is the calibration.
3. On the calibrated out-of-register probabilities choose the `further` threshold (best
   attention macro-F1 with `further` recall ≥ 0.90) and the needs-review thresholds (the
   fewest flags such that unflagged clues are right ≥ 90 % on attention and ≥ 95 % on area,
   with the familiarity and misconduct-term rules of :mod:`pipeline.model.flags` applied too).
   With at least ``REVIEWED_THRESHOLD_MIN`` reviewed clues, both are chosen on the reviewed
   clues' out-of-fold probabilities alone, so the promise holds on the office's own intake;
   the manifest's ``thresholds.chosen_on`` says which.
4. The familiarity floor is the 5th percentile of training clues' familiarity measured
   out of fold (5 random folds): a clue less familiar than 95 % of training clues is flagged.
5. Fit the final members on everything and attach stackers and thresholds. ``test`` is
   never used here.

The manifest records the out-of-register scores per register (``metrics.out_of_register``).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import platform
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, recall_score
from sklearn.model_selection import StratifiedKFold

from .. import __version__
from ..fsutil import sha256_file
from ..labels import AREA, ATTENTION, HEADS
from ..paths import ALARM_TERMS_PATH, STOPWORDS_PATH, USERDICT_PATH, Home
from ..text.features import prepare
from ..text.normalize import normalize
from ..text.segment import current_segmenter
from .corpus import Clue, split
from .evaluate import Evaluation, evaluate_predictions
from .flags import has_alarm, needs_review
from .model import (
    DEFAULT_CONFIG,
    LINEAR_SVC_TOL,
    ModelConfig,
    TwoHeadModel,
    decide,
    fit_stacker,
    softmax,
)
from .vectorize import Counts, Keys, counted, held_out_familiarity

UNFLAGGED_ACCURACY = {"attention": 0.90, "area": 0.95}
FURTHER_RECALL_FLOOR = 0.90
FAMILIARITY_QUANTILE = 0.05
#: Registers are packed into this many folds of whole registers for calibration (5 fits
#: instead of 13); ``scripts/compare_models.py`` and ``scripts/transfer.py`` leave out one
#: register at a time.
CALIBRATION_FOLDS = 5
#: A reviewed clue counts this many times a corpus clue: it is a correction made by the
#: office on its own intake, usually of a pattern the model keeps getting wrong.
REVIEW_WEIGHT = 3.0
REVIEWED_GROUP = "reviewed"
#: At most this share of clues flagged for review (the issue's target); a rule that meets the
#: accuracy targets below it spends the rest on possible-`further` second looks.
FLAG_BUDGET = 0.40
#: Candidate ``possible_further`` thresholds: a clue not called `further` whose `further`
#: probability reaches it is flagged. Measured leave-one-register-out: further clues neither
#: called `further` nor flagged fell from 5.9 % to 3.4–4.3 % at about the same flagged share.
POSSIBLE_FURTHER = (0.10, 0.15, 0.20, 0.25)
#: When the rule already flags more than the budget, second looks may still add this much.
SECOND_LOOK_ALLOWANCE = 0.02
#: From this many reviewed clues on, the `further` and needs-review thresholds are chosen on
#: the reviewed clues' out-of-fold predictions alone (the office's own intake), not on the
#: corpus' out-of-register ones (reviewed clues among them). Not 100: with 100 reviewed
#: media reports (about 30 `further`), choosing on them alone lowered the `further`
#: threshold and left the register's never-reviewed clues at attention macro-F1 0.742
#: (`further` recall 0.935) against 0.757 (0.903) when chosen with the corpus behind them
#: (`tests/test_learning.py`, seed 0): a threshold chosen on a few dozen `further` clues is
#: noise.
REVIEWED_THRESHOLD_MIN = 200
#: Steps 1–4 use at most this many reviewed clues (all of them below it): past a few
#: thousand, more reviewed clues add little to the out-of-fold evidence and thresholds but
#: make each of the five fold fits slower. The final fit always uses every one.
REVIEWED_CALIBRATION_MAX = 3000
#: At most this many workers fit the final members at once, each in its own process with its
#: own copy of liblinear's input (about 250 MB each for 24,000 training clues); the fold
#: process runs beside them (about 150 MB: its folds hold the calibration sample only).
MAX_FIT_PROCESSES = 3


def fit_processes() -> int:
    """How many fits to run at once: the CPUs this process may use, at most ``MAX_FIT_PROCESSES``;
    1 (no worker process) where processes cannot be forked."""
    if not sys.platform.startswith("linux"):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_FIT_PROCESSES))


def reviewed_fold(text: str, folds: int) -> int:
    """The calibration fold of a reviewed clue: a hash of its normalised text, so the choice
    never changes between retrains and copies of one text fall in the same fold."""
    return int(hashlib.sha256(normalize(text).encode()).hexdigest()[:8], 16) % folds


@dataclass(frozen=True)
class Example:
    """One training example: text and both labels, with where it came from."""

    text: str
    attention: str
    area: str
    origin: str = "corpus"  # or "review"
    decided: tuple[str, ...] = ("attention", "area")  # heads whose label a person gave
    group: str = ""  # the register (corpus) or "reviewed"

    def label(self, head: str) -> str:
        return self.attention if head == "attention" else self.area


@dataclass
class TrainOutcome:
    model: TwoHeadModel
    manifest: dict[str, Any]
    dev: Evaluation
    data_sizes: dict[str, int] = field(default_factory=dict)
    #: the out-of-fold predictions of every training example (retraining's gate reuses those
    #: of the reviewed clues)
    calibrated: Calibrated | None = None


def review_weights(examples: Sequence[Example]) -> dict[str, list[float]] | None:
    """Per head: a reviewer's decision counts REVIEW_WEIGHT times; a head the reviewer left
    at the model's prediction counts once, so the model is not taught its own guesses."""
    if all(e.origin == "corpus" for e in examples):
        return None
    return {
        head: [REVIEW_WEIGHT if e.origin == "review" and head in e.decided else 1.0 for e in examples]
        for head in HEADS
    }


def examples_from(clues: Sequence[Clue]) -> list[Example]:
    return [Example(c.text, c.attention, c.area, group=c.register) for c in clues]


def choose_further_threshold(truth: Sequence[str], classes: Sequence[str], proba: np.ndarray) -> float | None:
    """The `further` threshold giving the best macro-F1 among those with recall ≥ 0.90."""
    best: tuple[float, float | None] | None = None
    fallback: tuple[float, float | None] | None = None
    for t in [None, *np.round(np.arange(0.50, 0.09, -0.025), 3)]:
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


def subset(keys: Keys, idx: np.ndarray) -> Keys:
    """The keys of documents ``idx`` (in that order), renumbered 0…len(idx)-1."""
    where = np.full(keys.n_docs, -1, dtype=np.int64)
    where[idx] = np.arange(len(idx))
    rows = where[keys.rows]
    keep = rows >= 0
    order = np.argsort(rows[keep], kind="stable")
    return Keys(rows[keep][order], keys.keys[keep][order], len(idx))


@dataclass
class OutOfGroup:
    """Every example scored by a model that never saw its group."""

    groups: list[str]
    scores: dict[str, np.ndarray]  # per head: members' scores, blocks in HEADS order
    familiarity: np.ndarray


def _aligned(model: TwoHeadModel, head: str, scores: np.ndarray) -> np.ndarray:
    """Members' score blocks in the head's full class order (a class absent from a fold's
    training data gets a score far below the others)."""
    classes = model.heads_[head].classes
    k, full = len(classes), HEADS[head]
    blocks = []
    for m in range(scores.shape[1] // k):
        block = scores[:, m * k : (m + 1) * k]
        out = np.full((len(scores), len(full)), block.min() - 5.0 if block.size else -5.0)
        for c, name in enumerate(classes):
            out[:, full.index(name)] = block[:, c]
        blocks.append(out)
    return np.hstack(blocks)


def _packed(groups: Sequence[str], folds: int) -> dict[str, int]:
    """Whole groups packed into ``folds`` folds of similar size (largest group first into the
    smallest fold; deterministic): group → fold number."""
    sizes: dict[str, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for g in sorted(sizes, key=lambda g: (-sizes[g], g)):
        f = load.index(min(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return fold_of


def _grouped(groups: Sequence[str], folds: int) -> list[str]:
    """Whole groups packed into ``folds`` folds (see :func:`_packed`), so that fewer fits
    still leave every group out; each example gets its fold's name."""
    fold_of = _packed(groups, folds)
    names = {f: "+".join(sorted(g for g, v in fold_of.items() if v == f)) for f in range(folds)}
    return [names[fold_of[g]] for g in groups]


def _stratified(examples: Sequence[Example], folds: int, seed: int) -> list[str]:
    y = [e.attention for e in examples]
    out = [""] * len(examples)
    for f, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        for i in held:
            out[i] = f"fold{f}"
    return out


def calibration_sample(examples: Sequence[Example], prefer: Sequence[int] = (), cap: int | None = None) -> list[int]:
    """Positions of the examples steps 1–4 use: every corpus example and at most ``cap``
    (default ``REVIEWED_CALIBRATION_MAX``) reviewed ones, those in ``prefer`` first
    (retraining prefers the clues new to the champion: the gate's evidence), then the others
    in a fixed order (a hash of the text)."""
    cap = REVIEWED_CALIBRATION_MAX if cap is None else cap
    reviewed = [i for i, e in enumerate(examples) if e.origin == "review"]
    if len(reviewed) <= cap:
        return list(range(len(examples)))
    first = set(prefer)

    def order(i: int) -> tuple[bool, str]:
        return i not in first, hashlib.sha256(normalize(examples[i].text).encode()).hexdigest()

    chosen = set(sorted(reviewed, key=order)[:cap])
    return [i for i, e in enumerate(examples) if e.origin != "review" or i in chosen]


def calibration_folds(examples: Sequence[Example], folds: int = CALIBRATION_FOLDS, seed: int = 0) -> list[str]:
    """The fold of each example for step 1: corpus registers packed into ``folds`` folds of
    whole registers, reviewed clues spread over the same folds by :func:`reviewed_fold`.

    A reviewed clue of fold k is thus scored by members trained on the other folds: the
    corpus registers outside fold k and the reviewed clues outside fold k. With fewer than
    three corpus registers (a tiny corpus) every example goes into one of ``folds``
    stratified folds. With no reviewed clue the folds are those of the corpus alone."""
    corpus = [e.group for e in examples if e.origin != "review"]
    if len(set(corpus)) < 3:
        return _stratified(examples, folds, seed)
    fold_of = _packed(corpus, folds) if len(set(corpus)) > folds else {g: k for k, g in enumerate(sorted(set(corpus)))}
    return [f"fold{reviewed_fold(e.text, folds) if e.origin == 'review' else fold_of[e.group]}" for e in examples]


FoldScores = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # held-out rows, familiarity, scores


def _fold_scores(examples: Sequence[Example], keys: Keys, config: ModelConfig, seed: int, folds: np.ndarray,
                 weights: dict[str, list[float]] | None, name: str) -> FoldScores:
    """Fit the members on every fold but ``name``; score fold ``name``."""
    held, fit = np.flatnonzero(folds == name), np.flatnonzero(folds != name).tolist()
    model = TwoHeadModel(config, seed).fit(
        subset(keys, np.asarray(fit, dtype=np.int64)), {h: [examples[i].label(h) for i in fit] for h in HEADS},
        None if weights is None else {h: [weights[h][i] for i in fit] for h in HEADS},
    )
    batch = model.batch(subset(keys, held))
    return held, batch.familiarity, {h: _aligned(model, h, model.heads_[h].scores(batch.matrix)) for h in HEADS}


def _assemble(examples: Sequence[Example], config: ModelConfig, groups: Sequence[str],
              results: Sequence[FoldScores]) -> OutOfGroup:
    scores = {h: np.zeros((len(examples), len(config.heads[h].members) * len(HEADS[h]))) for h in HEADS}
    familiarity = np.zeros(len(examples))
    for held, fam, fold_scores in results:
        familiarity[held] = fam
        for h in HEADS:
            scores[h][held] = fold_scores[h]
    return OutOfGroup(list(groups), scores, familiarity)


def out_of_group(examples: Sequence[Example], keys: Keys, config: ModelConfig, seed: int,
                 groups: Sequence[str] | None = None, max_folds: int | None = None) -> OutOfGroup:
    """Step 1 of the protocol: leave one group out, score it, for every group.

    With ``max_folds``, groups are packed into that many folds of whole groups (each clue is
    still scored by a model that never saw its group, nor the few groups packed with it).
    With fewer than three groups (a tiny corpus) the groups are five stratified folds."""
    groups = list(groups if groups is not None else [e.group for e in examples])
    original = list(groups)
    if len(set(groups)) < 3:
        groups = _stratified(examples, 5, seed)
    if max_folds and len(set(groups)) > max_folds:
        groups = _grouped(groups, max_folds)
    g, weights = np.asarray(groups), review_weights(examples)
    results = [_fold_scores(examples, keys, config, seed, g, weights, name) for name in sorted(set(groups))]
    return _assemble(examples, config, original, results)


#: What forked fit workers inherit: set just before a pool forks them, emptied after.
_JOB: dict[str, Any] = {}


@contextmanager
def _fit_pool(job: dict[str, Any]) -> Iterator[ProcessPoolExecutor | None]:
    """``fit_processes()`` worker processes, forked at the first submit with ``job`` in their
    memory (no pickling of the feature keys), or None when only one fit can run at a time."""
    workers = fit_processes()
    if workers < 2:
        yield None
        return
    _JOB.update(job)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield pool
    except BaseException:  # Ctrl-C, SIGTERM, a failed fit: stop the workers now, not after their fits
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.kill()  # SIGKILL: a worker inside liblinear handles SIGTERM only when its fit returns
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)  # reaped now, not whenever the interpreter next looks
        raise
    else:
        pool.shutdown()
    finally:
        _JOB.clear()


class _FoldProcess:
    """The calibration folds, one after another, in one forked process that sends their
    scores back through a pipe. A bare process and not a one-worker pool: a pool keeps
    threads in this process (its manager and queue feeder), and the member pool forked while
    they run could inherit a lock one of them holds (CPython gh-90622)."""

    def __init__(self, job: dict[str, Any], names: Sequence[str]) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_folds, args=(job, list(names), send), daemon=True)
        self._process.start()
        send.close()  # the child's end: this process keeps only the one it reads

    def results(self) -> list[FoldScores]:
        try:
            ok, payload = self._receive.recv()
        except EOFError:  # the process died without a word (killed, out of memory)
            self._process.join()
            raise RuntimeError(f"the calibration fold process ended with exit code {self._process.exitcode}") from None
        finally:
            self._receive.close()
        self._process.join()
        if not ok:
            raise payload
        return payload

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._receive.close()


def _run_folds(job: dict[str, Any], names: list[str], send: Any) -> None:
    try:
        result: tuple[bool, Any] = (True, [_job_fold(n, job) for n in names])
    except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
        result = (False, exc)
    send.send(result)
    send.close()


def _job_fold(name: str, job: dict[str, Any]) -> FoldScores:  # in the fold process, or in this one
    return _fold_scores(job["examples"], job["keys"], job["config"], job["seed"], job["folds"], job["weights"], name)


def _job_member(task: tuple[str, int], job: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    j = _JOB if job is None else job
    return j["final"].fit_member(j["x"], j["truth"], j["all_weights"], *task)


def _job_floor(job: dict[str, Any] | None = None) -> float:
    j = _JOB if job is None else job
    return familiarity_floor(j["all_keys"], j["config"], j["seed"], count=j["count"])


def familiarity_floor(keys: Keys, config: ModelConfig, seed: int, quantile: float = FAMILIARITY_QUANTILE,
                      count: Counts | None = None) -> float:
    """Step 4: the familiarity below which a clue is stranger than ``1 - quantile`` of
    training clues, each measured against a vocabulary fitted without it (5 random folds)."""
    n = keys.n_docs
    order = np.random.default_rng(seed).permutation(n)
    fold_of = np.zeros(n, dtype=np.int64)
    for f, fold in enumerate(np.array_split(order, 5)):
        fold_of[fold] = f
    return float(np.quantile(held_out_familiarity(keys, fold_of, config.min_df, count), quantile))


@dataclass
class ReviewRule:
    thresholds: dict[str, float]
    flagged: float
    unflagged_accuracy: dict[str, float]
    met: bool


#: the confidence thresholds (attention and area alike) the review rule is chosen from
THRESHOLD_GRID = np.round(np.arange(0.30, 0.991, 0.01), 2)


def review_candidates(
    attention: Sequence[str], attention_conf: np.ndarray, area_conf: np.ndarray, familiarity: np.ndarray,
    alarm: Sequence[bool], floor: float, further_proba: np.ndarray | None = None,
) -> Iterator[tuple[float | None, dict[str, float], np.ndarray]]:
    """Every review rule :func:`choose_review_thresholds` weighs, as (possible-`further`
    threshold or None, thresholds, clues flagged): no possible-`further` part first, then (with
    ``further_proba``) each of :data:`POSSIBLE_FURTHER` from the highest; for each, every
    attention and area threshold of :data:`THRESHOLD_GRID`. The rules no threshold turns off
    (familiarity floor, misconduct terms) are computed once."""
    att_conf, area_conf = np.asarray(attention_conf), np.asarray(area_conf)
    off = {"attention": 0.0, "area": 0.0}  # the confidence parts are added below, threshold by threshold
    base = needs_review(attention, att_conf, area_conf, familiarity, alarm, off, floor)
    options: list[float | None] = [None]
    if further_proba is not None:
        options += sorted(POSSIBLE_FURTHER, reverse=True)
    for possible in options:
        hard = base if possible is None else base | needs_review(
            attention, att_conf, area_conf, familiarity, alarm, {**off, "possible_further": possible},
            floor, further_proba=further_proba)
        for ta in THRESHOLD_GRID:
            flag_a = hard | (att_conf < ta)
            for tb in THRESHOLD_GRID:
                th = {"attention": float(ta), "area": float(tb)}
                if possible is not None:
                    th["possible_further"] = possible
                yield possible, th, flag_a | (area_conf < tb)


def choose_review_thresholds(
    truth: Mapping[str, Sequence[str]], predicted: Mapping[str, Sequence[str]],
    confidence: Mapping[str, np.ndarray], familiarity: np.ndarray, alarm: Sequence[bool], floor: float,
    targets: Mapping[str, float] = UNFLAGGED_ACCURACY, margin: float = 0.01,
    further_proba: np.ndarray | None = None, budget: float = FLAG_BUDGET, allowance: float = SECOND_LOOK_ALLOWANCE,
) -> ReviewRule:
    """Step 3: the needs-review thresholds that flag the fewest clues while unflagged clues
    are right at least ``targets + margin`` of the time on each head. When no pair reaches
    that, the pair with the best worst-head shortfall (most clues flagged before accuracy).

    With ``further_proba``, a ``possible_further`` threshold is chosen too: the lowest of
    :data:`POSSIBLE_FURTHER` whose best rule still meets the targets with at most
    ``max(budget, fewest + allowance)`` of the clues flagged, where ``fewest`` is the
    smallest flagged share of any rule that meets them (what is left of the budget, or at
    least ``allowance``, goes to second looks at clues that may be `further`); none when no
    option fits."""
    right = {h: np.asarray(truth[h]) == np.asarray(predicted[h]) for h in HEADS}
    per_option: dict[float | None, tuple[tuple[float, ...], ReviewRule]] = {}
    for possible, th, flag in review_candidates(predicted["attention"], confidence["attention"], confidence["area"],
                                                familiarity, alarm, floor, further_proba):
        keep = ~flag
        acc = {h: float(right[h][keep].mean()) if keep.any() else 1.0 for h in HEADS}
        shortfall = max(targets[h] + margin - acc[h] for h in HEADS)
        flagged = float(flag.mean())
        rank = (0.0, flagged, th["attention"] + th["area"]) if shortfall <= 0 else (1.0, shortfall, flagged)
        if possible not in per_option or rank < per_option[possible][0]:
            per_option[possible] = (rank, ReviewRule(th, flagged, acc, shortfall <= 0))
    met = [rule for _, rule in per_option.values() if rule.met]
    if not met:
        return min(per_option.values(), key=lambda pair: pair[0])[1]
    allowed = max(budget, min(rule.flagged for rule in met) + allowance)
    return [rule for rule in met if rule.flagged <= allowed + 1e-12][-1]  # options run from no rule to the lowest


@dataclass
class Calibrated:
    """What steps 1–4 produce, with the out-of-fold predictions they were chosen on (for a
    corpus clue out of register, for a reviewed clue out of its reviewed fold)."""

    stackers: dict[str, tuple[np.ndarray, np.ndarray]]
    further_threshold: float | None
    rule: ReviewRule
    floor: float
    groups: list[str]
    predicted: dict[str, list[str]]
    confidence: dict[str, np.ndarray]
    flagged: np.ndarray
    proba: dict[str, np.ndarray] = field(default_factory=dict)  # per head, classes in HEADS order
    chosen_on: str = ""  # which predictions chose the thresholds, in words
    folds: list[str] = field(default_factory=list)  # each example's calibration fold
    #: positions (in the examples given to :func:`fit_and_calibrate`) of the examples above
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _take(values: Sequence[Any] | np.ndarray, idx: np.ndarray) -> list[Any]:
    return [values[i] for i in idx.tolist()]


def calibrate(examples: Sequence[Example], keys: Keys, alarm: Sequence[bool], config: ModelConfig,
              seed: int, oog: OutOfGroup | None = None, floor: float | None = None,
              reviewed_min: int = REVIEWED_THRESHOLD_MIN) -> Calibrated:
    """Steps 1–4 of the protocol. ``oog`` (step 1 on :func:`calibration_folds`) and ``floor``
    (step 4) are computed here unless given."""
    folds = calibration_folds(examples, CALIBRATION_FOLDS, seed)
    if oog is None:
        oog = out_of_group(examples, keys, config, seed, folds)
        oog.groups = [e.group for e in examples]
    truth = {h: [e.label(h) for e in examples] for h in HEADS}
    stackers, proba = {}, {}
    for h in HEADS:
        stackers[h] = fit_stacker(oog.scores[h], truth[h], HEADS[h])
        proba[h] = softmax(oog.scores[h] @ stackers[h][0].T + stackers[h][1])
    reviewed = np.flatnonzero([e.origin == "review" for e in examples])
    if len(reviewed) >= reviewed_min:
        basis = reviewed
        chosen_on = (f"out-of-fold predictions of the {len(reviewed)} reviewed clues (each scored by members "
                     f"trained on the corpus outside its fold and the other reviewed folds)")
    else:
        basis = np.arange(len(examples))
        chosen_on = "out-of-register predictions of the training data (registers in five folds of whole registers)"
        if len(reviewed):
            chosen_on += (f", the {len(reviewed)} reviewed clues out of fold among them (fewer than "
                          f"{reviewed_min}: too few to choose on alone)")
    truth_b = {h: _take(truth[h], basis) for h in HEADS}
    further_t = choose_further_threshold(truth_b["attention"], HEADS["attention"], proba["attention"][basis])
    predicted, confidence = {}, {}
    for h in HEADS:
        chosen = decide(HEADS[h], proba[h], further_t if h == "attention" else None)
        predicted[h] = [HEADS[h][i] for i in chosen]
        confidence[h] = proba[h][np.arange(len(chosen)), chosen]
    if floor is None:
        floor = familiarity_floor(keys, config, seed)
    further_proba = proba["attention"][:, HEADS["attention"].index("further")]
    rule = choose_review_thresholds(truth_b, {h: _take(predicted[h], basis) for h in HEADS},
                                    {h: confidence[h][basis] for h in HEADS}, oog.familiarity[basis],
                                    _take(alarm, basis), floor, further_proba=further_proba[basis])
    flagged = needs_review(predicted["attention"], confidence["attention"], confidence["area"],
                           oog.familiarity, alarm, rule.thresholds, floor, further_proba=further_proba)
    return Calibrated(stackers, further_t, rule, floor, oog.groups, predicted, confidence, flagged, proba, chosen_on,
                      folds)


def register_table(examples: Sequence[Example], cal: Calibrated) -> dict[str, dict[str, float]]:
    """Per group, scores of the out-of-register predictions and of the review rule."""
    table: dict[str, dict[str, float]] = {}
    groups = np.asarray(cal.groups)
    for name in sorted(set(cal.groups)):
        idx = np.flatnonzero(groups == name).tolist()
        row: dict[str, float] = {"n": len(idx)}
        keep = [i for i in idx if not cal.flagged[i]]
        for h in HEADS:
            y = [examples[i].label(h) for i in idx]
            p = [cal.predicted[h][i] for i in idx]
            row[f"{h}_macro_f1"] = round(float(f1_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0)), 4)
            row[f"{h}_unflagged_accuracy"] = round(
                float(np.mean([examples[i].label(h) == cal.predicted[h][i] for i in keep])) if len(keep) else 1.0, 4)
        further = [i for i in idx if examples[i].attention == "further"]
        row["further_recall"] = round(float(np.mean([cal.predicted["attention"][i] == "further" for i in further]))
                                      if further else float("nan"), 4)
        # `further` clues neither called `further` nor flagged: nobody would look at them again
        row["further_missed_unflagged"] = round(float(np.mean(
            [cal.predicted["attention"][i] != "further" and not cal.flagged[i] for i in further]))
            if further else float("nan"), 4)
        row["flagged"] = round(float(cal.flagged[np.asarray(idx)].mean()), 4)
        table[name] = row
    return table


def fit_and_calibrate(examples: Sequence[Example], *, seed: int = 0, config: ModelConfig | None = None,
                      calibrate_on: Sequence[int] | None = None,
                      reviewed_min: int = REVIEWED_THRESHOLD_MIN) -> TrainOutcome:
    """Run the protocol in the module docstring and return the final model.

    Steps 1–4 use the examples at positions ``calibrate_on`` (default: every one; see
    :func:`calibration_sample`), the final fit every example. The folds of step 1 run in
    a process of their own from the start; the final fit's members (step 5) and the
    familiarity folds of step 4 in ``fit_processes()`` workers, forked once the final
    vocabulary is fitted; the result does not depend on how many (each fit is seeded on its
    own), and with one CPU everything runs in this process."""
    config = config or DEFAULT_CONFIG
    docs = prepare([e.text for e in examples])
    keys = TwoHeadModel(config, seed).keys(docs)
    truth = {h: [e.label(h) for e in examples] for h in HEADS}
    index = np.arange(len(examples)) if calibrate_on is None else np.asarray(calibrate_on, dtype=np.int64)
    sample = [examples[i] for i in index.tolist()]
    sample_keys = keys if calibrate_on is None else subset(keys, index)
    alarm = [has_alarm(docs[i].text) for i in index.tolist()]
    folds = np.asarray(calibration_folds(sample, CALIBRATION_FOLDS, seed))
    names = sorted(set(folds.tolist()))
    final = TwoHeadModel(config, seed)
    job = {"examples": sample, "keys": sample_keys, "config": config, "seed": seed, "folds": folds,
           "weights": review_weights(sample)}
    # The folds need only their keys: a process of their own starts them at once, while this
    # one fits the final vocabulary (a core would otherwise wait); then the final fit's
    # members, one by one, and the floor go to a pool of workers forked with its matrix.
    fold_process = _FoldProcess(job, names) if fit_processes() > 1 else None
    try:
        count = counted(keys)  # once, for the final vocabulary and the familiarity floor
        job = {**job, "all_keys": keys, "truth": truth, "all_weights": review_weights(examples), "final": final,
               "x": final.fit_vocabulary(keys, count), "count": count}  # what the member workers inherit
        # longest first: members with a larger C take liblinear more passes (on 23,660 clues
        # the two C = 2 members take 12–16 CPU-s each, a C = 0.1 one 2), so they start at once
        tasks = sorted(final.member_tasks(), key=lambda t: -config.heads[t[0]].members[t[1]].C)
        with _fit_pool(job) as pool:
            if pool is None:
                members = {task: _job_member(task, job) for task in tasks}
                floor = _job_floor(job)
            else:
                member_jobs = {task: pool.submit(_job_member, task) for task in tasks}
                floor_job = pool.submit(_job_floor)
                members = {task: f.result() for task, f in member_jobs.items()}
                floor = floor_job.result()
        results = fold_process.results() if fold_process is not None else [_job_fold(n, job) for n in names]
    except BaseException:  # Ctrl-C, SIGTERM, a failed fit: stop the fold process now too
        if fold_process is not None:
            fold_process.kill()
        raise
    final.attach_members(truth, members)
    oog = _assemble(sample, config, [e.group for e in sample], results)
    cal = calibrate(sample, sample_keys, alarm, config, seed, oog, floor, reviewed_min=reviewed_min)
    cal.index = index
    if calibrate_on is not None and len(index) < len(examples):
        cal.chosen_on += f" (steps 1–4 on {len(index):,} of the {len(examples):,} training examples)"
    final.further_threshold = cal.further_threshold
    oor = evaluate_predictions("out of register (each group scored by a model that never saw it)", "out_of_register",
                               {h: [e.label(h) for e in sample] for h in HEADS}, cal.predicted, cal.confidence)
    for h in HEADS:
        final.heads_[h].stack_w, final.heads_[h].stack_b = (
            _restricted(cal.stackers[h], final.heads_[h].classes, h, len(config.heads[h].members)))
    final.review_thresholds = cal.rule.thresholds
    final.familiarity_floor = cal.floor
    sizes = {
        "examples": len(examples),
        "corpus": sum(e.origin == "corpus" for e in examples),
        "reviewed": sum(e.origin == "review" for e in examples),
        "groups": len(set(cal.groups)),
        "final_fit": len(examples),
        "calibration": len(index),
    }
    manifest = {
        "labels": {"attention": list(ATTENTION), "area": list(AREA)},
        "config": final.config_dict(),
        "segmenter": current_segmenter(),
        "libraries": library_versions(),
        "solver": {"linear_svc_tol": LINEAR_SVC_TOL},  # changes the fitted weights, not the config
        "data": {
            "sizes": sizes,
            "examples_sha256": data_fingerprint(examples),
            "userdict_sha256": sha256_file(USERDICT_PATH),
            "stopwords_sha256": sha256_file(STOPWORDS_PATH),
            "alarm_terms_sha256": sha256_file(ALARM_TERMS_PATH),
        },
        "metrics": {"out_of_register": {**oor.summary(), "flagged": round(float(cal.flagged.mean()), 4)}},
        "per_class": {
            f"{h}/{label}": vars(c) for h, m in oor.heads.items() for label, c in m.per_class.items()
        },
        "registers": register_table(sample, cal),
        "thresholds": {
            "further": cal.further_threshold,
            "needs_review": cal.rule.thresholds,
            "familiarity_floor": round(cal.floor, 4),
            "chosen_on": cal.chosen_on,
            "unflagged_accuracy": cal.rule.unflagged_accuracy,
            "flagged_share": cal.rule.flagged,
            "targets_met": cal.rule.met,
        },
    }
    return TrainOutcome(final, manifest, oor, sizes, cal)


def _restricted(stacker: tuple[np.ndarray, np.ndarray], classes: tuple[str, ...], head: str,
                members: int) -> tuple[np.ndarray, np.ndarray]:
    """The stacker (fitted over every class of the head) for a final model that knows
    ``classes``: rows and member-score columns of absent classes dropped."""
    full = HEADS[head]
    if tuple(classes) == tuple(full):
        return stacker
    keep = [full.index(c) for c in classes]
    cols = [m * len(full) + k for m in range(members) for k in keep]
    return stacker[0][np.ix_(keep, cols)], stacker[1][keep]


def train_on_corpus(clues: Sequence[Clue], *, seed: int = 0, config: ModelConfig | None = None) -> TrainOutcome:
    """Train on a corpus' ``train`` and ``dev`` splits (``test`` untouched)."""
    return fit_and_calibrate(examples_from(split(clues, "train", "dev")), seed=seed, config=config)


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
