"""Reviewer decisions: reviewers and recusal, the review queue, overrides, disputes.

Every decision a reviewer makes is one append-only row in ``overrides`` per head, accepting
the model's label included (``new_label`` equal to ``predicted_label``); an adjudication of a
dispute is a row of kind ``adjudication``. Nothing here updates or deletes a row: the
current state of a clue is *computed* from its rows, so the trail is the evidence.

The effective label of a clue on one head is, in this order:

1. the latest adjudication;
2. else, when every reviewer's latest decision agrees, that label;
3. else, when reviewers disagree, the clue is *disputed* and keeps the model's label
   (flagged, never handed over) until someone adjudicates;
4. else the model's prediction.

"The prediction" of a clue is the one of the latest complete triage run that has it, or of
the run a caller names. Call :func:`clue_states` for many clues, :func:`record_decision` to
store one reviewer decision, :func:`resolve` to adjudicate, :func:`reviewed_examples` for
retraining. Excel sheets live in :mod:`pipeline.review.workbooks`.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError, StoreError
from ..intake.rounds import Scope, check_run
from ..labels import HEADS, parse_label
from ..store.store import append_overrides, now, transaction, unit_key
from ..text.normalize import fold_identifier

CHANNELS = ("terminal", "excel", "cli", "web")
REVIEWER_ID = re.compile(r"[a-z0-9_.-]+")


# -- reviewers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reviewer:
    reviewer_id: str
    name: str
    created: str
    recused: tuple[str, ...] = ()
    decisions: int = 0


def reviewer_key(reviewer_id: str) -> str:
    """The canonical form of a reviewer id as typed (:func:`normalize.fold_identifier`):
    ``Zhang``, ``ｚｈａｎｇ`` and ``zhang\u200b`` are all ``zhang``."""
    return fold_identifier(reviewer_id)


def add_reviewer(db: sqlite3.Connection, reviewer_id: str, name: str, recuse: Iterable[str] = ()) -> Reviewer:
    """Register a reviewer, or add recusals (回避, by inspected unit) to an existing one.

    The id is folded (:func:`reviewer_key`) and must then be letters a-z, digits, ``_``,
    ``.`` or ``-``, so no two ids look alike. A reviewer is never renamed. A recusal is on
    the unit the written name resolves to in the unit directory (:mod:`pipeline.intake.units`); a
    name that resolves to nothing is kept as written (:func:`pipeline.intake.units.unit_warnings`
    says so and suggests the nearest names). A recusal is never deleted: it can end, with a
    recorded reason (:func:`end_recusal`), and both are part of the record.
    """
    typed, name = reviewer_id, name.strip()
    reviewer_id = reviewer_key(typed)
    if not REVIEWER_ID.fullmatch(reviewer_id):
        raise InputError(f"reviewer id {typed!r} must be one word of a-z, 0-9, '_', '.' or '-' (e.g. zhang)")
    if not name:
        raise InputError(f"reviewer {reviewer_id} needs a name (--name)")
    units = [u.strip() for u in recuse]
    if not all(unit_key(u) for u in units):
        raise InputError("a --recuse unit is empty")
    with transaction(db, f"adding reviewer {reviewer_id}"):
        row = db.execute("SELECT name FROM reviewers WHERE reviewer_id = ?", (reviewer_id,)).fetchone()
        if row is None:
            db.execute("INSERT INTO reviewers VALUES (?, ?, ?)", (reviewer_id, name, now()))
        elif row["name"] != name:
            raise StoreError(f"reviewer {reviewer_id} already exists as {row['name']!r}; reviewers are not renamed")
        for unit in units:
            _recuse(db, reviewer_id, unit, "")
    return get_reviewer(db, reviewer_id)


def _recuse(db: sqlite3.Connection, reviewer_id: str, unit: str, reason: str) -> bool:
    """Start (or restart) a recusal inside the caller's transaction; False if already on."""
    from ..intake.units import load_directory

    key = load_directory(db).resolve(unit).key
    row = db.execute("SELECT ended FROM recusals WHERE reviewer_id = ? AND unit_key = ?", (reviewer_id, key)).fetchone()
    if row is not None and row["ended"] is None:
        return False
    if row is None:
        db.execute("INSERT INTO recusals (reviewer_id, unit_key, unit, created) VALUES (?, ?, ?, ?)",
                   (reviewer_id, key, unit, now()))
    else:  # recused again after an end: the log keeps both
        db.execute("UPDATE recusals SET ended = NULL, end_reason = '', unit = ? WHERE reviewer_id = ? AND unit_key = ?",
                   (unit, reviewer_id, key))
    db.execute("INSERT INTO recusal_log (reviewer_id, unit_key, unit, action, reason, created) VALUES (?, ?, ?, 'recuse', ?, ?)",
               (reviewer_id, key, unit, reason.strip(), now()))
    return True


def recuse(db: sqlite3.Connection, reviewer_id: str, units: Iterable[str], reason: str = "") -> Reviewer:
    """Add recusals to an existing reviewer (recorded in the recusal log)."""
    units = [u.strip() for u in units]
    if not units or not all(unit_key(u) for u in units):
        raise InputError("give at least one unit to recuse from")
    with transaction(db, f"recusals of {reviewer_key(reviewer_id)}"):
        reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
        for unit in units:
            _recuse(db, reviewer_id, unit, reason)
    return get_reviewer(db, reviewer_id)


def end_recusal(db: sqlite3.Connection, reviewer_id: str, unit: str, reason: str) -> Reviewer:
    """End a reviewer's recusal from a unit, with a reason; the recusal row and the log keep
    the whole story (nothing is deleted)."""
    from ..intake.units import load_directory

    if not reason.strip():
        raise InputError("ending a recusal needs a reason (--reason)")
    with transaction(db, f"ending a recusal of {reviewer_key(reviewer_id)}"):
        reviewer = get_reviewer(db, reviewer_id)
        reviewer_id = reviewer.reviewer_id
        key = load_directory(db).resolve(unit).key
        row = db.execute("SELECT unit FROM recusals WHERE reviewer_id = ? AND unit_key = ? AND ended IS NULL",
                         (reviewer_id, key)).fetchone()
        if row is None:
            raise StoreError(f"reviewer {reviewer_id} is not recused from {unit!r}; recused from: "
                             f"{'、'.join(reviewer.recused) or 'none'}")
        db.execute("UPDATE recusals SET ended = ?, end_reason = ? WHERE reviewer_id = ? AND unit_key = ?",
                   (now(), reason.strip(), reviewer_id, key))
        db.execute("INSERT INTO recusal_log (reviewer_id, unit_key, unit, action, reason, created) "
                   "VALUES (?, ?, ?, 'end', ?, ?)", (reviewer_id, key, row["unit"], reason.strip(), now()))
    return get_reviewer(db, reviewer_id)


def list_reviewers(db: sqlite3.Connection) -> list[Reviewer]:
    """Every reviewer with their current recusals and number of decisions (override rows)."""
    recused: dict[str, list[str]] = defaultdict(list)
    for row in db.execute("SELECT reviewer_id, unit FROM recusals WHERE ended IS NULL ORDER BY created, unit"):
        recused[row["reviewer_id"]].append(row["unit"])
    counts = dict(db.execute("SELECT reviewer_id, COUNT(*) FROM overrides GROUP BY reviewer_id").fetchall())
    return [Reviewer(r["reviewer_id"], r["name"], r["created"], tuple(recused[r["reviewer_id"]]),
                     counts.get(r["reviewer_id"], 0))
            for r in db.execute("SELECT * FROM reviewers ORDER BY reviewer_id")]


def get_reviewer(db: sqlite3.Connection, reviewer_id: str) -> Reviewer:
    """The reviewer an id as typed names (compared folded: :func:`reviewer_key`), or
    :class:`StoreError` telling how to add them. Use the returned ``reviewer_id`` after."""
    key = reviewer_key(reviewer_id)
    for reviewer in list_reviewers(db):
        if reviewer.reviewer_id == reviewer_id or reviewer_key(reviewer.reviewer_id) == key:
            return reviewer
    raise StoreError(f"unknown reviewer {reviewer_id!r}; add them first: clue-triage reviewers add {key or 'ID'} --name …")


def recused_units(db: sqlite3.Connection, reviewer_id: str) -> set[str]:
    """The unit keys (resolved units) a reviewer is currently recused from."""
    return {r[0] for r in db.execute("SELECT unit_key FROM recusals WHERE reviewer_id = ? AND ended IS NULL",
                                     (reviewer_id,))}


class Eligibility:
    """Which clues a reviewer may be given: none of a unit they are recused from, and, when
    they have recusals, none whose unit is unknown (no unit, or a name the non-empty unit
    directory does not know) unless ``include_unknown`` is given."""

    def __init__(self, db: sqlite3.Connection, reviewer_id: str, include_unknown: bool = False) -> None:
        from ..intake.units import load_directory

        self.reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
        self.recused = recused_units(db, self.reviewer_id)
        self.directory = load_directory(db)
        self.include_unknown = include_unknown

    def unknown(self, key: str) -> bool:
        return not key or (bool(self.directory) and not self.directory.is_known(key))

    def __call__(self, unit_keys: Iterable[str]) -> bool:
        keys = list(unit_keys)
        if any(k in self.recused for k in keys):
            return False
        return not (self.recused and not self.include_unknown and any(self.unknown(k) for k in keys))


# -- clues and their state ------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    run_id: int
    row_number: int
    clue_id: str
    model_version: str
    labels: dict[str, str]
    confidence: dict[str, float]
    margin: float
    needs_review: bool
    key_terms: str
    handover: str


@dataclass(frozen=True)
class Decision:
    """One override row."""

    override_id: int
    clue_key: str
    head: str
    kind: str
    reviewer_id: str
    new_label: str
    old_label: str | None
    predicted_label: str | None
    predicted_conf: float | None
    model_version: str | None
    run_id: int | None
    reason: str
    channel: str
    created: str


@dataclass(frozen=True)
class HeadState:
    head: str
    predicted: str | None
    effective: str | None
    status: str  # 'predicted', 'reviewed', 'disputed' or 'adjudicated'
    decisions: dict[str, str] = field(default_factory=dict)  # reviewer -> latest label


@dataclass(frozen=True)
class ClueState:
    clue_key: str
    clue_id: str
    unit: str
    unit_key: str
    text: str
    prediction: Prediction | None
    heads: dict[str, HeadState]
    rows: tuple[Decision, ...]
    group_key: str = ""  # the clue key of its repeat group's first clue (itself when alone)

    @property
    def disputed(self) -> bool:
        return any(h.status == "disputed" for h in self.heads.values())

    @property
    def needs_review(self) -> bool:
        """Flagged by the model and nobody has decided anything about it yet."""
        return bool(self.prediction and self.prediction.needs_review and not self.rows)

    def decided_by(self, reviewer_id: str) -> bool:
        return any(d.kind == "review" and d.reviewer_id == reviewer_id for d in self.rows)

    def effective(self) -> dict[str, str | None]:
        return {head: state.effective for head, state in self.heads.items()}


def _prediction(row: sqlite3.Row) -> Prediction:
    return Prediction(
        row["run_id"], row["row_number"], row["clue_id"], row["model_version"],
        {"attention": row["attention"], "area": row["area"]},
        {"attention": row["attention_conf"], "area": row["area_conf"]},
        row["margin"] if row["margin"] is not None else 1.0, bool(row["needs_review"]), row["key_terms"], row["handover"],
    )


#: which predictions count: one run, a :class:`~pipeline.intake.rounds.Scope` (a round's runs), or
#: None for every complete run (each clue with its latest prediction)
RunScope = int | Scope | None


def _run_filter(run: RunScope) -> tuple[str, list[object]]:
    """The SQL condition (on predictions ``p``) and its arguments that keep one run or a
    scope's runs; nothing for every run."""
    if isinstance(run, Scope):
        if run.runs is None:
            return "", []
        return f" AND p.run_id IN ({','.join('?' * len(run.runs))})", list(run.runs)
    if run is not None:
        return " AND p.run_id = ?", [run]
    return "", []


def _predictions(db: sqlite3.Connection, run: RunScope, key: str | None = None) -> dict[str, Prediction]:
    """clue_key -> its prediction, in run and row order."""
    if run is not None and not isinstance(run, Scope):
        check_run(db, run)
    extra, args = _run_filter(run)
    where = "p.clue_key IS NOT NULL AND r.status = 'complete'" + extra
    if key is not None:
        where += " AND p.clue_key = ?"
        args.append(key)
    chosen: dict[str, Prediction] = {}
    for row in db.execute(f"SELECT p.* FROM predictions p JOIN runs r ON r.run_id = p.run_id WHERE {where} "
                          "ORDER BY p.run_id DESC, p.row_number", args):
        chosen.setdefault(row["clue_key"], _prediction(row))
    return dict(sorted(chosen.items(), key=lambda kv: (kv[1].run_id, kv[1].row_number)))


def _decisions(db: sqlite3.Connection, key: str | None = None) -> dict[str, list[Decision]]:
    sql, args = "SELECT * FROM overrides", tuple[str, ...]()
    if key is not None:
        sql, args = sql + " WHERE clue_key = ?", (key,)
    grouped: dict[str, list[Decision]] = defaultdict(list)
    for r in db.execute(sql + " ORDER BY override_id", args):
        grouped[r["clue_key"]].append(Decision(
            r["override_id"], r["clue_key"], r["head"], r["kind"], r["reviewer_id"], r["new_label"], r["old_label"],
            r["predicted_label"], r["predicted_conf"], r["model_version"], r["run_id"], r["reason"], r["channel"],
            r["created"]))
    return grouped


def head_state(head: str, predicted: str | None, rows: Sequence[Decision]) -> HeadState:
    """The effective label of one head from its override rows (oldest first)."""
    rows = [d for d in rows if d.head == head]
    latest = {d.reviewer_id: d.new_label for d in rows if d.kind == "review"}
    adjudications = [d for d in rows if d.kind == "adjudication"]
    if adjudications:
        return HeadState(head, predicted, adjudications[-1].new_label, "adjudicated", latest)
    if not latest:
        return HeadState(head, predicted, predicted, "predicted", latest)
    if len(set(latest.values())) == 1:
        return HeadState(head, predicted, next(iter(latest.values())), "reviewed", latest)
    return HeadState(head, predicted, predicted, "disputed", latest)


def _state(clue: sqlite3.Row, prediction: Prediction | None, rows: Sequence[Decision]) -> ClueState:
    heads = {h: head_state(h, prediction.labels[h] if prediction else None, rows) for h in HEADS}
    return ClueState(clue["clue_key"], prediction.clue_id if prediction else clue["clue_id"], clue["unit"],
                     clue["unit_key"], clue["text"], prediction, heads, tuple(rows),
                     clue["group_key"] or clue["clue_key"])


def clue_states(db: sqlite3.Connection, run: RunScope = None) -> list[ClueState]:
    """Every clue with a prediction (of ``run``, else of its latest complete run), in run and row order."""
    predictions = _predictions(db, run)
    decisions = _decisions(db)
    clues = {r["clue_key"]: r for r in db.execute("SELECT * FROM clues")}
    # a prediction whose clue is missing (an orphan: the store was edited behind our back)
    # is left out here and reported by store.verify_store, never a crash
    return [_state(clues[key], p, decisions.get(key, [])) for key, p in predictions.items() if key in clues]


def clue_state(db: sqlite3.Connection, key: str, run: int | None = None) -> ClueState:
    """One clue's state; its prediction from ``run`` when that run has it, else the latest."""
    clue = db.execute("SELECT * FROM clues WHERE clue_key = ?", (key,)).fetchone()
    if clue is None:
        raise InputError(f"unknown clue key {key!r}")
    prediction = (_predictions(db, run, key) if run is not None else {}).get(key) or _predictions(db, None, key).get(key)
    return _state(clue, prediction, _decisions(db, key).get(key, []))


def clue_keys_for(db: sqlite3.Connection, ref: str) -> list[str]:
    """The clue keys a user's reference names: a clue key itself, or a clue id (the file's id)."""
    ref = ref.strip()
    if db.execute("SELECT 1 FROM clues WHERE clue_key = ?", (ref,)).fetchone():
        return [ref]
    rows = db.execute("SELECT clue_key FROM clues WHERE clue_id = ? UNION "
                      "SELECT clue_key FROM predictions WHERE clue_id = ? AND clue_key IS NOT NULL", (ref, ref))
    return sorted(r[0] for r in rows)


def find_clue(db: sqlite3.Connection, ref: str) -> str:
    """The one clue key for ``ref``; an error when it names no clue or several."""
    keys = clue_keys_for(db, ref)
    if not keys:
        raise InputError(f"unknown clue {ref!r}: no clue id or clue key in the store matches")
    if len(keys) > 1:
        raise InputError(f"clue id {ref!r} names {len(keys)} clues ({', '.join(keys)}); give one of these clue keys")
    return keys[0]


# -- decisions ------------------------------------------------------------------------


def group_units(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Group key -> the unit keys of every clue in the group (the whole store)."""
    units: dict[str, set[str]] = defaultdict(set)
    for row in db.execute("SELECT COALESCE(group_key, clue_key), unit_key FROM clues"):
        units[row[0]].add(row[1])
    return units


def one_per_group(states: Iterable[ClueState]) -> list[ClueState]:
    """The first clue of each repeat group, in the order given."""
    seen: set[str] = set()
    out = []
    for s in states:
        if s.group_key not in seen:
            seen.add(s.group_key)
            out.append(s)
    return out


def reports(db: sqlite3.Connection, run: RunScope = None) -> dict[str, list[str]]:
    """Group key -> the clue ids of every report of that matter within ``run``, in run and
    row order. A report is one row of one input file: the same file triaged twice counts
    once, and two rows of one file with the same text count twice."""
    extra, args = _run_filter(run)
    where = "r.status = 'complete' AND p.clue_key IS NOT NULL" + extra
    seen: set[tuple[str, int]] = set()
    out: dict[str, list[str]] = defaultdict(list)
    for row in db.execute(
            "SELECT COALESCE(c.group_key, c.clue_key) AS g, p.clue_id, r.input_sha256, p.row_number "
            f"FROM predictions p JOIN runs r ON r.run_id = p.run_id JOIN clues c ON c.clue_key = p.clue_key WHERE {where} "
            "ORDER BY p.run_id, p.row_number", args):
        if (row["input_sha256"], row["row_number"]) in seen:
            continue
        seen.add((row["input_sha256"], row["row_number"]))
        out[row["g"]].append(row["clue_id"])
    return dict(out)


def group_members(db: sqlite3.Connection, key: str) -> list[str]:
    """The clue keys of a clue's repeat group that have a prediction, the clue itself first."""
    row = db.execute("SELECT COALESCE(group_key, clue_key) FROM clues WHERE clue_key = ?", (key,)).fetchone()
    if row is None:
        return [key]
    # COALESCE(group_key, clue_key) = ? spelt out, so that SQLite searches the two indexes
    # instead of scanning every clue (an import of 20,000 decisions asked 20,000 times: 110 s)
    others = [r[0] for r in db.execute(
        "SELECT c.clue_key FROM clues c WHERE (c.group_key = ?1 OR (c.group_key IS NULL AND c.clue_key = ?1)) "
        "AND c.clue_key != ?2 AND EXISTS (SELECT 1 FROM predictions p WHERE p.clue_key = c.clue_key) "
        "ORDER BY c.rowid", (row[0], key))]
    return [key, *others]


def _check_reviewer(db: sqlite3.Connection, reviewer_id: str, state: ClueState) -> str:
    """The reviewer's canonical id, or an error when they recused from the clue's unit."""
    reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
    recused = recused_units(db, reviewer_id)
    if state.unit_key in recused or unit_key(state.unit) in recused:
        raise StoreError(f"reviewer {reviewer_id} recused from {state.unit!r}; clue {state.clue_id} is not theirs to decide")
    return reviewer_id


def insert_override(db: sqlite3.Connection, state: ClueState, head: str, label: str, reviewer_id: str, *,
                    kind: str = "review", reason: str = "", channel: str = "cli", import_sha256: str | None = None) -> int:
    """Append one override row (inside the caller's transaction); return its id."""
    return append_overrides(db, [override_row(state, head, label, reviewer_id, kind=kind, reason=reason,
                                              channel=channel, import_sha256=import_sha256)])[0]


def override_row(state: ClueState, head: str, label: str, reviewer_id: str, *, kind: str = "review",
                 reason: str = "", channel: str = "cli", import_sha256: str | None = None) -> dict[str, object]:
    """The columns of one override row (for :func:`store.append_overrides`)."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}")
    p = state.prediction
    return {
        "clue_key": state.clue_key, "head": head, "kind": kind,
        "predicted_label": p.labels[head] if p else None, "predicted_conf": p.confidence[head] if p else None,
        "model_version": p.model_version if p else None, "run_id": p.run_id if p else None,
        "old_label": state.heads[head].effective, "new_label": label, "reviewer_id": reviewer_id,
        "reason": reason.strip(), "channel": channel, "import_sha256": import_sha256, "created": now(),
    }


def record_decision(db: sqlite3.Connection, key: str, reviewer_id: str, labels: Mapping[str, str], *,
                    reason: str = "", channel: str = "terminal", run: int | None = None) -> ClueState:
    """Store one reviewer's decision on a clue (one row per head given) in its own
    transaction, committed before this returns; return the clue's new state.

    ``labels`` maps heads to codes or Chinese names; give both heads to accept or change
    the whole clue. The prediction recorded is the one of ``run`` (what the reviewer saw).
    """
    parsed = {head: parse_label(head, value) for head, value in labels.items()}
    if not parsed:
        raise InputError("a decision needs a label for at least one head")
    with transaction(db, f"a decision of {reviewer_key(reviewer_id)}"):
        state = clue_state(db, key, run)
        reviewer_id = _check_reviewer(db, reviewer_id, state)
        if state.prediction is None:
            raise StoreError(f"clue {state.clue_id} has no prediction from a complete triage run")
        for head, label in parsed.items():
            insert_override(db, state, head, label, reviewer_id, reason=reason, channel=channel)
        for member in group_members(db, key)[1:]:
            apply_to_member(db, clue_state(db, member), parsed, reviewer_id, reason=reason, channel=channel)
    return clue_state(db, key, run)


def member_rows(db: sqlite3.Connection, member: ClueState, labels: Mapping[str, str], reviewer_id: str, *,
                reason: str, channel: str, import_sha256: str | None = None) -> list[dict[str, object]]:
    """The override rows recording a decision taken on a repeat group for one more of its
    clues: one per head unless this reviewer's latest decision on that head already says so
    (for :func:`store.append_overrides`; an error when the reviewer is recused from its unit)."""
    reviewer_id = _check_reviewer(db, reviewer_id, member)
    rows = []
    for head, label in labels.items():
        mine = [d for d in member.rows if d.head == head and d.kind == "review" and d.reviewer_id == reviewer_id]
        if mine and mine[-1].new_label == label:
            continue
        note = f"同组决定 / decided for the group{': ' + reason.strip() if reason.strip() else ''}"
        rows.append(override_row(member, head, label, reviewer_id, reason=note, channel=channel,
                                 import_sha256=import_sha256))
    return rows


def apply_to_member(db: sqlite3.Connection, member: ClueState, labels: Mapping[str, str], reviewer_id: str, *,
                    reason: str, channel: str, import_sha256: str | None = None) -> int:
    """Record a decision taken on a repeat group for one more of its clues (inside the
    caller's transaction, see :func:`member_rows`); return the rows written."""
    rows = member_rows(db, member, labels, reviewer_id, reason=reason, channel=channel, import_sha256=import_sha256)
    if rows:
        append_overrides(db, rows)
    return len(rows)


@dataclass(frozen=True)
class Dispute:
    state: ClueState
    head: str

    @property
    def decisions(self) -> dict[str, str]:
        return self.state.heads[self.head].decisions


def disputes(db: sqlite3.Connection, run: RunScope = None) -> list[Dispute]:
    """Clue and head pairs where reviewers' latest decisions differ and nobody adjudicated."""
    return [Dispute(s, head) for s in clue_states(db, run) for head, h in s.heads.items() if h.status == "disputed"]


def resolve(db: sqlite3.Connection, ref: str, head: str, label: str, adjudicator: str, reason: str,
            channel: str = "cli") -> HeadState:
    """Record an adjudication of a disputed head (or a new one of an adjudicated head)."""
    if head not in HEADS:
        raise InputError(f"unknown head {head!r}; use one of: {', '.join(HEADS)}")
    if not reason.strip():
        raise InputError("an adjudication needs a reason (--reason)")
    code = parse_label(head, label)
    with transaction(db, f"an adjudication by {reviewer_key(adjudicator)}"):
        state = clue_state(db, find_clue(db, ref))
        adjudicator = _check_reviewer(db, adjudicator, state)
        if state.heads[head].status not in ("disputed", "adjudicated"):
            raise StoreError(f"clue {state.clue_id} is not disputed on {head}; nothing to adjudicate")
        if adjudicator in state.heads[head].decisions:
            raise StoreError(
                f"{adjudicator} reviewed clue {state.clue_id} on {head}; the adjudicator must be someone else"
            )
        insert_override(db, state, head, code, adjudicator, kind="adjudication", reason=reason, channel=channel)
    return clue_state(db, state.clue_key).heads[head]


# -- history, statistics, examples for retraining ---------------------------------------


@dataclass(frozen=True)
class TrailEntry:
    time: str
    kind: str  # 'prediction', 'review' or 'adjudication'
    actor: str  # model version or reviewer id
    head: str
    label: str
    confidence: float | None = None
    old_label: str | None = None
    reason: str = ""
    channel: str = ""
    run_id: int | None = None
    clue_key: str = ""


def _one_matter(db: sqlite3.Connection, ref: str) -> list[str]:
    """The clue keys an id names when they are all one repeat group (the same text stored
    with and without a unit, or in two files), the group's first clue first; else the
    error of :func:`find_clue`."""
    keys = clue_keys_for(db, ref)
    if len(keys) > 1:
        marks = ",".join("?" * len(keys))
        groups = {r[0] for r in db.execute(f"SELECT COALESCE(group_key, clue_key) FROM clues WHERE clue_key IN ({marks})",
                                           keys)}
        if len(groups) == 1:
            first = groups.pop()
            return sorted(keys, key=lambda k: (k != first, k))
    return [find_clue(db, ref)]


def history(db: sqlite3.Connection, ref: str) -> tuple[ClueState, list[TrailEntry]]:
    """The clue's current state and its whole trail in time order: the predictions of every
    complete run, every review decision and every adjudication. An id that names several
    clues of one repeat group shows the first one's state and the trail of all of them."""
    keys = _one_matter(db, ref)
    entries = []
    for key in keys:
        for r in db.execute("SELECT p.*, r.started FROM predictions p JOIN runs r ON r.run_id = p.run_id "
                            "WHERE p.clue_key = ? AND r.status = 'complete' ORDER BY p.run_id, p.row_number", (key,)):
            for head in HEADS:
                entries.append(TrailEntry(r["started"], "prediction", r["model_version"], head, r[head],
                                          r[f"{head}_conf"], run_id=r["run_id"], clue_key=key))
        for d in _decisions(db, key).get(key, []):
            entries.append(TrailEntry(d.created, d.kind, d.reviewer_id, d.head, d.new_label, None, d.old_label,
                                      d.reason, d.channel, d.run_id, clue_key=key))
    entries.sort(key=lambda e: e.time)  # stable: same-second entries keep their stored order
    return clue_state(db, keys[0]), entries


@dataclass(frozen=True)
class Agreement:
    head: str
    reviewers: tuple[str, str]
    n: int
    agreement: float
    kappa: float | None


@dataclass(frozen=True)
class ReviewStats:
    changes: list[tuple[str, str, str, int]]  # head, predicted, reviewed, count (changed labels only)
    by_model: list[tuple[str, str, int, int]]  # model version, head, decisions, changed
    agreement: list[Agreement]
    rows: int
    disputed: int


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when undefined."""
    n = len(a)
    if n == 0 or n != len(b):
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def review_stats(db: sqlite3.Connection, run: RunScope = None) -> ReviewStats:
    """Counts over each reviewer's latest decision per clue and head (adjudications apart),
    for the clues of ``run`` (a run, a scope, or None for every clue)."""
    latest: dict[tuple[str, str, str], Decision] = {}
    rows = 0
    keys = None if run is None or (isinstance(run, Scope) and run.runs is None) else set(_predictions(db, run))
    for key, decisions in _decisions(db).items():
        if keys is not None and key not in keys:
            continue
        for d in decisions:
            rows += 1
            if d.kind == "review":
                latest[(key, d.head, d.reviewer_id)] = d
    changes: Counter[tuple[str, str, str]] = Counter()
    decided: Counter[tuple[str, str]] = Counter()
    changed: Counter[tuple[str, str]] = Counter()
    for d in latest.values():
        decided[(d.model_version or "-", d.head)] += 1
        if d.new_label != d.predicted_label:
            changed[(d.model_version or "-", d.head)] += 1
            changes[(d.head, d.predicted_label or "-", d.new_label)] += 1
    by_clue: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for (key, head, reviewer), d in latest.items():
        by_clue[(head, reviewer)][key] = d.new_label
    agreement = []
    pairs = sorted(by_clue)
    for i, (head, ra) in enumerate(pairs):
        for head_b, rb in pairs[i + 1:]:
            common = sorted(set(by_clue[(head, ra)]) & set(by_clue[(head_b, rb)])) if head_b == head else []
            if common:
                a = [by_clue[(head, ra)][k] for k in common]
                b = [by_clue[(head, rb)][k] for k in common]
                agreement.append(Agreement(head, (ra, rb), len(common),
                                           sum(x == y for x, y in zip(a, b, strict=True)) / len(common), cohen_kappa(a, b)))
    return ReviewStats(
        sorted((h, p, n, c) for (h, p, n), c in changes.items()),
        sorted((v, h, n, changed[(v, h)]) for (v, h), n in decided.items()),
        agreement, rows, len(disputes(db, run)))


@dataclass(frozen=True)
class ReviewedClue:
    clue_key: str
    clue_id: str
    unit: str
    text: str
    attention: str
    area: str
    n_overrides: int
    last_decided: str
    #: heads whose label a person decided (reviewed or adjudicated); other heads carry the
    #: model's prediction, which the reviewer saw and left standing
    decided: tuple[str, ...] = ("attention", "area")


def reviewed_examples(db: sqlite3.Connection) -> list[ReviewedClue]:
    """Reviewed clues as training examples: every clue with at least one override row that
    is not disputed on either head, with its effective labels (a head nobody decided keeps
    the model's label: the reviewer saw it and left it standing)."""
    decisions = _decisions(db)
    predictions = _predictions(db, None)
    examples = []
    for clue in db.execute("SELECT * FROM clues ORDER BY clue_key"):
        rows = decisions.get(clue["clue_key"])
        if not rows:
            continue
        state = _state(clue, predictions.get(clue["clue_key"]), rows)
        labels = state.effective()
        if state.disputed or not labels["attention"] or not labels["area"]:
            continue
        decided = tuple(h for h in HEADS if state.heads[h].status in ("reviewed", "adjudicated"))
        examples.append(ReviewedClue(state.clue_key, state.clue_id, state.unit, state.text, str(labels["attention"]),
                                     str(labels["area"]), len(rows), max(d.created for d in rows), decided))
    return examples
