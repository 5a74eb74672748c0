"""The review store: SQLite in the home, with numbered migrations.

Tables: ``runs`` (one per triage), ``clues`` (content-addressed by unit + normalised text,
so the same clue triaged twice is one clue), ``predictions`` (one per run and input row),
``reviewers`` and ``recusals``, and ``overrides``: every reviewer decision and adjudication,
append-only. Corrections are evidence and are never changed after the fact; a later
decision is a new row.
The review page (``clue-triage serve``) adds ``signin_tokens``, ``web_sessions``, ``leases``
and ``skips``: working state of the page, not evidence, so these rows do change.

The audit trail is guarded in the database itself, whoever writes to it (m011): triggers
refuse UPDATE and DELETE on overrides, recusals, reviewers, clues and predictions, and a
conflicting key on INSERT (so ``REPLACE INTO``, which SQLite runs as delete + insert without
DELETE triggers unless ``recursive_triggers`` is on, is refused too). A run's record may
change only while it is ``running``; a run that did not complete may remove its own
predictions and the clues only it brought. Every override row carries the sha256 of the
row before it and of itself (a hash chain, :func:`append_overrides`):
:func:`pipeline.store.audit.verify_store` recomputes it and reports the first broken link, and
every orphan it finds.

WAL mode lets reviewers read while a triage writes; writes are short transactions
(``BEGIN IMMEDIATE``); a writer that cannot get the lock within ``BUSY_TIMEOUT`` seconds
gets a :class:`StoreError` naming what holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..fsutil import remove_temp_files
from ..text.normalize import fold_identifier, normalize, to_simplified

BUSY_TIMEOUT = 10.0  # seconds a writer waits for the write lock before it is told the store is busy
GENESIS = "0" * 64  # prev_sha256 of the first override row
#: the columns of an override row covered by its hash, in this order
OVERRIDE_FIELDS = (
    "override_id", "clue_key", "head", "kind", "predicted_label", "predicted_conf", "model_version", "run_id",
    "old_label", "new_label", "reviewer_id", "reason", "channel", "import_sha256", "created",
)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def clue_key(unit: str, text: str) -> str:
    """Stable key of a clue: its unit and normalised text."""
    return key_of_normalized(normalize(unit), normalize(text))


def key_of_normalized(unit: str, text: str) -> str:
    """:func:`clue_key` of a unit and text that are already normalised (triage has them)."""
    return hashlib.sha256(f"{unit}\n{text}".encode()).hexdigest()[:20]


def unit_key(unit: str) -> str:
    """Units compare after normalisation, so 東城分局, 东城分局, ＡＢＣ分局 and abc分局 are one
    unit, and so is a name with invisible characters inside (:func:`normalize.fold_identifier`)."""
    return fold_identifier(to_simplified(fold_identifier(unit))).replace(" ", "")


def override_digest(prev_sha256: str, row: Mapping[str, Any]) -> str:
    """sha256 of one override row chained to the row before it (canonical JSON of
    ``OVERRIDE_FIELDS``, then the previous row's digest)."""
    payload = json.dumps([row.get(f) for f in OVERRIDE_FIELDS], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_sha256}\n{payload}".encode("utf-8", "surrogatepass")).hexdigest()


def append_overrides(db: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Append override rows (inside the caller's write transaction) in one ``executemany``:
    each gets the next id and its link in the hash chain. Returns their ids."""
    values = chain_overrides(db, rows)
    insert_chained(db, values)
    return [v[0] for v in values]


def chain_overrides(db: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The values to insert for ``rows``: ids and hash links continuing the chain as it is
    now. Computed before the write lock, they are only valid while nobody else appends
    (an import checks that under the lock; the ``overrides_chained`` trigger refuses them
    otherwise). Columns: ``OVERRIDE_FIELDS``, ``prev_sha256``, ``row_sha256``."""
    last = db.execute("SELECT override_id, row_sha256 FROM overrides ORDER BY override_id DESC LIMIT 1").fetchone()
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'overrides'").fetchone()
    next_id = max(last[0] if last else 0, seq[0] if seq else 0) + 1
    prev = (last[1] if last else None) or GENESIS
    values = []
    for row in rows:
        full = {"reason": "", **row, "override_id": next_id}
        digest = override_digest(prev, full)
        values.append([full.get(f) for f in OVERRIDE_FIELDS] + [prev, digest])
        prev, next_id = digest, next_id + 1
    return values


def insert_chained(db: sqlite3.Connection, values: Sequence[Sequence[Any]]) -> None:
    """Insert rows made by :func:`chain_overrides` (inside a write transaction)."""
    db.executemany(f"INSERT INTO overrides ({', '.join(OVERRIDE_FIELDS)}, prev_sha256, row_sha256) "
                   f"VALUES ({', '.join('?' * (len(OVERRIDE_FIELDS) + 2))})", values)


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run SQL statements one by one (``executescript`` would commit the open transaction)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")


def m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            started TEXT NOT NULL,
            finished TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
            model_version TEXT NOT NULL,
            input_path TEXT NOT NULL,
            input_sha256 TEXT NOT NULL,
            row_count INTEGER
        );
        CREATE TABLE clues (
            clue_key TEXT PRIMARY KEY,
            clue_id TEXT NOT NULL,
            unit TEXT NOT NULL DEFAULT '',
            unit_key TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            first_run INTEGER REFERENCES runs(run_id)
        );
        CREATE INDEX clues_by_id ON clues(clue_id);
        CREATE TABLE predictions (
            run_id INTEGER NOT NULL REFERENCES runs(run_id),
            row_number INTEGER NOT NULL,
            clue_key TEXT REFERENCES clues(clue_key),
            clue_id TEXT NOT NULL,
            status TEXT NOT NULL,
            attention TEXT,
            attention_conf REAL,
            area TEXT,
            area_conf REAL,
            margin REAL,
            needs_review INTEGER NOT NULL DEFAULT 0,
            key_terms TEXT NOT NULL DEFAULT '',
            handover TEXT NOT NULL DEFAULT '',
            model_version TEXT NOT NULL,
            PRIMARY KEY (run_id, row_number)
        );
        CREATE INDEX predictions_by_clue ON predictions(clue_key);
        CREATE TABLE reviewers (
            reviewer_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created TEXT NOT NULL
        );
        CREATE TABLE recusals (
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            unit_key TEXT NOT NULL,
            unit TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (reviewer_id, unit_key)
        );
        CREATE TABLE overrides (
            override_id INTEGER PRIMARY KEY AUTOINCREMENT,
            clue_key TEXT NOT NULL REFERENCES clues(clue_key),
            head TEXT NOT NULL CHECK (head IN ('attention', 'area')),
            kind TEXT NOT NULL CHECK (kind IN ('review', 'adjudication')),
            predicted_label TEXT,
            predicted_conf REAL,
            model_version TEXT,
            run_id INTEGER,
            old_label TEXT,
            new_label TEXT NOT NULL,
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            reason TEXT NOT NULL DEFAULT '',
            channel TEXT NOT NULL,
            import_sha256 TEXT,
            created TEXT NOT NULL
        );
        CREATE INDEX overrides_by_clue ON overrides(clue_key, head);
        CREATE TRIGGER overrides_no_update BEFORE UPDATE ON overrides
        BEGIN SELECT RAISE(ABORT, 'overrides are append-only: record a new decision instead'); END;
        CREATE TRIGGER overrides_no_delete BEFORE DELETE ON overrides
        BEGIN SELECT RAISE(ABORT, 'overrides are append-only: they cannot be deleted'); END;
        """
    )


def m002_override_guards(db: sqlite3.Connection) -> None:
    """Refuse, in the database itself, an override with an unknown label code or by a
    reviewer recused from the clue's unit: the library checks both first, and these
    triggers make sure no other writer can store such evidence either. The label codes
    are written out here (not read from ``labels.py``) so the migration never changes."""
    _script(
        db,
        """
        CREATE TRIGGER overrides_known_label BEFORE INSERT ON overrides
        WHEN (NEW.head = 'attention' AND NEW.new_label NOT IN ('further', 'aware', 'reference'))
          OR (NEW.head = 'area' AND NEW.new_label NOT IN ('policy', 'discipline', 'organization', 'rectification'))
        BEGIN SELECT RAISE(ABORT, 'override refused: unknown label for this head'); END;
        CREATE TRIGGER overrides_not_recused BEFORE INSERT ON overrides
        WHEN EXISTS (
            SELECT 1 FROM recusals r JOIN clues c ON c.unit_key = r.unit_key
            WHERE c.clue_key = NEW.clue_key AND r.reviewer_id = NEW.reviewer_id
        )
        BEGIN SELECT RAISE(ABORT, 'override refused: the reviewer is recused from this unit'); END;
        CREATE INDEX overrides_by_reviewer ON overrides(reviewer_id, clue_key, head);
        """
    )


def m010_identifier_keys(db: sqlite3.Connection) -> None:
    """Recompute the unit keys of clues and recusals with :func:`unit_key` as it folds
    identifiers now (invisible characters, width, case): a recusal must match its unit
    however the name was typed. Recusals that now name one unit twice are kept once."""
    for row in db.execute("SELECT clue_key, unit FROM clues").fetchall():
        db.execute("UPDATE clues SET unit_key = ? WHERE clue_key = ?", (unit_key(row[1]), row[0]))
    recusals = db.execute("SELECT reviewer_id, unit_key, unit, created FROM recusals ORDER BY created").fetchall()
    db.execute("DELETE FROM recusals")
    db.executemany("INSERT OR IGNORE INTO recusals VALUES (?, ?, ?, ?)",
                   [(r[0], unit_key(r[2]), r[2], r[3]) for r in recusals])


_NO_CHANGE = "{table} are part of the audit trail: they cannot be {verb}"


def _guards(table: str, key: str, *, replace_only: bool = False) -> str:
    """Triggers refusing UPDATE, DELETE and an INSERT whose key exists (REPLACE) on ``table``."""
    sql = f"""
        CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table}
        WHEN EXISTS (SELECT 1 FROM {table} WHERE {key})
        BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE.format(table=table, verb="replaced")}'); END;
        """
    if not replace_only:
        sql += f"""
        CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE.format(table=table, verb="changed")}'); END;
        CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
        BEGIN SELECT RAISE(ABORT, '{_NO_CHANGE.format(table=table, verb="deleted")}'); END;
        """
    return sql


def m011_audit_guards(db: sqlite3.Connection) -> None:
    """Guard every audited table against UPDATE, DELETE and REPLACE; chain overrides by
    sha256; let a run be ``interrupted`` and remember which process ran it.

    ``runs`` is rebuilt (SQLite cannot change a CHECK constraint in place): the new columns
    ``pid``/``process`` identify the process that ran it (a run left ``running`` by a dead
    process is marked ``interrupted`` at the next start) and ``output_path`` is where its
    output goes (its temporary files are cleaned then). Existing override rows are chained
    in id order."""
    _script(
        db,
        """
        CREATE TABLE runs_new (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            started TEXT NOT NULL,
            finished TEXT,
            status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed', 'interrupted')),
            model_version TEXT NOT NULL,
            input_path TEXT NOT NULL,
            input_sha256 TEXT NOT NULL,
            row_count INTEGER,
            pid INTEGER,
            process TEXT,
            output_path TEXT
        );
        INSERT INTO runs_new (run_id, started, finished, status, model_version, input_path, input_sha256, row_count)
            SELECT run_id, started, finished, status, model_version, input_path, input_sha256, row_count FROM runs;
        DROP TABLE runs;
        ALTER TABLE runs_new RENAME TO runs;
        ALTER TABLE overrides ADD COLUMN prev_sha256 TEXT;
        ALTER TABLE overrides ADD COLUMN row_sha256 TEXT;
        DROP TRIGGER overrides_no_update;
        """
    )
    prev = GENESIS
    for row in db.execute("SELECT * FROM overrides ORDER BY override_id").fetchall():
        digest = override_digest(prev, dict(zip(row.keys(), tuple(row), strict=True)))
        db.execute("UPDATE overrides SET prev_sha256 = ?, row_sha256 = ? WHERE override_id = ?",
                   (prev, digest, row["override_id"]))
        prev = digest
    _script(
        db,
        """
        CREATE TRIGGER overrides_no_update BEFORE UPDATE ON overrides
        BEGIN SELECT RAISE(ABORT, 'overrides are append-only: record a new decision instead'); END;
        CREATE TRIGGER overrides_append_only BEFORE INSERT ON overrides
        WHEN NEW.override_id <= (SELECT COALESCE(MAX(override_id), 0) FROM overrides)
          OR NEW.override_id <= COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'overrides'), 0)
        BEGIN SELECT RAISE(ABORT, 'overrides are append-only: a row is never replaced or renumbered'); END;
        CREATE TRIGGER overrides_chained BEFORE INSERT ON overrides
        WHEN NEW.row_sha256 IS NULL
          OR NEW.prev_sha256 IS NOT COALESCE(
                (SELECT row_sha256 FROM overrides ORDER BY override_id DESC LIMIT 1),
                '0000000000000000000000000000000000000000000000000000000000000000')
        BEGIN SELECT RAISE(ABORT, 'override refused: it does not continue the hash chain'); END;
        """
        + _guards("reviewers", "reviewer_id = NEW.reviewer_id")
        + _guards("recusals", "reviewer_id = NEW.reviewer_id AND unit_key = NEW.unit_key")
        + _guards("clues", "clue_key = NEW.clue_key", replace_only=True)
        + _guards("predictions", "run_id = NEW.run_id AND row_number = NEW.row_number", replace_only=True)
        + _guards("runs", "run_id = NEW.run_id", replace_only=True)
        + """
        CREATE TRIGGER clues_no_update BEFORE UPDATE ON clues
        BEGIN SELECT RAISE(ABORT, 'clues are part of the audit trail: they cannot be changed'); END;
        CREATE TRIGGER clues_no_delete BEFORE DELETE ON clues
        WHEN COALESCE((SELECT status FROM runs WHERE run_id = OLD.first_run), '') != 'running'
          OR EXISTS (SELECT 1 FROM overrides WHERE clue_key = OLD.clue_key)
          OR EXISTS (SELECT 1 FROM predictions WHERE clue_key = OLD.clue_key)
        BEGIN SELECT RAISE(ABORT, 'clues are part of the audit trail: they cannot be deleted'); END;
        CREATE TRIGGER predictions_no_update BEFORE UPDATE ON predictions
        BEGIN SELECT RAISE(ABORT, 'predictions are part of the audit trail: they cannot be changed'); END;
        CREATE TRIGGER predictions_no_delete BEFORE DELETE ON predictions
        WHEN COALESCE((SELECT status FROM runs WHERE run_id = OLD.run_id), '') != 'running'
        BEGIN SELECT RAISE(ABORT, 'predictions are part of the audit trail: they cannot be deleted'); END;
        CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs
        BEGIN SELECT RAISE(ABORT, 'runs are part of the audit trail: they cannot be deleted'); END;
        CREATE TRIGGER runs_finished_records BEFORE UPDATE ON runs
        WHEN OLD.status != 'running'
          OR NEW.run_id IS NOT OLD.run_id OR NEW.started IS NOT OLD.started
          OR NEW.model_version IS NOT OLD.model_version OR NEW.input_path IS NOT OLD.input_path
          OR NEW.input_sha256 IS NOT OLD.input_sha256
        BEGIN SELECT RAISE(ABORT, 'runs are part of the audit trail: a finished run cannot be changed'); END;
        CREATE INDEX clues_by_first_run ON clues(first_run);
        """
    )


def m020_units_and_recusal_ends(db: sqlite3.Connection) -> None:
    """The unit directory (names and aliases by normalised key); recusals that can end, with
    a recorded reason, and are never deleted; an append-only log of recusals and their ends.
    The recusal guard on overrides now ignores ended recusals.

    The audit guards of m011 stay, narrowed to the changes the workflow makes and nothing
    else: a clue's or recusal's ``unit_key`` may move only from a name the directory did not
    know to a directory entry (a unit added after a triage still protects a recused
    reviewer); a recusal may end (with a reason) and start again, nothing more. Directory
    entries and aliases are never deleted or renamed (an entry's kind and parent may be
    filled in); the recusal log is append-only."""
    _script(
        db,
        """
        CREATE TABLE units (
            unit_key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT '',
            parent TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL
        );
        CREATE TABLE unit_aliases (
            alias_key TEXT PRIMARY KEY,
            alias TEXT NOT NULL,
            unit_key TEXT NOT NULL REFERENCES units(unit_key),
            created TEXT NOT NULL
        );
        ALTER TABLE recusals ADD COLUMN ended TEXT;
        ALTER TABLE recusals ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
        CREATE TABLE recusal_log (
            log_id INTEGER PRIMARY KEY AUTOINCREMENT,
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            unit_key TEXT NOT NULL,
            unit TEXT NOT NULL,
            action TEXT NOT NULL CHECK (action IN ('recuse', 'end')),
            reason TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL
        );
        INSERT INTO recusal_log (reviewer_id, unit_key, unit, action, reason, created)
            SELECT reviewer_id, unit_key, unit, 'recuse', '', created FROM recusals;
        CREATE TRIGGER recusal_log_no_update BEFORE UPDATE ON recusal_log
        BEGIN SELECT RAISE(ABORT, 'the recusal log is append-only'); END;
        CREATE TRIGGER recusal_log_no_delete BEFORE DELETE ON recusal_log
        BEGIN SELECT RAISE(ABORT, 'the recusal log is append-only'); END;
        DROP TRIGGER overrides_not_recused;
        CREATE TRIGGER overrides_not_recused BEFORE INSERT ON overrides
        WHEN EXISTS (
            SELECT 1 FROM recusals r JOIN clues c ON c.unit_key = r.unit_key
            WHERE c.clue_key = NEW.clue_key AND r.reviewer_id = NEW.reviewer_id AND r.ended IS NULL
        )
        BEGIN SELECT RAISE(ABORT, 'override refused: the reviewer is recused from this unit'); END;
        DROP TRIGGER recusals_no_delete;
        CREATE TRIGGER recusals_no_delete BEFORE DELETE ON recusals
        BEGIN SELECT RAISE(ABORT, 'recusals are part of the audit trail: they are never deleted (end one with a reason instead)'); END;
        DROP TRIGGER recusals_no_update;
        CREATE TRIGGER recusals_no_update BEFORE UPDATE ON recusals
        WHEN NEW.reviewer_id IS NOT OLD.reviewer_id OR NEW.created IS NOT OLD.created
          OR NOT (
            -- re-resolved: from a name the directory did not know to a directory entry
            (NEW.unit_key IS NOT OLD.unit_key AND NEW.unit IS OLD.unit
             AND NOT EXISTS (SELECT 1 FROM units WHERE unit_key = OLD.unit_key)
             AND EXISTS (SELECT 1 FROM units WHERE unit_key = NEW.unit_key)
             AND NEW.ended IS OLD.ended AND NEW.end_reason IS OLD.end_reason)
            -- ended, with a reason
            OR (NEW.unit_key IS OLD.unit_key AND NEW.unit IS OLD.unit AND OLD.ended IS NULL
                AND NEW.ended IS NOT NULL AND TRIM(NEW.end_reason) != '')
            -- recused again after an end, under the name written this time (the recusal log
            -- keeps the earlier recusal, its end and its reason)
            OR (NEW.unit_key IS OLD.unit_key AND OLD.ended IS NOT NULL AND NEW.ended IS NULL
                AND NEW.end_reason = '')
          )
        BEGIN SELECT RAISE(ABORT, 'recusals are part of the audit trail: they cannot be changed'); END;
        DROP TRIGGER clues_no_update;
        CREATE TRIGGER clues_no_update BEFORE UPDATE ON clues
        WHEN NEW.clue_key IS NOT OLD.clue_key OR NEW.clue_id IS NOT OLD.clue_id OR NEW.unit IS NOT OLD.unit
          OR NEW.text IS NOT OLD.text OR NEW.first_run IS NOT OLD.first_run
          OR NEW.unit_key IS OLD.unit_key
          OR EXISTS (SELECT 1 FROM units WHERE unit_key = OLD.unit_key)
          OR NOT EXISTS (SELECT 1 FROM units WHERE unit_key = NEW.unit_key)
        BEGIN SELECT RAISE(ABORT, 'clues are part of the audit trail: they cannot be changed'); END;
        """
        + _guards("units", "unit_key = NEW.unit_key")
        + _guards("unit_aliases", "alias_key = NEW.alias_key")
        + """
        DROP TRIGGER units_no_update;
        CREATE TRIGGER units_no_update BEFORE UPDATE ON units
        WHEN NEW.unit_key IS NOT OLD.unit_key OR NEW.name IS NOT OLD.name OR NEW.created IS NOT OLD.created
        BEGIN SELECT RAISE(ABORT, 'units are part of the audit trail: a unit is never renamed'); END;
        """
    )


def m021_rounds(db: sqlite3.Connection) -> None:
    """Rounds of inspection: the units each covers and the triage runs that belong to it.
    At most one round is open (a partial unique index). A round is never deleted and
    changes once, when it closes; its units are fixed when it starts."""
    _script(
        db,
        """
        CREATE TABLE rounds (
            round_id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
            started TEXT NOT NULL,
            closed TEXT
        );
        CREATE UNIQUE INDEX rounds_one_open ON rounds(status) WHERE status = 'open';
        CREATE TABLE round_units (
            round_id INTEGER NOT NULL REFERENCES rounds(round_id),
            unit_key TEXT NOT NULL,
            unit TEXT NOT NULL,
            PRIMARY KEY (round_id, unit_key)
        );
        ALTER TABLE runs ADD COLUMN round_id INTEGER REFERENCES rounds(round_id);
        """
        + _guards("rounds", "round_id = NEW.round_id OR name = NEW.name")
        + _guards("round_units", "round_id = NEW.round_id AND unit_key = NEW.unit_key")
        + """
        DROP TRIGGER rounds_no_update;
        CREATE TRIGGER rounds_no_update BEFORE UPDATE ON rounds
        WHEN NOT (OLD.status = 'open' AND NEW.status = 'closed' AND NEW.closed IS NOT NULL)
          OR NEW.round_id IS NOT OLD.round_id OR NEW.name IS NOT OLD.name OR NEW.started IS NOT OLD.started
        BEGIN SELECT RAISE(ABORT, 'rounds are part of the audit trail: a round only closes'); END;
        CREATE TRIGGER runs_round_fixed BEFORE UPDATE ON runs
        WHEN NEW.round_id IS NOT OLD.round_id
        BEGIN SELECT RAISE(ABORT, 'runs are part of the audit trail: a run stays in its round'); END;
        """
    )


def m022_repeat_groups(db: sqlite3.Connection) -> None:
    """Repeat clues (同一问题多次反映): each clue's group is the clue key of the group's first
    clue (NULL for clues stored before grouping: each is its own group), set when the clue is
    stored and never changed (the guards of ``clues``); the MinHash signature and exact-text
    hash of every grouped clue, so later runs group with it (derived data, stored once)."""
    _script(
        db,
        """
        ALTER TABLE clues ADD COLUMN group_key TEXT;
        CREATE INDEX clues_by_group ON clues(group_key);
        CREATE TABLE clue_signatures (
            clue_key TEXT PRIMARY KEY REFERENCES clues(clue_key),
            text_hash TEXT NOT NULL,
            signature BLOB NOT NULL
        );
        DROP TRIGGER clues_no_update;
        CREATE TRIGGER clues_no_update BEFORE UPDATE ON clues
        WHEN NEW.clue_key IS NOT OLD.clue_key OR NEW.clue_id IS NOT OLD.clue_id OR NEW.unit IS NOT OLD.unit
          OR NEW.text IS NOT OLD.text OR NEW.first_run IS NOT OLD.first_run OR NEW.group_key IS NOT OLD.group_key
          OR NEW.unit_key IS OLD.unit_key
          OR EXISTS (SELECT 1 FROM units WHERE unit_key = OLD.unit_key)
          OR NOT EXISTS (SELECT 1 FROM units WHERE unit_key = NEW.unit_key)
        BEGIN SELECT RAISE(ABORT, 'clues are part of the audit trail: they cannot be changed'); END;
        """
    )


def m023_assignments(db: sqlite3.Connection) -> None:
    """Review by assignment: which reviewer is given which clue (a repeat group's first clue).
    Part of the record: an assignment is added once and never changed or removed."""
    _script(
        db,
        """
        CREATE TABLE assignments (
            clue_key TEXT NOT NULL REFERENCES clues(clue_key),
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            round_id INTEGER REFERENCES rounds(round_id),
            created TEXT NOT NULL,
            PRIMARY KEY (clue_key, reviewer_id)
        );
        """
        + _guards("assignments", "clue_key = NEW.clue_key AND reviewer_id = NEW.reviewer_id")
    )


def m024_canonical_texts(db: sqlite3.Connection) -> None:
    """The canonical form (:func:`pipeline.intake.repeats.canonical`) of each grouped clue's
    text next to its signature, so a run that reads an older clue back for an exact check
    does not normalise it again (a third of the time of those checks). Derived data like the
    signature, about the size of the text again; NULL for clues grouped before (they are
    normalised when read back, as before)."""
    db.execute("ALTER TABLE clue_signatures ADD COLUMN canon TEXT")


def m025_signatures_by_text_hash(db: sqlite3.Connection) -> None:
    """Grouped clues by the hash of their canonical text: a run keeps only the latest clues'
    signatures in memory (:data:`pipeline.intake.repeats.WINDOW`) and finds an exact repeat
    of an older clue in the store, one indexed lookup per batch."""
    db.execute("CREATE INDEX signatures_by_text_hash ON clue_signatures(text_hash)")


def m030_web_sessions(db: sqlite3.Connection) -> None:
    """Sign-in for the review page (``clue-triage serve``): one-time sign-in tokens and
    browser sessions, each stored as the sha256 of its secret so a copy of the database
    signs nobody in. See :mod:`pipeline.review.sessions`."""
    _script(
        db,
        """
        CREATE TABLE signin_tokens (
            token_sha256 TEXT PRIMARY KEY,
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            created TEXT NOT NULL,
            expires TEXT NOT NULL,
            used TEXT
        );
        CREATE TABLE web_sessions (
            session_sha256 TEXT PRIMARY KEY,
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            csrf TEXT NOT NULL,
            created TEXT NOT NULL,
            expires TEXT NOT NULL,
            ended TEXT
        );
        """
    )


def m031_review_leases(db: sqlite3.Connection) -> None:
    """Short leases on clues, so two reviewers working at once are never shown the same
    clue, and the clues a reviewer skipped (served again after the rest). See
    :mod:`pipeline.review.leases`."""
    _script(
        db,
        """
        CREATE TABLE leases (
            clue_key TEXT PRIMARY KEY REFERENCES clues(clue_key),
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            expires TEXT NOT NULL
        );
        CREATE INDEX leases_by_reviewer ON leases(reviewer_id);
        CREATE TABLE skips (
            reviewer_id TEXT NOT NULL REFERENCES reviewers(reviewer_id),
            clue_key TEXT NOT NULL REFERENCES clues(clue_key),
            until TEXT NOT NULL,
            PRIMARY KEY (reviewer_id, clue_key)
        );
        """
    )


# keep sorted by name: the store applies them in this order. m001_… schema, m010_… hardening
# (issue 11), m020_… the inspection workflow (issue 13), m030_… the review page (issue 14)
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_initial, m002_override_guards, m010_identifier_keys, m011_audit_guards,
    m020_units_and_recusal_ends, m021_rounds, m022_repeat_groups, m023_assignments, m024_canonical_texts,
    m025_signatures_by_text_hash,
    m030_web_sessions, m031_review_leases,
)


def pending_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations this store lacks, read without taking the write lock."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone():
        return [m.__name__ for m in MIGRATIONS]
    done = {r[0] for r in db.execute("SELECT name FROM _migrations")}
    return [m.__name__ for m in MIGRATIONS if m.__name__ not in done]




def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``; return their names.

    Nothing is written (no write lock is taken) when the store is up to date. Foreign keys
    are off while migrations run (a table rebuild needs it: SQLite's documented procedure);
    orphans from before the guards are reported by :func:`verify_store`."""
    if not pending_migrations(db):
        return []
    foreign_keys = db.execute("PRAGMA foreign_keys").fetchone()[0]
    db.execute("PRAGMA foreign_keys = OFF")
    applied = []
    try:
        with transaction(db, "migrating the store"):
            db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        for migration in MIGRATIONS:
            with transaction(db, "migrating the store"):
                # read inside the write transaction: two processes opening a new store must not
                # both apply the same migration
                if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (migration.__name__,)).fetchone():
                    continue
                migration(db)
                db.execute("INSERT INTO _migrations VALUES (?, ?)", (migration.__name__, now()))
            applied.append(migration.__name__)
    finally:
        db.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    return applied


def _wal(db: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL (persistent in the file). SQLite does not wait on its busy handler for
    this, so when several processes open a new store at once, retry for a few seconds."""
    for attempt in range(attempts):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)


class Store(sqlite3.Connection):
    """A connection that knows its file, so a busy or full store can be named in errors."""

    path: Path = Path()


#: values bound per ``IN (…)`` query (SQLite limits the parameters of one statement)
IN_CHUNK = 500


def rows_in(db: sqlite3.Connection, query: str, values: Sequence[Any]) -> Iterator[Any]:
    """The rows of ``query`` for every one of ``values``: its ``IN ({})`` is filled with up to
    :data:`IN_CHUNK` placeholders at a time, one query per chunk.

    >>> rows_in(db, "SELECT clue_key FROM clues WHERE clue_key IN ({})", keys)  # doctest: +SKIP
    """
    for lo in range(0, len(values), IN_CHUNK):
        chunk = values[lo:lo + IN_CHUNK]
        yield from db.execute(query.format(",".join("?" * len(chunk))), chunk)


def connect(path: str | os.PathLike[str], *, create: bool = True) -> sqlite3.Connection:
    """Open (creating owner-only if new, unless ``create`` is false) and migrate the store.

    Every connection has foreign keys and recursive triggers on (so ``REPLACE`` runs the
    DELETE guards too) and waits up to ``BUSY_TIMEOUT`` seconds for the write lock."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise StoreError(f"there is no store in {path.parent.parent} ({path} is missing): "
                             "triage a file first (clue-triage triage FILE), or check --home")
        if not path.parent.is_dir():
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{path.parent}: cannot create the store's folder ({exc.strerror})") from None
        # Owner-only from the first byte. Only for a new file: closing any descriptor of a file
        # drops every POSIX lock this process holds on it, SQLite's own included, and a process
        # with another connection open would then lose its WAL to a checkpoint elsewhere.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process created it meanwhile
            pass
        except OSError as exc:
            raise store_error(exc, path) from None
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None, factory=Store)
        db.path = path
        db.row_factory = sqlite3.Row
        _wal(db)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA recursive_triggers = ON")
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        db.execute("PRAGMA cache_size = -16000")  # 16 MB: a large import's trigger lookups stay in memory
        migrate(db)
        reap_dead_runs(db)
    except StoreError:
        raise
    except sqlite3.DatabaseError as exc:
        raise store_error(exc, path, "cannot open the store") from None
    for suffix in ("", "-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            with contextlib.suppress(OSError):
                os.chmod(side, 0o600)
    return db


def _writer_note(db: sqlite3.Connection) -> Path | None:
    path = getattr(db, "path", None)
    return Path(f"{path}.writer") if path and str(path) != "." else None


def store_error(exc: BaseException, path: object = None, what: str = "") -> StoreError:
    """A one-line :class:`StoreError` for an SQLite or OS error: busy, disk full, read-only."""
    text = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
    lower = text.lower()
    where = f"{path}: " if path else ""
    if "locked" in lower or "busy" in lower:
        return StoreError(f"{where}the store is busy with another write; retry in a moment")
    if "full" in lower or getattr(exc, "errno", None) == 28:
        return StoreError(f"{where}the disk is full: the store cannot be written (free some space and retry)")
    if "readonly" in lower or "read-only" in lower or "permission" in lower or "unable to open" in lower:
        return StoreError(f"{where}the store cannot be written here ({text}); check the permissions of the home")
    return StoreError(f"{where}{what + ' ' if what else ''}({text})".strip())


@contextmanager
def transaction(db: sqlite3.Connection, purpose: str = "a write") -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is stored, or none of it.

    ``BEGIN IMMEDIATE`` takes the write lock at once (waiting up to ``BUSY_TIMEOUT``); when
    another process holds it that long, the :class:`StoreError` says what it is doing (the
    holder leaves a note beside the store while it writes). A full disk or a read-only
    store is a :class:`StoreError` too; the transaction is rolled back."""
    note = _writer_note(db)
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        error = store_error(exc, getattr(db, "path", None))
        if "busy" in str(error) and note is not None:
            with contextlib.suppress(OSError):
                holder = note.read_text(encoding="utf-8").strip()
                if holder:
                    error = StoreError(f"the store is busy with {holder}; retry in a moment")
        raise error from None
    if note is not None:
        with contextlib.suppress(OSError):
            fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only, like the store
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(f"{purpose} (process {os.getpid()})")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError):
            raise store_error(exc, getattr(db, "path", None)) from None
        raise
    finally:
        if note is not None:
            with contextlib.suppress(OSError):
                note.unlink()


# -- runs of dead processes -------------------------------------------------------------


def process_token(pid: int | None = None) -> str:
    """Who a process is: host, pid and start time (so a reused pid is not mistaken for it,
    and a run of another machine sharing the home is never judged from this one)."""
    pid = os.getpid() if pid is None else pid
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return f"{socket.gethostname()}:{pid}:{start}"


def process_alive(token: str | None) -> bool:
    """True when the process a :func:`process_token` names still runs (unknown, or on
    another host: assume it does)."""
    if not token or token.count(":") < 2:
        return True
    host, pid_text, start = token.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    return not start or process_token(pid) == token


def discard_run(db: sqlite3.Connection, run_id: int, status: str) -> None:
    """End a run that did not complete (inside the caller's transaction): remove its
    predictions and the clues that only it brought, and mark it ``status``."""
    db.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
    own = ("SELECT clue_key FROM clues WHERE first_run = ? AND clue_key NOT IN (SELECT clue_key FROM overrides) "
           "AND clue_key NOT IN (SELECT clue_key FROM predictions WHERE clue_key IS NOT NULL)")
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clue_signatures'").fetchone():
        db.execute(f"DELETE FROM clue_signatures WHERE clue_key IN ({own})", (run_id,))
    db.execute(f"DELETE FROM clues WHERE clue_key IN ({own})", (run_id,))
    db.execute("UPDATE runs SET status = ?, finished = ? WHERE run_id = ? AND status = 'running'",
               (status, now(), run_id))


@dataclass
class DeadRun:
    run_id: int
    output_path: str | None
    pid: int | None


def reap_dead_runs(db: sqlite3.Connection) -> list[DeadRun]:
    """Mark ``interrupted`` every run left ``running`` by a process that no longer exists
    (killed, or the machine went down), with its predictions and its own clues removed;
    return them so the caller can clean their temporary files."""
    if "process" not in {r[1] for r in db.execute("PRAGMA table_info(runs)")}:
        return []  # a store from before m011 (only while migrating in steps)
    candidates = [DeadRun(r["run_id"], r["output_path"], r["pid"]) for r in
                  db.execute("SELECT run_id, output_path, pid, process FROM runs WHERE status = 'running'")
                  if not process_alive(r["process"])]
    if candidates:
        with transaction(db, "marking interrupted runs"):
            for run in candidates:
                discard_run(db, run.run_id, "interrupted")
        for run in candidates:
            if run.output_path and run.pid:
                remove_temp_files(Path(run.output_path), run.pid)
    return candidates
