"""Review by assignment: the clues of a round split among reviewers, and each reviewer's share.

:func:`assign` gives every repeat group of the scope (optionally only those needing review)
to one reviewer, or two with ``double`` (for agreement statistics), choosing among the
reviewers who may see it (no recusal, no unknown unit for a reviewer with recusals) the one
with the fewest assignments so far. Assignments are kept in the store; assigning again
only adds what is missing. :func:`share` is what ``review export`` / ``review next`` give a
reviewer: their assigned clues when they have any in the scope, else every clue they may
see, filtered by need of review and unit, up to a limit.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import InputError
from ..intake.rounds import Scope
from ..store.store import now, rows_in, transaction
from .review import (
    ClueState,
    Eligibility,
    RunScope,
    clue_states,
    get_reviewer,
    group_units,
    one_per_group,
)

if TYPE_CHECKING:
    from .worklist import Candidate


@dataclass
class Assignment:
    assigned: Counter[str] = field(default_factory=Counter)  # reviewer -> groups newly assigned
    already: int = 0  # groups that had all the reviewers they need
    nobody: list[str] = field(default_factory=list)  # clue ids no given reviewer may see
    single: list[str] = field(default_factory=list)  # with --double: clue ids only one given reviewer may see
    groups: int = 0  # groups considered


def _assigned(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Group key -> reviewers assigned to it."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in db.execute("SELECT COALESCE(c.group_key, c.clue_key), a.reviewer_id FROM assignments a "
                          "JOIN clues c ON c.clue_key = a.clue_key"):
        out[row[0]].add(row[1])
    return out


def _groups(db: sqlite3.Connection, scope: RunScope, needs_review: bool) -> list[ClueState]:
    states = clue_states(db, scope)
    if needs_review:
        flagged = {s.group_key for s in states if s.needs_review}
        states = [s for s in states if s.group_key in flagged]
    return one_per_group(states)


def assign(db: sqlite3.Connection, reviewers: Sequence[str], scope: RunScope = None, *, needs_review: bool = False,
           double: bool = False) -> Assignment:
    """Split the scope's repeat groups among ``reviewers`` (see the module docstring)."""
    reviewers = list(dict.fromkeys(get_reviewer(db, r).reviewer_id for r in reviewers if r.strip()))
    if not reviewers:
        raise InputError("give the reviewers to assign to, e.g. --reviewers zhang,li,wang")
    want = 2 if double else 1
    if len(reviewers) < want:
        raise InputError("--double needs at least two reviewers")
    round_id = scope.round.round_id if isinstance(scope, Scope) and scope.round else None
    result = Assignment()
    with transaction(db, "assigning clues to reviewers"):
        eligible = {r: Eligibility(db, r) for r in reviewers}
        units = group_units(db)
        assigned = _assigned(db)
        load = Counter({r: 0 for r in reviewers})
        for reviewer_set in assigned.values():
            load.update(r for r in reviewer_set if r in load)
        for state in _groups(db, scope, needs_review):
            result.groups += 1
            have = assigned.get(state.group_key, set())
            if len(have) >= want:
                result.already += 1
                continue
            seen = units.get(state.group_key, set()) | {state.unit_key}
            free = sorted((r for r in reviewers if r not in have and eligible[r](seen)), key=lambda r: (load[r], reviewers.index(r)))
            chosen = free[: want - len(have)]
            if not chosen:
                result.nobody.append(state.clue_id)
                continue
            if want == 2 and len(have) + len(chosen) < 2:
                result.single.append(state.clue_id)
            for reviewer in chosen:
                # an assignment is part of the record (guarded): add only one that is missing
                db.execute("INSERT INTO assignments SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                           "(SELECT 1 FROM assignments WHERE clue_key = ? AND reviewer_id = ?)",
                           (state.clue_key, reviewer, round_id, now(), state.clue_key, reviewer))
                load[reviewer] += 1
                result.assigned[reviewer] += 1
    return result


def share(db: sqlite3.Connection, reviewer_id: str | None, scope: RunScope = None, *, needs_review: bool = False,
          unit: str | None = None, limit: int | None = None, include_unknown_units: bool = False) -> list[ClueState]:
    """The clues (one per repeat group) a reviewer is given, in run and row order; with no
    reviewer, every group of the scope (filtered the same way)."""
    from ..intake.units import load_directory

    groups = _groups(db, scope, needs_review)
    if reviewer_id is not None:
        eligible = Eligibility(db, reviewer_id, include_unknown_units)
        reviewer_id = eligible.reviewer_id
        units = group_units(db)
        groups = [s for s in groups if eligible(units.get(s.group_key, set()) | {s.unit_key})]
        mine = {g for g, rs in _assigned(db).items() if reviewer_id in rs}
        if any(s.group_key in mine for s in groups):
            groups = [s for s in groups if s.group_key in mine]
    if unit is not None:
        key = load_directory(db).resolve(unit).key
        groups = [s for s in groups if s.unit_key == key]
    if limit is not None:
        if limit < 1:
            raise InputError("--limit must be at least 1")
        groups = groups[:limit]
    return groups


def page_share(db: sqlite3.Connection, reviewer_id: str, candidates: list[Candidate]) -> list[Candidate]:
    """The review page's :data:`pipeline.review.worklist.ShareFilter` for rounds and assignment:
    of the page's candidate clues, one per repeat group (its first clue), only those the
    reviewer may be given (:class:`Eligibility`: recusal over every clue of the group, and
    no unknown unit for a reviewer with recusals), and, when ``review assign`` gave them
    clues among these, only their assigned ones; the same share as ``review next``."""
    eligible = Eligibility(db, reviewer_id)
    reviewer_id = eligible.reviewer_id
    keys = [c.clue_key for c in candidates]
    group: dict[str, str] = {}
    for row in rows_in(db, "SELECT clue_key, COALESCE(group_key, clue_key) FROM clues WHERE clue_key IN ({})", keys):
        group[row[0]] = row[1]
    units = group_units(db)
    firsts, seen = [], set()
    for c in candidates:
        g = group.get(c.clue_key, c.clue_key)
        if g not in seen and eligible(units.get(g, set()) | {c.unit_key}):
            seen.add(g)
            firsts.append((g, c))
    mine = {g for g, rs in _assigned(db).items() if reviewer_id in rs}
    if any(g in mine for g, _ in firsts):
        firsts = [(g, c) for g, c in firsts if g in mine]
    return [c for _, c in firsts]


def review_queue(db: sqlite3.Connection, reviewer_id: str, run: RunScope = None, *,
                 include_unknown_units: bool = False) -> list[ClueState]:
    """Clues for a reviewer, most uncertain first (smallest margin between the top two
    probabilities of either head), one per repeat group, without clues they already decided
    or may not be given (:class:`Eligibility`: recused units, and unknown units for a
    reviewer with recusals, over every clue of the group); only their assigned clues when
    they have any (:func:`share`)."""
    reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
    todo = [s for s in share(db, reviewer_id, run, include_unknown_units=include_unknown_units)
            if not s.decided_by(reviewer_id)]
    return sorted(todo, key=lambda s: s.prediction.margin if s.prediction else 1.0)
