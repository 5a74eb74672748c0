"""Sign-in links, sessions and CSRF tokens of the review page (pipeline/review/sessions.py)."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.errors import StoreError
from pipeline.review.review import add_reviewer
from pipeline.review.sessions import (
    SignInError,
    check_csrf,
    end_session,
    find_session,
    issue_signin_token,
    purge_expired,
    redeem_signin_token,
    signin_reviewer,
)
from pipeline.store.store import connect


@pytest.fixture
def db(home):
    connection = connect(home.db_path)
    add_reviewer(connection, "zhang", "张三")
    yield connection
    connection.close()


def test_a_sign_in_link_works_once_and_opens_a_session(db):
    token = issue_signin_token(db, "zhang")
    assert signin_reviewer(db, token) == "zhang"  # the confirmation page does not use it up
    session = redeem_signin_token(db, token)
    assert (session.reviewer_id, session.reviewer_name) == ("zhang", "张三")
    assert find_session(db, session.session_id) == session
    with pytest.raises(SignInError, match="already used"):
        redeem_signin_token(db, token)
    with pytest.raises(SignInError, match="already used"):
        signin_reviewer(db, token)


def test_only_hashes_of_secrets_are_stored(db):
    token = issue_signin_token(db, "zhang")
    session = redeem_signin_token(db, token)
    dump = "\n".join(db.iterdump())
    assert token not in dump and session.session_id not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump


@pytest.mark.parametrize("token", ["", "nope", "x" * 43])
def test_an_unknown_sign_in_token_is_refused(db, token):
    with pytest.raises(SignInError, match="not valid"):
        redeem_signin_token(db, token)


def test_an_expired_link_or_session_is_refused(db):
    token = issue_signin_token(db, "zhang", minutes=1)
    db.execute("UPDATE signin_tokens SET expires = '2000-01-01T00:00:00+00:00'")
    with pytest.raises(SignInError, match="expired"):
        redeem_signin_token(db, token)
    session = redeem_signin_token(db, issue_signin_token(db, "zhang"), hours=-1)
    assert find_session(db, session.session_id) is None


def test_links_only_for_known_reviewers(db):
    with pytest.raises(StoreError, match="unknown reviewer"):
        issue_signin_token(db, "nobody")
    with pytest.raises(SignInError, match="more than 0 minutes"):
        issue_signin_token(db, "zhang", minutes=0)


def test_sign_out_ends_the_session_and_purge_forgets_it(db):
    session = redeem_signin_token(db, issue_signin_token(db, "zhang"))
    other = redeem_signin_token(db, issue_signin_token(db, "zhang"))
    end_session(db, session.session_id)
    assert find_session(db, session.session_id) is None
    assert find_session(db, other.session_id) is not None  # another browser stays signed in
    assert find_session(db, None) is None and find_session(db, "") is None
    assert purge_expired(db) == 3  # two used links and the ended session
    assert find_session(db, other.session_id) is not None


def test_csrf_token_is_per_session(db):
    one = redeem_signin_token(db, issue_signin_token(db, "zhang"))
    two = redeem_signin_token(db, issue_signin_token(db, "zhang"))
    assert one.csrf != two.csrf
    assert check_csrf(one, one.csrf)
    assert not check_csrf(one, two.csrf)
    assert not check_csrf(one, None) and not check_csrf(one, "")
