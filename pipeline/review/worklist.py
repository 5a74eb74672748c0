"""The review page's work: which clue a reviewer gets next, what the page shows of it, and
how a decision, a correction (undo) and the page's statistics are made.

The page serves the clues of the latest complete triage run (a :class:`Scope`), one at a
time, **needs-review first, then least confident first** (:func:`queue_order`), never a
clue of a unit the reviewer recused from, never one they already decided, and never one
another reviewer holds a lease on (:mod:`pipeline.review.leases`). A clue leaves everybody's queue
once ``Scope.reviews_per_clue`` reviewers have decided it (1 by default: each clue reviewed
once; 2 for double review and agreement).

Decisions go through :func:`pipeline.review.review.record_decision`, exactly as in the terminal
queue, with channel ``web``: the same checks, the same audited, append-only rows. An *undo*
never edits or deletes: :func:`last_decision` finds the reviewer's latest decision on the
page, the page shows that clue again, and the new decision, naming the rows it corrects in
its reason (``更正 #12,#13``), is recorded as new rows that supersede them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from ..errors import InputError, StoreError
from ..intake.rounds import check_run
from ..intake.routing import Routing, load_routing
from ..labels import HEADS, parse_label
from ..store.store import transaction
from . import leases
from .review import (
    Agreement,
    ClueState,
    Decision,
    Prediction,
    clue_state,
    clue_states,
    record_decision,
    recused_units,
    review_stats,
)


@dataclass(frozen=True)
class Candidate:
    """A clue of the scope as the queue sees it: cheap to read for every clue of a run (one
    query, no per-clue state), so the queue stays fast on runs of tens of thousands."""

    clue_key: str
    clue_id: str
    unit: str
    unit_key: str
    prediction: Prediction
    reviewers: frozenset[str]  # who recorded a review decision on it (any channel)


#: The seam for rounds and review by assignment (issue 13): given the store, a reviewer id
#: and the candidate clues of the scope (already without recused and decided ones), return
#: the reviewer's share of them, in any order. ``None`` in :class:`Scope` = every clue.
ShareFilter = Callable[[sqlite3.Connection, str, list[Candidate]], list[Candidate]]


@dataclass(frozen=True)
class Scope:
    """Which clues the page serves: those of ``run`` (None: the latest complete run), or of
    every complete run of the round named ``round`` (issue 13; read at each request, so a
    file triaged into the round while the page runs is served too), narrowed by ``share``
    (see :data:`ShareFilter`), each until ``reviews_per_clue`` reviewers decided it."""

    run: int | None = None
    share: ShareFilter | None = None
    reviews_per_clue: int = 1
    round: str | None = None


class LeaseError(StoreError):
    """Another reviewer has this clue on their screen."""


def latest_run(db: sqlite3.Connection) -> int | None:
    """The latest complete triage run, or None before the first one."""
    row = db.execute("SELECT MAX(run_id) FROM runs WHERE status = 'complete'").fetchone()
    return None if row[0] is None else int(row[0])


def _scope_run(db: sqlite3.Connection, scope: Scope) -> int | None:
    """The run the page shows (the latest of the round's runs for a round)."""
    runs = _scope_runs(db, scope)
    return runs[-1] if runs else None


def _scope_runs(db: sqlite3.Connection, scope: Scope) -> list[int]:
    if scope.round is not None:
        from ..intake.rounds import get_round

        return list(get_round(db, scope.round).runs)
    if scope.run is not None:
        check_run(db, scope.run)
        return [scope.run]
    run = latest_run(db)
    return [] if run is None else [run]


def candidates(db: sqlite3.Connection, scope: Scope) -> list[Candidate]:
    """Every clue of the scope's runs, in run and row order, each once (with its prediction
    of the latest of those runs)."""
    runs = _scope_runs(db, scope)
    if not runs:
        return []
    found: dict[str, Candidate] = {}
    for r in db.execute(
            "SELECT p.*, c.unit, c.unit_key, (SELECT GROUP_CONCAT(DISTINCT o.reviewer_id) FROM overrides o "
            "WHERE o.clue_key = p.clue_key AND o.kind = 'review') AS reviewers "
            "FROM predictions p JOIN clues c ON c.clue_key = p.clue_key "
            f"WHERE p.run_id IN ({','.join('?' * len(runs))}) AND p.attention IS NOT NULL "
            "ORDER BY p.run_id DESC, p.row_number", runs):
        if r["clue_key"] in found:
            continue
        prediction = Prediction(r["run_id"], r["row_number"], r["clue_id"], r["model_version"],
                                {"attention": r["attention"], "area": r["area"]},
                                {"attention": r["attention_conf"], "area": r["area_conf"]},
                                r["margin"] if r["margin"] is not None else 1.0, bool(r["needs_review"]),
                                r["key_terms"], r["handover"])
        found[r["clue_key"]] = Candidate(r["clue_key"], r["clue_id"], r["unit"], r["unit_key"], prediction,
                                         frozenset((r["reviewers"] or "").split(",")) - {""})
    return sorted(found.values(), key=lambda c: (c.prediction.run_id, c.prediction.row_number))


def queue_order(clue: Candidate | ClueState) -> tuple[int, float, float, int, int]:
    """Sort key: flagged needs-review first, then least confident head first, then the
    smaller margin, then run and row order."""
    p = clue.prediction
    if p is None:
        return (1, 1.0, 1.0, 0, 0)
    return (0 if p.needs_review else 1, min(p.confidence.values()), p.margin, p.run_id, p.row_number)


def worklist(db: sqlite3.Connection, reviewer_id: str, scope: Scope,
             among: list[Candidate] | None = None) -> list[Candidate]:
    """The reviewer's open clues of the scope (or of ``among``) in queue order, leases not
    considered: not recused, not decided by them, decided by fewer than
    ``scope.reviews_per_clue`` reviewers, in their share."""
    recused = recused_units(db, reviewer_id)
    todo = [c for c in (candidates(db, scope) if among is None else among)
            if c.unit_key not in recused and reviewer_id not in c.reviewers
            and len(c.reviewers) < scope.reviews_per_clue]
    if scope.share is not None:
        todo = scope.share(db, reviewer_id, todo)
    return sorted(todo, key=queue_order)


def next_clue(db: sqlite3.Connection, reviewer_id: str, scope: Scope,
              minutes: float = leases.LEASE_MINUTES) -> Candidate | None:
    """Lease and return the reviewer's next clue; None when their queue is empty.

    The clue they already hold, if still open, comes back (a reload shows the same clue);
    skipped clues come after all others. The choice is re-checked and the lease taken in one
    write transaction, so two reviewers asking at once get different clues.
    """
    todo = worklist(db, reviewer_id, scope)
    if not todo:
        leases.release(db, reviewer_id)
        return None
    skipped = leases.skipped(db, reviewer_id)
    with transaction(db):
        held = leases.active(db)
        mine = [c for c in todo if held.get(c.clue_key) == reviewer_id]
        free = [c for c in todo if c.clue_key not in held]
        for clue in mine + [c for c in free if c.clue_key not in skipped] + [c for c in free if c.clue_key in skipped]:
            decided = {r[0] for r in db.execute(
                "SELECT DISTINCT reviewer_id FROM overrides WHERE clue_key = ? AND kind = 'review'", (clue.clue_key,))}
            if reviewer_id in decided or len(decided) >= scope.reviews_per_clue:
                continue  # decided meanwhile (another page, the terminal, an import)
            leases.take(db, clue.clue_key, reviewer_id, minutes)
            return clue
    return None


def visible_clue(db: sqlite3.Connection, reviewer_id: str, key: str) -> ClueState:
    """The clue if this reviewer may see it: a clue with a prediction, of a unit they did
    not recuse from. An unknown clue and a recused one raise the same error, so a direct
    URL tells a recused reviewer nothing, not even that the clue exists."""
    try:
        state = clue_state(db, key)
    except InputError:
        state = None
    if state is None or state.prediction is None or state.unit_key in recused_units(db, reviewer_id):
        raise InputError("no such clue")
    return state


def reason_required(state: Candidate | ClueState, labels: Mapping[str, str]) -> bool:
    """A reason is required to change a label of a confident prediction (one the model
    did not flag for review)."""
    p = state.prediction
    return p is not None and not p.needs_review and any(labels.get(h, p.labels[h]) != p.labels[h] for h in HEADS)


@dataclass(frozen=True)
class LastDecision:
    """A reviewer's decision on the page: the rows one submission wrote."""

    clue_key: str
    override_ids: tuple[int, ...]
    labels: dict[str, str]
    created: str


def last_decision(db: sqlite3.Connection, reviewer_id: str, before: int | None = None) -> LastDecision | None:
    """The reviewer's latest decision made on the page (with ``before``: the latest whose
    rows come before that override id), for undo."""
    rows = db.execute(
        "SELECT override_id, clue_key, head, new_label, created FROM overrides WHERE reviewer_id = ? "
        "AND kind = 'review' AND channel = 'web' AND override_id < ? ORDER BY override_id DESC LIMIT ?",
        (reviewer_id, before if before is not None else 2**62, len(HEADS))).fetchall()
    if not rows:
        return None
    first = rows[0]
    same = [r for r in rows if r["clue_key"] == first["clue_key"] and r["created"] == first["created"]]
    same.reverse()
    return LastDecision(first["clue_key"], tuple(r["override_id"] for r in same),
                        {r["head"]: r["new_label"] for r in same}, first["created"])


def decide(db: sqlite3.Connection, reviewer_id: str, key: str, labels: Mapping[str, str], reason: str = "",
           corrects: Sequence[int] = ()) -> ClueState:
    """Record a reviewer's decision from the page and give back their lease on the clue.

    ``labels`` maps each head to a code or name; ``corrects`` names the override rows of
    the reviewer's own earlier decision that this one corrects (undo). Raises
    :class:`InputError` for a clue they may not see, a bad label or a missing reason,
    :class:`LeaseError` when another reviewer holds the clue.
    """
    state = visible_clue(db, reviewer_id, key)
    parsed = {head: parse_label(head, labels[head]) for head in HEADS if labels.get(head)}
    if not parsed:
        raise InputError("choose a label for at least one head")
    reason = reason.strip()
    if reason_required(state, parsed) and not reason:
        raise InputError("a reason is required to change the label of a confident prediction")
    other = leases.holder(db, key)
    if other is not None and other != reviewer_id:
        raise LeaseError("another reviewer has this clue open; it was not recorded")
    if corrects:
        own = {d.override_id for d in state.rows if d.reviewer_id == reviewer_id and d.kind == "review"}
        if not set(corrects) <= own:
            raise InputError("a correction can only name your own earlier decision on this clue")
        reason = f"更正 {','.join(f'#{i}' for i in sorted(corrects))}" + (f"; {reason}" if reason else "")
    assert state.prediction is not None
    new = record_decision(db, key, reviewer_id, parsed, reason=reason, channel="web", run=state.prediction.run_id)
    leases.release(db, reviewer_id, key)
    return new


# -- what the page shows -------------------------------------------------------------


def highlight(text: str, terms: Sequence[str]) -> list[tuple[str, bool]]:
    """Split ``text`` into (piece, is_key_term) pieces; longer terms win where they overlap.
    Single characters (character features of the model) are listed but not marked: a
    lone 开 marked inside 开私家车 would mislead more than help."""
    marked = [False] * len(text)
    for term in sorted({t.strip() for t in terms if len(t.strip()) > 1}, key=len, reverse=True):
        start = text.find(term)
        while start != -1:
            if not any(marked[start:start + len(term)]):
                marked[start:start + len(term)] = [True] * len(term)
            start = text.find(term, start + len(term))
    pieces: list[tuple[str, bool]] = []
    for ch, flag in zip(text, marked, strict=True):
        if pieces and pieces[-1][1] == flag:
            pieces[-1] = (pieces[-1][0] + ch, flag)
        else:
            pieces.append((ch, flag))
    return pieces


@dataclass(frozen=True)
class Report:
    """One report of a clue: a row of a triage run."""

    clue_id: str
    run_id: int
    row_number: int
    source: str  # the input file's name
    started: str


@dataclass(frozen=True)
class ClueView:
    state: ClueState
    terms: tuple[str, ...]
    pieces: list[tuple[str, bool]]
    handover: str  # of the model's labels
    reports: tuple[Report, ...]  # every row of every complete run that holds this clue, oldest first
    decisions: tuple[Decision, ...]

    @property
    def source(self) -> Report | None:
        """The report the prediction shown comes from."""
        p = self.state.prediction
        return next((r for r in self.reports if p and (r.run_id, r.row_number) == (p.run_id, p.row_number)), None)

    @property
    def repeats(self) -> tuple[Report, ...]:
        """The clue's other reports (the same unit and text, in this or another run)."""
        return tuple(r for r in self.reports if r != self.source)


def clue_view(db: sqlite3.Connection, state: ClueState, routing: Routing | None = None) -> ClueView:
    """What the page shows of a clue: text with key terms marked, hand-over, reports, decisions."""
    p = state.prediction
    assert p is not None
    routing = routing or load_routing()
    terms = tuple(t for t in p.key_terms.split("、") if t)
    reports = tuple(Report(r["clue_id"], r["run_id"], r["row_number"], PurePath(r["input_path"]).name, r["started"])
                    for r in db.execute(
                        "SELECT p.clue_id, p.run_id, p.row_number, r.input_path, r.started FROM predictions p "
                        "JOIN runs r ON r.run_id = p.run_id WHERE p.clue_key = ? AND r.status = 'complete' "
                        "ORDER BY p.run_id, p.row_number", (state.clue_key,)))
    return ClueView(state, terms, highlight(state.text, terms), routing.handover(p.labels["attention"], p.labels["area"]),
                    reports, state.rows)


# -- progress and statistics --------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    done: int  # clues of the scope this reviewer decided
    left: int  # clues still in their queue


def progress(db: sqlite3.Connection, reviewer_id: str, scope: Scope) -> Progress:
    """How far the reviewer is through their queue (one read of the scope)."""
    among = candidates(db, scope)
    recused = recused_units(db, reviewer_id)
    done = sum(1 for c in among if c.unit_key not in recused and reviewer_id in c.reviewers)
    return Progress(done, len(worklist(db, reviewer_id, scope, among)))


@dataclass(frozen=True)
class HeadAccuracy:
    head: str
    reviewed: int  # clues of the scope a person decided on this head
    agreed: int  # …where the decision kept the model's label

    @property
    def accuracy(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None


@dataclass(frozen=True)
class PageStats:
    run: int | None
    counts: dict[str, int]  # clues, needs_review, reviewed, open, disputed, adjudicated
    accuracy: list[HeadAccuracy]
    by_reviewer: list[tuple[str, int]]  # reviewer id, clues of the scope they decided
    agreement: list[Agreement]  # every review in the store (review.review_stats)
    round: str | None = None  # the round served, when the page serves one


def page_stats(db: sqlite3.Connection, scope: Scope) -> PageStats:
    """The scope's counts, the model's accuracy on its reviewed clues, reviewer agreement."""
    runs = _scope_runs(db, scope)
    run = runs[-1] if runs else None
    if scope.round is not None:
        from ..intake.rounds import Scope as RoundScope

        states = clue_states(db, RoundScope(tuple(runs), f"round {scope.round}")) if runs else []
    else:
        states = [] if run is None else clue_states(db, run)
    counts: Counter[str] = Counter(clues=len(states))
    decided = {h: [0, 0] for h in HEADS}
    by_reviewer: Counter[str] = Counter()
    for s in states:
        counts["needs_review"] += bool(s.prediction and s.prediction.needs_review)
        counts["reviewed" if s.rows else "open"] += 1
        counts["disputed"] += s.disputed
        counts["adjudicated"] += any(h.status == "adjudicated" for h in s.heads.values())
        for reviewer in {d.reviewer_id for d in s.rows if d.kind == "review"}:
            by_reviewer[reviewer] += 1
        for head, h in s.heads.items():
            if h.status in ("reviewed", "adjudicated"):
                decided[head][0] += 1
                decided[head][1] += h.effective == h.predicted
    return PageStats(run, {k: counts[k] for k in ("clues", "needs_review", "reviewed", "open", "disputed", "adjudicated")},
                     [HeadAccuracy(h, n, a) for h, (n, a) in decided.items()], sorted(by_reviewer.items()),
                     review_stats(db).agreement, scope.round)
