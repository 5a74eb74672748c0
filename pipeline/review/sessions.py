"""Sign-in for the review page: one-time sign-in links, browser sessions, CSRF tokens.

A person signs in to ``clue-triage serve`` with a link that an administrator prints at the
terminal (``clue-triage reviewers token ID``): :func:`issue_signin_token` returns a random
token that works once, within a few minutes. :func:`redeem_signin_token` turns it into a
:class:`Session`, whose random id goes into an HttpOnly cookie; every later request finds
the session again with :func:`find_session`, which is where the reviewer's identity comes
from (never from a form). Each session carries its own CSRF token, which every form echoes
and :func:`check_csrf` compares in constant time.

Only the sha256 of a sign-in token or of a session id is stored, so a copy of the database
(or of a backup) signs nobody in. Every failure raises :class:`SignInError` with a message
a person can act on; the page turns it into a 401.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import ClueTriageError
from ..store.store import now, transaction
from .review import get_reviewer

SIGNIN_MINUTES = 30
SESSION_HOURS = 12


class SignInError(ClueTriageError):
    """A sign-in link or session that cannot be used (unknown, used, expired, ended)."""

    exit_code = 2


@dataclass(frozen=True)
class Session:
    """A signed-in browser. ``session_id`` is the cookie's value; only its hash is stored."""

    session_id: str
    reviewer_id: str
    reviewer_name: str
    csrf: str
    expires: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat(timespec="seconds")


def issue_signin_token(db: sqlite3.Connection, reviewer_id: str, minutes: float = SIGNIN_MINUTES) -> str:
    """A new one-time sign-in token for a known reviewer, valid for ``minutes``.

    Put it in a link (``/signin?token=…``) and hand it to that person only: whoever opens
    the link first is signed in as the reviewer.
    """
    get_reviewer(db, reviewer_id)
    if minutes <= 0:
        raise SignInError("a sign-in link must be valid for more than 0 minutes")
    token = secrets.token_urlsafe(32)
    with transaction(db):
        db.execute("INSERT INTO signin_tokens VALUES (?, ?, ?, ?, NULL)",
                   (_digest(token), reviewer_id, now(), _later(minutes=minutes)))
    return token


def signin_reviewer(db: sqlite3.Connection, token: str) -> str:
    """The reviewer a sign-in token is for, without using it up (for the confirmation page)."""
    row = db.execute("SELECT * FROM signin_tokens WHERE token_sha256 = ?", (_digest(token),)).fetchone()
    _check_token(row)
    return str(row["reviewer_id"])


def _check_token(row: sqlite3.Row | None) -> None:
    if row is None:
        raise SignInError("this sign-in link is not valid; ask for a new one (clue-triage reviewers token ID)")
    if row["used"] is not None:
        raise SignInError("this sign-in link was already used; each link works once; ask for a new one")
    if row["expires"] <= now():
        raise SignInError("this sign-in link has expired; ask for a new one")


def redeem_signin_token(db: sqlite3.Connection, token: str, hours: float = SESSION_HOURS) -> Session:
    """Use up a sign-in token and open a session of ``hours`` for its reviewer.

    Checked and marked used in one write transaction: two browsers opening the same link
    at once get one session between them.
    """
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(db):
        row = db.execute("SELECT * FROM signin_tokens WHERE token_sha256 = ?", (_digest(token),)).fetchone()
        _check_token(row)
        db.execute("UPDATE signin_tokens SET used = ? WHERE token_sha256 = ?", (now(), row["token_sha256"]))
        expires = _later(hours=hours)
        db.execute("INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?, NULL)",
                   (_digest(session_id), row["reviewer_id"], csrf, now(), expires))
    reviewer = get_reviewer(db, row["reviewer_id"])
    return Session(session_id, reviewer.reviewer_id, reviewer.name, csrf, expires)


def find_session(db: sqlite3.Connection, session_id: str | None) -> Session | None:
    """The open session with this id, or None (no id, unknown, ended or expired)."""
    if not session_id:
        return None
    row = db.execute("SELECT s.*, r.name FROM web_sessions s JOIN reviewers r ON r.reviewer_id = s.reviewer_id "
                     "WHERE s.session_sha256 = ?", (_digest(session_id),)).fetchone()
    if row is None or row["ended"] is not None or row["expires"] <= now():
        return None
    return Session(session_id, row["reviewer_id"], row["name"], row["csrf"], row["expires"])


def end_session(db: sqlite3.Connection, session_id: str) -> None:
    """Sign out: the session id stops working at once."""
    with transaction(db):
        db.execute("UPDATE web_sessions SET ended = ? WHERE session_sha256 = ? AND ended IS NULL",
                   (now(), _digest(session_id)))


def check_csrf(session: Session, submitted: str | None) -> bool:
    """Whether a form's CSRF token is this session's (constant-time comparison)."""
    return bool(submitted) and hmac.compare_digest(session.csrf.encode(), str(submitted).encode())


def purge_expired(db: sqlite3.Connection) -> int:
    """Forget expired sign-in tokens and ended or expired sessions; return how many rows."""
    stamp = now()
    with transaction(db):
        gone = db.execute("DELETE FROM signin_tokens WHERE expires <= ? OR used IS NOT NULL", (stamp,)).rowcount
        gone += db.execute("DELETE FROM web_sessions WHERE expires <= ? OR ended IS NOT NULL", (stamp,)).rowcount
    return gone
