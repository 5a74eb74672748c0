"""Short leases on clues, so two reviewers working at once never get the same clue.

When the review page serves a reviewer a clue, it takes a lease on it for a few minutes
(:data:`LEASE_MINUTES`), renewed each time the reviewer's page shows it again; a reviewer
holds at most one lease, and deciding or skipping the clue gives it back. Another reviewer's
queue passes over a leased clue until the lease is given back or runs out, so a reviewer who
walks away holds nothing for long.

A reviewer's *skips* put a clue at the back of their own queue for :data:`SKIP_HOURS`.

Leases are working state, not evidence: rows here change and expire. Functions without a
transaction of their own (:func:`take`, :func:`active`) run inside the caller's; the
others open one.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from ..store.store import now, transaction

LEASE_MINUTES = 10.0
SKIP_HOURS = 12.0


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="seconds")


def active(db: sqlite3.Connection) -> dict[str, str]:
    """clue_key -> reviewer holding an unexpired lease on it."""
    return {r[0]: r[1] for r in db.execute("SELECT clue_key, reviewer_id FROM leases WHERE expires > ?", (now(),))}


def holder(db: sqlite3.Connection, key: str) -> str | None:
    """The reviewer holding an unexpired lease on the clue, if any."""
    row = db.execute("SELECT reviewer_id FROM leases WHERE clue_key = ? AND expires > ?", (key, now())).fetchone()
    return None if row is None else str(row[0])


def take(db: sqlite3.Connection, key: str, reviewer_id: str, minutes: float = LEASE_MINUTES) -> None:
    """Lease the clue to the reviewer (inside the caller's transaction), giving back any
    other lease they hold. The caller has checked that nobody else holds it."""
    db.execute("DELETE FROM leases WHERE reviewer_id = ? AND clue_key != ?", (reviewer_id, key))
    db.execute("INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT (clue_key) DO UPDATE SET "
               "reviewer_id = excluded.reviewer_id, expires = excluded.expires",
               (key, reviewer_id, _later(minutes=minutes)))


def claim(db: sqlite3.Connection, key: str, reviewer_id: str, minutes: float = LEASE_MINUTES) -> bool:
    """Take or renew the lease on one clue; False (and nothing changed) when another
    reviewer holds it."""
    with transaction(db):
        other = holder(db, key)
        if other is not None and other != reviewer_id:
            return False
        take(db, key, reviewer_id, minutes)
    return True


def release(db: sqlite3.Connection, reviewer_id: str, key: str | None = None) -> None:
    """Give back the reviewer's lease on ``key`` (or every lease they hold)."""
    with transaction(db):
        if key is None:
            db.execute("DELETE FROM leases WHERE reviewer_id = ?", (reviewer_id,))
        else:
            db.execute("DELETE FROM leases WHERE reviewer_id = ? AND clue_key = ?", (reviewer_id, key))
        db.execute("DELETE FROM leases WHERE expires <= ?", (now(),))


def skip(db: sqlite3.Connection, reviewer_id: str, key: str, hours: float = SKIP_HOURS) -> None:
    """Put the clue at the back of the reviewer's queue for ``hours`` and give back its lease."""
    with transaction(db):
        db.execute("INSERT INTO skips VALUES (?, ?, ?) ON CONFLICT (reviewer_id, clue_key) DO UPDATE SET "
                   "until = excluded.until", (reviewer_id, key, _later(hours=hours)))
        db.execute("DELETE FROM leases WHERE reviewer_id = ? AND clue_key = ?", (reviewer_id, key))


def skipped(db: sqlite3.Connection, reviewer_id: str) -> set[str]:
    """The clues the reviewer skipped and that are still at the back of their queue."""
    return {r[0] for r in db.execute("SELECT clue_key FROM skips WHERE reviewer_id = ? AND until > ?",
                                     (reviewer_id, now()))}
