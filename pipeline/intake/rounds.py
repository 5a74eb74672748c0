"""Rounds of inspection (第X轮巡察) and the scope a command works on.

A round covers a few units of the directory and collects the triage runs of its files
(``triage --round``, by default the open round). At most one round is open at a time.
Review, hand-over and the report work on a :class:`Scope`: one round, one run, or every
clue; by default the open round, else the latest complete run (:func:`resolve_scope`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError, StoreError
from ..store.store import now, transaction


@dataclass(frozen=True)
class Round:
    round_id: int
    name: str
    status: str  # 'open' or 'closed'
    started: str
    closed: str | None
    units: tuple[str, ...] = ()  # unit names (directory names)
    unit_keys: tuple[str, ...] = ()
    runs: tuple[int, ...] = ()  # complete triage runs


@dataclass(frozen=True)
class Scope:
    """What a command works on: ``runs`` None means every clue (each with its latest prediction)."""

    runs: tuple[int, ...] | None
    label: str
    round: Round | None = None


def _round(db: sqlite3.Connection, row: sqlite3.Row) -> Round:
    units = db.execute("SELECT unit, unit_key FROM round_units WHERE round_id = ? ORDER BY rowid", (row["round_id"],)).fetchall()
    runs = [r[0] for r in db.execute("SELECT run_id FROM runs WHERE round_id = ? AND status = 'complete' ORDER BY run_id",
                                     (row["round_id"],))]
    return Round(row["round_id"], row["name"], row["status"], row["started"], row["closed"],
                 tuple(u["unit"] for u in units), tuple(u["unit_key"] for u in units), tuple(runs))


def list_rounds(db: sqlite3.Connection) -> list[Round]:
    return [_round(db, r) for r in db.execute("SELECT * FROM rounds ORDER BY round_id")]


def open_round(db: sqlite3.Connection) -> Round | None:
    row = db.execute("SELECT * FROM rounds WHERE status = 'open'").fetchone()
    return _round(db, row) if row else None


def get_round(db: sqlite3.Connection, name: str) -> Round:
    row = db.execute("SELECT * FROM rounds WHERE name = ?", (name.strip(),)).fetchone()
    if row is None:
        known = "、".join(r.name for r in list_rounds(db)) or "none"
        raise InputError(f"there is no round {name!r}; rounds: {known}")
    return _round(db, row)


def start_round(db: sqlite3.Connection, name: str, units: Sequence[str] = (),
                units_file: str | os.PathLike[str] | None = None) -> Round:
    """Open a new round covering ``units`` (each must resolve in the unit directory) and/or
    the units of ``units_file`` (added to the directory first, as ``units import`` does)."""
    from .units import _add, _reresolve, load_directory, read_unit_file

    name = name.strip()
    if not name:
        raise InputError("a round needs a name, e.g. 2026年第一轮")
    rows = read_unit_file(units_file) if units_file is not None else []
    written = [*units, *(r.name for r in rows)]
    if not written:
        raise InputError("a round covers at least one unit: give --unit or --units FILE")
    with transaction(db):
        current = db.execute("SELECT name FROM rounds WHERE status = 'open'").fetchone()
        if current is not None:
            raise StoreError(f"round {current['name']!r} is still open; close it first: clue-triage rounds close")
        if db.execute("SELECT 1 FROM rounds WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"there is already a round {name!r}")
        for row in rows:
            _add(db, row.name, row.aliases, row.kind, row.parent)
        _reresolve(db)
        directory = load_directory(db)
        problems = []
        resolved: dict[str, str] = {}
        for unit in written:
            res = directory.resolve(unit)
            if res.unit is None:
                near = directory.suggest(unit)
                problems.append(f"{unit!r}" + (f" (did you mean {'、'.join(near)}?)" if near else ""))
            else:
                resolved.setdefault(res.key, res.unit.name)
        if problems:
            raise InputError("not in the unit directory: " + "; ".join(problems)
                             + "; add them with clue-triage units add, or give --units FILE")
        round_id = db.execute("INSERT INTO rounds (name, status, started) VALUES (?, 'open', ?)", (name, now())).lastrowid
        db.executemany("INSERT INTO round_units VALUES (?, ?, ?)", [(round_id, k, n) for k, n in resolved.items()])
    return get_round(db, name)


def close_round(db: sqlite3.Connection, name: str | None = None) -> Round:
    """Close the open round (or the one named); its clues stay, reachable with ``--round``."""
    with transaction(db):
        chosen = get_round(db, name) if name else open_round(db)
        if chosen is None:
            raise StoreError("no round is open")
        if chosen.status != "open":
            raise StoreError(f"round {chosen.name!r} is already closed")
        db.execute("UPDATE rounds SET status = 'closed', closed = ? WHERE round_id = ?", (now(), chosen.round_id))
    return get_round(db, chosen.name)


def round_for_triage(db: sqlite3.Connection, name: str | None) -> Round | None:
    """The round a triage run joins: the one named (it must be open), else the open round."""
    if name is None:
        return open_round(db)
    chosen = get_round(db, name)
    if chosen.status != "open":
        raise StoreError(f"round {chosen.name!r} is closed; triage into the open round or start a new one")
    return chosen


def resolve_scope(db: sqlite3.Connection, round_name: str | None = None, run: int | None = None,
                  every: bool = False) -> Scope:
    """The scope of ``--round``, ``--run`` or ``--all`` (at most one); by default the open
    round, else the latest complete run, else (an empty store) every clue."""

    if sum(x is not None and x is not False for x in (round_name, run, every)) > 1:
        raise InputError("give at most one of --round, --run and --all")
    if every:
        return Scope(None, "all clues")
    if run is not None:
        check_run(db, run)
        return Scope((run,), f"run {run}")
    chosen = get_round(db, round_name) if round_name else open_round(db)
    if chosen is not None:
        return Scope(chosen.runs, f"round {chosen.name}", chosen)
    latest = db.execute("SELECT MAX(run_id) FROM runs WHERE status = 'complete'").fetchone()[0]
    if latest is None:
        return Scope(None, "all clues")
    return Scope((int(latest),), f"run {latest} (latest)")


def check_run(db: sqlite3.Connection, run: int) -> None:
    row = db.execute("SELECT status FROM runs WHERE run_id = ?", (run,)).fetchone()
    if row is None:
        raise InputError(f"there is no triage run {run}")
    if row["status"] != "complete":
        raise InputError(f"triage run {run} is {row['status']}, not complete; its predictions do not count")
