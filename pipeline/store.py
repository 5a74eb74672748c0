"""The review store: SQLite in the home, with numbered migrations.

Tables: ``runs`` (one per triage), ``clues`` (content-addressed by unit + normalised text,
so the same clue triaged twice is one clue), ``predictions`` (one per run and input row),
``reviewers`` and ``recusals``, and ``overrides``: every reviewer decision and adjudication,
append-only. Triggers refuse UPDATE and DELETE on ``overrides``: corrections are evidence
and are never changed after the fact; a later decision is a new row.
The review page (``clue-triage serve``) adds ``signin_tokens``, ``web_sessions``, ``leases``
and ``skips``: working state of the page, not evidence, so these rows do change.

WAL mode lets reviewers read while a triage writes; writes are short transactions.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .errors import StoreError
from .normalize import normalize


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def clue_key(unit: str, text: str) -> str:
    """Stable key of a clue: its unit and normalised text."""
    return key_of_normalized(normalize(unit), normalize(text))


def key_of_normalized(unit: str, text: str) -> str:
    """:func:`clue_key` of a unit and text that are already normalised (triage has them)."""
    return hashlib.sha256(f"{unit}\n{text}".encode()).hexdigest()[:20]


def unit_key(unit: str) -> str:
    """Units compare after normalisation, so 東城分局 and 东城分局 are one unit."""
    return normalize(unit).replace(" ", "")


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


def m030_web_sessions(db: sqlite3.Connection) -> None:
    """Sign-in for the review page (``clue-triage serve``): one-time sign-in tokens and
    browser sessions, each stored as the sha256 of its secret so a copy of the database
    signs nobody in. See :mod:`pipeline.sessions`."""
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
    :mod:`pipeline.leases`."""
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


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_initial, m002_override_guards, m030_web_sessions, m031_review_leases,
)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``; return their names."""
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    applied = []
    for migration in MIGRATIONS:
        with transaction(db):
            # read inside the write transaction: two processes opening a new store must not
            # both apply the same migration
            if db.execute("SELECT 1 FROM _migrations WHERE name = ?", (migration.__name__,)).fetchone():
                continue
            migration(db)
            db.execute("INSERT INTO _migrations VALUES (?, ?)", (migration.__name__, now()))
        applied.append(migration.__name__)
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


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating owner-only if new) and migrate the store."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only from the first byte. Only for a new file: closing any descriptor of a file
    # drops every POSIX lock this process holds on it, SQLite's own included, and a process
    # with another connection open would then lose its WAL to a checkpoint elsewhere.
    if not path.exists():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process created it meanwhile
            pass
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        _wal(db)
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 30000")
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the store ({exc})") from None
    for suffix in ("", "-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.chmod(side, 0o600)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is stored, or none of it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
