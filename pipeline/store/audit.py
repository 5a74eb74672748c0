"""Checking the audit trail: the override hash chain and orphans.

The store's triggers refuse every rewrite from an ordinary connection; someone with the
file and the ``sqlite3`` shell can still drop them first. What they change then shows
here: :func:`verify_store` recomputes every override row's sha256 from its content and the
row before it, and lists rows that point at nothing (a clue, reviewer or run that is
missing). It only reads, and never raises on what it finds; ``clue-triage verify`` prints
the report.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from .store import GENESIS, override_digest


@dataclass
class VerifyReport:
    """What :func:`verify_store` found. ``ok`` when the chain is whole and nothing is orphaned."""

    overrides: int = 0
    broken: str | None = None  # the first broken link of the hash chain, in words
    broken_id: int | None = None
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken is None and not self.orphans


def verify_store(db: sqlite3.Connection) -> VerifyReport:
    """Recompute the override hash chain and look for orphans; never raises on what it finds.

    The chain breaks where a row was changed (its digest no longer matches), removed or
    inserted out of order (its ``prev_sha256`` is not the digest of the row before it), or
    rows were removed from its end (the id sequence is past the last row)."""
    report = VerifyReport()
    prev, last_id = GENESIS, 0
    for row in db.execute("SELECT * FROM overrides ORDER BY override_id"):
        report.overrides += 1
        values = dict(zip(row.keys(), tuple(row), strict=True))
        if report.broken is None:
            oid = values["override_id"]
            if values.get("prev_sha256") != prev:
                report.broken, report.broken_id = (
                    f"override {oid}: its link to the row before it (override {last_id or '-'}) is broken "
                    "(a row was removed, inserted or changed before it)", oid)
            elif values.get("row_sha256") != override_digest(prev, values):
                report.broken, report.broken_id = (f"override {oid}: its content does not match its sha256 "
                                                   "(the row was changed)", oid)
            prev, last_id = values.get("row_sha256") or "", oid
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'overrides'").fetchone()
    if report.broken is None and seq and seq[0] > last_id:
        report.broken, report.broken_id = (f"overrides after {last_id} (up to {seq[0]}) were removed "
                                           "from the end of the chain", last_id + 1)
    report.orphans = find_orphans(db)
    return report


def find_orphans(db: sqlite3.Connection) -> list[str]:
    """Rows that refer to a clue, reviewer or run the store does not have, in words (reads
    only; cheap: every query is a NOT IN over a primary key)."""
    checks = (
        ("override", "SELECT override_id, clue_key FROM overrides WHERE clue_key NOT IN (SELECT clue_key FROM clues)",
         "refers to clue {1}, which is not in the store"),
        ("override", "SELECT override_id, reviewer_id FROM overrides "
                     "WHERE reviewer_id NOT IN (SELECT reviewer_id FROM reviewers)",
         "was made by reviewer {1}, who is not in the store"),
        ("prediction", "SELECT run_id || '/' || row_number, clue_key FROM predictions "
                       "WHERE clue_key IS NOT NULL AND clue_key NOT IN (SELECT clue_key FROM clues)",
         "(run/row) refers to clue {1}, which is not in the store"),
        ("prediction", "SELECT run_id || '/' || row_number, run_id FROM predictions "
                       "WHERE run_id NOT IN (SELECT run_id FROM runs)", "(run/row) belongs to no run"),
        ("recusal", "SELECT reviewer_id, unit FROM recusals WHERE reviewer_id NOT IN (SELECT reviewer_id FROM reviewers)",
         "of {1!r} belongs to no reviewer"),
    )
    found = []
    for kind, sql, text in checks:
        for row in db.execute(sql):
            found.append(f"{kind} {row[0]} " + text.format(*row))
    return found
