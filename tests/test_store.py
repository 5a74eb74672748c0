"""The review store: migrations, schema, WAL, permissions and the append-only overrides."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from pipeline.store.store import (
    MIGRATIONS,
    append_overrides,
    clue_key,
    connect,
    migrate,
    now,
    transaction,
    unit_key,
)

TABLES = {
    "runs": {"run_id", "started", "finished", "status", "model_version", "input_path", "input_sha256", "row_count",
             "pid", "process", "output_path", "round_id"},
    "clues": {"clue_key", "clue_id", "unit", "unit_key", "text", "first_run", "group_key"},
    "predictions": {"run_id", "row_number", "clue_key", "clue_id", "status", "attention", "attention_conf", "area",
                    "area_conf", "margin", "needs_review", "key_terms", "handover", "model_version"},
    "reviewers": {"reviewer_id", "name", "created"},
    "recusals": {"reviewer_id", "unit_key", "unit", "created", "ended", "end_reason"},
    "overrides": {"override_id", "clue_key", "head", "kind", "predicted_label", "predicted_conf", "model_version",
                  "run_id", "old_label", "new_label", "reviewer_id", "reason", "channel", "import_sha256", "created",
                  "prev_sha256", "row_sha256"},
    "_migrations": {"name", "applied"},
    # the review page's working state (m030, m031)
    "signin_tokens": {"token_sha256", "reviewer_id", "created", "expires", "used"},
    "web_sessions": {"session_sha256", "reviewer_id", "csrf", "created", "expires", "ended"},
    "leases": {"clue_key", "reviewer_id", "expires"},
    "skips": {"reviewer_id", "clue_key", "until"},
}
TRIGGERS = {"overrides_no_update", "overrides_no_delete", "overrides_known_label", "overrides_not_recused",
            "overrides_append_only", "overrides_chained",
            *(f"{table}_no_{verb}" for table in ("reviewers", "recusals", "clues", "predictions")
              for verb in ("update", "delete", "replace")),
            "runs_no_replace", "runs_no_delete", "runs_finished_records",
            # the workflow's tables under the same guards (m020_…, m021_…, m023_…)
            *(f"{table}_no_{verb}" for table in ("units", "unit_aliases", "rounds", "round_units", "assignments")
              for verb in ("update", "delete", "replace")),
            "recusal_log_no_update", "recusal_log_no_delete", "runs_round_fixed"}
#: the tables of later migrations are checked in the tests of their modules
#: (m020_…: tests/test_units.py; m021_…: tests/test_rounds.py; m022_…, m024_…, m025_…: tests/test_repeats.py)


@pytest.fixture
def db(home):
    connection = connect(home.db_path)
    yield connection
    connection.close()


def _clue_and_reviewer(db, unit="某市生態環境局東城分局"):
    key = clue_key(unit, "反映某科長收受購物卡")
    with transaction(db):
        db.execute("INSERT INTO clues (clue_key, clue_id, unit, unit_key, text) VALUES (?, 'C1', ?, ?, '反映某科長收受購物卡')", (key, unit, unit_key(unit)))
        db.execute("INSERT INTO reviewers VALUES ('zhang', '张三', ?)", (now(),))
    return key


def _override(db, key, label="further", reviewer="zhang", head="attention"):
    with transaction(db):
        return append_overrides(db, [{"clue_key": key, "head": head, "kind": "review", "new_label": label,
                                      "reviewer_id": reviewer, "channel": "cli", "created": now()}])[0]


def test_schema_after_migrations(db):
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    assert tables >= set(TABLES)
    for table, columns in TABLES.items():
        assert {r[1] for r in db.execute(f"PRAGMA table_info({table})")} == columns, table
    triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers >= TRIGGERS
    applied = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
    names = [m.__name__ for m in MIGRATIONS]
    assert applied == names == sorted(names) == ["m001_initial", "m002_override_guards",
                                                  "m010_identifier_keys", "m011_audit_guards",
                                                  "m020_units_and_recusal_ends", "m021_rounds",
                                                  "m022_repeat_groups", "m023_assignments",
                                                  "m024_canonical_texts", "m025_signatures_by_text_hash",
                                                  "m030_web_sessions", "m031_review_leases"]


def test_migrations_apply_once(home, db):
    assert migrate(db) == []
    again = connect(home.db_path)
    assert again.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)
    again.close()


def test_wal_mode_and_owner_only_files(home, db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    _clue_and_reviewer(db)
    db.close()
    connect(home.db_path).close()
    for path in home.db_path.parent.glob(home.db_path.name + "*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_update_of_an_override_row_fails(db):
    key = _clue_and_reviewer(db)
    row_id = _override(db, key)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE overrides SET new_label = 'reference' WHERE override_id = ?", (row_id,))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM overrides WHERE override_id = ?", (row_id,))
    assert [tuple(r) for r in db.execute("SELECT new_label FROM overrides")] == [("further",)]


def test_overrides_refuse_unknown_labels(db):
    key = _clue_and_reviewer(db)
    with pytest.raises(sqlite3.IntegrityError, match="unknown label"):
        _override(db, key, label="policy", head="attention")
    with pytest.raises(sqlite3.IntegrityError, match="unknown label"):
        _override(db, key, label="further", head="area")
    _override(db, key, label="policy", head="area")
    assert db.execute("SELECT COUNT(*) FROM overrides").fetchone()[0] == 1


def test_overrides_refuse_a_recused_reviewer_whatever_the_script(db):
    key = _clue_and_reviewer(db, unit="某市生態環境局東城分局")
    with transaction(db):
        db.execute("INSERT INTO recusals (reviewer_id, unit_key, unit, created) VALUES ('zhang', ?, '某市生态环境局东城分局', ?)",
                   (unit_key("某市生态环境局东城分局"), now()))
    with pytest.raises(sqlite3.IntegrityError, match="recused"):
        _override(db, key)
    assert db.execute("SELECT COUNT(*) FROM overrides").fetchone()[0] == 0


def test_a_failed_transaction_stores_nothing(db):
    key = _clue_and_reviewer(db)
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        row = {"clue_key": key, "head": "area", "kind": "review", "reviewer_id": "zhang", "channel": "cli",
               "created": now()}
        append_overrides(db, [{**row, "new_label": "policy"}])
        append_overrides(db, [{**row, "new_label": "bogus"}])
    assert db.execute("SELECT COUNT(*) FROM overrides").fetchone()[0] == 0


def test_keys_ignore_script_width_and_spacing():
    assert unit_key("某市生態環境局 東城分局") == unit_key("某市生态环境局东城分局")
    assert clue_key("東城分局", "收受購物卡２萬元") == clue_key("东城分局", "收受购物卡2万元")
    assert clue_key("東城分局", "收受購物卡") != clue_key("西城分局", "收受購物卡")


def _open_store(path):
    from pipeline.store.store import connect

    connect(path).close()


def test_several_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    import multiprocessing
    import sqlite3

    ctx = multiprocessing.get_context("fork")
    for trial in range(5):
        path = tmp_path / f"new-{trial}.db"
        workers = [ctx.Process(target=_open_store, args=(path,)) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]
        names = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM _migrations ORDER BY name")]
        assert names == sorted(set(names)) and names


def test_a_second_connection_does_not_cost_the_first_its_locks(home):
    """Opening the store again in a process must not drop the POSIX locks of its open
    connections; else another process, closing, thinks it is the last one, removes the WAL
    and the first connection reads a stale database from then on (seen with the review
    page: one connection per worker thread, sign-in links issued from the terminal)."""
    import subprocess
    import sys

    first = connect(home.db_path)
    first.execute("CREATE TABLE probe (n INTEGER)")
    opened = [first, connect(home.db_path)]  # e.g. two worker threads of the page
    code = ("import sys; from pipeline.store.store import connect; db = connect(sys.argv[1]); "
            "db.execute('INSERT INTO probe VALUES (1)'); db.close()")
    seen = []
    for _ in range(3):
        subprocess.run([sys.executable, "-c", code, str(home.db_path)], check=True)  # e.g. reviewers token
        seen.append([db.execute("SELECT COUNT(*) FROM probe").fetchone()[0] for db in opened])
        opened.append(connect(home.db_path))  # another thread comes along
    assert seen == [[1, 1], [2, 2, 2], [3, 3, 3, 3]]
    for db in opened:
        db.close()
