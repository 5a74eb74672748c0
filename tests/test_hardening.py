"""Issue 11 (hardening): each numbered case reproduced, and shown fixed.

1. the audit trail cannot be rewritten (guards, hash chain, `verify`, orphans);
2. recusal cannot be slipped past (one identifier fold, reviewer ids, merged cells);
3. characters XML 1.0 forbids never make a workbook unreadable;
4. CSV output defuses formulas;
5. short write locks, migrations only when behind, a clear "busy" message;
6. SIGTERM / kill -9 leave no worker, no temporary file, no run `running` (tests/test_kill.py);
7. one line and exit 2 instead of a traceback;
9. silent quality problems are said (garbled text, other sheets, formulas, cut cells,
   control characters);
10. the smaller ones (registry numbering, failed runs' clues, home mode, UTF-16LE, output
    folder, an empty home).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import time
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError, StoreError
from pipeline.intake.io import open_clue_file
from pipeline.intake.triage import classify_texts, triage_file
from pipeline.paths import Home
from pipeline.review.review import (
    add_reviewer,
    disputes,
    find_clue,
    history,
    list_reviewers,
    record_decision,
    resolve,
    review_stats,
)
from pipeline.review.workbooks import export_review_sheet, import_review_sheet, write_handover
from pipeline.store import store as store_mod
from pipeline.store.audit import verify_store
from pipeline.store.store import connect, transaction, unit_key

runner = CliRunner()
DONGCHENG = "某市生态环境局东城分局"
NANHU = "某市生态环境局南湖县分局"
CLUES = [
    ("C01", DONGCHENG, "反映东城分局副局长王某2023年春节前收受辖区企业购物卡2万元，并为该企业环评验收开绿灯。"),
    ("C02", DONGCHENG, "举报局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("C03", NANHU, "部分乡镇对散乱污企业整治态度不坚决，存在关停后又死灰复燃的情况。"),
    ("C04", NANHU, "上一轮巡察反馈的公务用车管理问题，整改台账只有表态没有措施，至今未见成效。"),
]


def write_csv(path: Path, header: list[str], rows: list[list[str]] | list[tuple[str, ...]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def cli(home: Home, *args: str):
    return runner.invoke(app, ["--home", str(home.root), *args])


def one_line_error(result, code: int = 2) -> str:
    """The CLI failed with one line on stderr and the exit code; no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr + result.stdout
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # at most a progress note before it
    return errors[0]


@pytest.fixture
def triaged(model_home: Home, tmp_path: Path):
    """A store with one complete run of CLUES and three reviewers; zhang recused from 东城."""
    source = write_csv(tmp_path / "clues.csv", ["编号", "被巡察单位", "线索内容"], CLUES)
    triage_file(model_home, source, tmp_path / "clues.triaged.csv", workers=1)
    db = connect(model_home.db_path)
    add_reviewer(db, "zhang", "张三", [DONGCHENG])
    add_reviewer(db, "li", "李四")
    add_reviewer(db, "wu", "吴五")
    yield db
    db.close()


def attacker(home: Home) -> sqlite3.Connection:
    """A plain sqlite3 connection as a person with the sqlite3 shell would open one:
    no recursive triggers, no foreign keys."""
    return sqlite3.connect(home.db_path, isolation_level=None)


def _decide_both(db) -> str:
    key = find_clue(db, "C03")
    record_decision(db, key, "li", {"attention": "further", "area": "discipline"})
    record_decision(db, key, "wu", {"attention": "aware", "area": "discipline"}, reason="second opinion")
    record_decision(db, key, "zhang", {"attention": "aware", "area": "policy"})
    return key


# -- 1. the audit trail cannot be rewritten ----------------------------------------------


def test_replace_into_overrides_is_refused_and_history_keeps_the_decision(triaged, model_home):
    key = _decide_both(triaged)
    before = [tuple(r) for r in triaged.execute("SELECT * FROM overrides ORDER BY override_id")]
    forged = attacker(model_home)
    with pytest.raises(sqlite3.IntegrityError, match="append-only|hash chain"):
        forged.execute("REPLACE INTO overrides (override_id, clue_key, head, kind, new_label, reviewer_id, channel, "
                       "created) VALUES (1, ?, 'attention', 'review', 'reference', 'li', 'cli', 'x')", (key,))
    with pytest.raises(sqlite3.IntegrityError, match="append-only|hash chain"):
        forged.execute("INSERT OR REPLACE INTO overrides (override_id, clue_key, head, kind, new_label, reviewer_id, "
                       "channel, created) VALUES (2, ?, 'attention', 'review', 'reference', 'li', 'cli', 'x')", (key,))
    assert [tuple(r) for r in triaged.execute("SELECT * FROM overrides ORDER BY override_id")] == before
    _state, trail = history(triaged, "C03")
    assert [e.label for e in trail if e.actor == "li" and e.head == "attention"] == ["further"]


AUDIT_WRITES = [
    ("recusals", "DELETE FROM recusals"),
    ("recusals", "UPDATE recusals SET unit_key = 'elsewhere'"),
    ("recusals", "REPLACE INTO recusals (reviewer_id, unit_key, unit, created) "
                 "SELECT reviewer_id, unit_key, 'x', created FROM recusals"),
    ("reviewers", "DELETE FROM reviewers WHERE reviewer_id = 'zhang'"),
    ("reviewers", "UPDATE reviewers SET name = 'someone else'"),
    ("reviewers", "REPLACE INTO reviewers VALUES ('zhang', 'forged', 'x')"),
    ("clues", "UPDATE clues SET text = 'forged text'"),
    ("clues", "UPDATE clues SET unit_key = 'elsewhere'"),
    ("clues", "DELETE FROM clues"),
    ("clues", "REPLACE INTO clues (clue_key, clue_id, unit, unit_key, text, first_run) "
              "SELECT clue_key, clue_id, unit, 'elsewhere', text, first_run FROM clues"),
    ("predictions", "UPDATE predictions SET attention = 'reference'"),
    ("predictions", "DELETE FROM predictions"),
    ("predictions", "REPLACE INTO predictions SELECT * FROM predictions"),
    ("runs", "UPDATE runs SET status = 'failed'"),
    ("runs", "UPDATE runs SET model_version = 'v99'"),
    ("runs", "DELETE FROM runs"),
    ("runs", "REPLACE INTO runs SELECT * FROM runs"),
    ("overrides", "DELETE FROM overrides"),
    ("overrides", "UPDATE overrides SET new_label = 'reference'"),
    ("overrides", "INSERT INTO overrides (clue_key, head, kind, new_label, reviewer_id, channel, created) "
                  "SELECT clue_key, head, kind, new_label, reviewer_id, channel, created FROM overrides LIMIT 1"),
]


@pytest.mark.parametrize("recursive", [False, True], ids=["plain-sqlite3", "recursive-triggers"])
@pytest.mark.parametrize(("table", "sql"), AUDIT_WRITES, ids=[sql[:40] for _t, sql in AUDIT_WRITES])
def test_audited_tables_refuse_update_delete_and_replace(triaged, model_home, table, sql, recursive):
    _decide_both(triaged)
    forged = attacker(model_home)
    if recursive:
        forged.execute("PRAGMA recursive_triggers = ON")
    before = [tuple(r) for r in forged.execute(f"SELECT * FROM {table}")]
    with pytest.raises(sqlite3.IntegrityError, match="audit trail|append-only|hash chain"):
        forged.execute(sql)
    assert [tuple(r) for r in forged.execute(f"SELECT * FROM {table}")] == before
    assert verify_store(triaged).ok


def test_every_connection_has_recursive_triggers_and_foreign_keys(home):
    db = connect(home.db_path)
    assert db.execute("PRAGMA recursive_triggers").fetchone()[0] == 1
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def _tamper(home: Home, *statements: str) -> None:
    """What someone with the file and the sqlite3 shell can still do: drop the guards first."""
    forged = attacker(home)
    names = [r[0] for r in forged.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]
    for name in names:
        forged.execute(f"DROP TRIGGER {name}")
    for sql in statements:
        forged.execute(sql)
    forged.close()


def test_hash_chain_and_verify_report_the_first_broken_link(triaged, model_home):
    _decide_both(triaged)
    report = verify_store(triaged)
    assert report.ok and report.overrides == 6
    rows = triaged.execute("SELECT prev_sha256, row_sha256 FROM overrides ORDER BY override_id").fetchall()
    assert rows[0][0] == "0" * 64 and all(rows[i][0] == rows[i - 1][1] for i in range(1, len(rows)))
    ok = cli(model_home, "verify")
    assert ok.exit_code == 0 and "hash chain whole" in ok.stdout
    _tamper(model_home, "UPDATE overrides SET new_label = 'reference' WHERE override_id = 3",
            "UPDATE overrides SET reason = 'forged' WHERE override_id = 5")
    report = verify_store(triaged)
    assert report.broken_id == 3 and "does not match its sha256" in str(report.broken)
    result = cli(model_home, "verify")
    assert result.exit_code == 1 and "BROKEN at override 3" in result.stdout


def test_verify_finds_a_removed_row_and_a_removed_tail(triaged, model_home):
    _decide_both(triaged)
    _tamper(model_home, "DELETE FROM overrides WHERE override_id = 2")
    assert verify_store(triaged).broken_id == 3
    _tamper(model_home, "DELETE FROM overrides WHERE override_id >= 5")
    triaged.close()
    db = connect(model_home.db_path)
    _tamper(model_home, "DELETE FROM overrides WHERE override_id >= 2")
    report = verify_store(db)
    assert report.broken_id == 2 and "removed from the end" in str(report.broken)


def test_orphans_are_reported_never_a_crash(triaged, model_home, tmp_path):
    _decide_both(triaged)
    _tamper(model_home, "DELETE FROM clues WHERE clue_id = 'C03'", "DELETE FROM reviewers WHERE reviewer_id = 'wu'")
    assert len(disputes(triaged)) == 0
    review_stats(triaged)
    export_review_sheet(triaged, tmp_path / "r.xlsx")
    write_handover(triaged, tmp_path / "h.xlsx")
    for args in (["review", "stats"], ["review", "disputes"], ["review", "export", "-o", str(tmp_path / "r2.xlsx")],
                 ["handover", "-o", str(tmp_path / "h2.xlsx")], ["reviewers", "list"]):
        result = cli(model_home, *args)
        assert result.exit_code == 0, (args, result.stderr)
        if args[0] != "reviewers":
            assert "warning: 9 record(s) refer to" in result.stderr and "clue-triage verify" in result.stderr
    report = verify_store(triaged)
    assert any("not in the store" in o for o in report.orphans)
    assert any("reviewer wu" in o for o in report.orphans)
    result = cli(model_home, "verify")
    assert result.exit_code == 1 and "orphan: override" in result.stdout


# -- 2. recusal cannot be slipped past ---------------------------------------------------

INVISIBLE = ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2060", "\u2061",
             "\u2062", "\u2063", "\u2064", "\u2066", "\u2069", "\u206a", "\u3164", "\uffa0", "\ufe00", "\ufe0f",
             "\ufeff", "\U000e0001", "\U000e0041", "\U000e0100", "\u034f", "\u180e", "\u115f", "\u1160"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_characters_do_not_make_another_unit(char):
    assert unit_key(DONGCHENG[:4] + char + DONGCHENG[4:] + char) == unit_key(DONGCHENG)


def test_width_case_and_script_fold_to_one_unit():
    assert unit_key("ＡＢＣ東城分局") == unit_key("abc东城分局") == unit_key(" Abc 东城\u200b分局 ")


def test_reviewer_ids_fold_to_one_and_are_restricted(home):
    db = connect(home.db_path)
    add_reviewer(db, "zhang", "张三")
    for lookalike in ("Zhang", "zhang\u200b", "ＺＨＡＮＧ", "\u2060zhang\ufe0f"):
        assert add_reviewer(db, lookalike, "张三").reviewer_id == "zhang"
        with pytest.raises(StoreError, match="not renamed"):
            add_reviewer(db, lookalike, "张四")
    assert [r.reviewer_id for r in list_reviewers(db)] == ["zhang"]
    for bad in ("张三", "zh ang", "zhang!", "a/b", "", "\u200b"):
        with pytest.raises(InputError, match="a-z, 0-9"):
            add_reviewer(db, bad, "某人")


def test_a_lookalike_id_cannot_adjudicate_in_a_recused_unit(triaged):
    key = find_clue(triaged, "C01")  # 东城: zhang recused
    record_decision(triaged, key, "li", {"attention": "further"})
    record_decision(triaged, key, "wu", {"attention": "aware"})
    for lookalike in ("zhang", "Zhang", "zhang\u200b", "ｚｈａｎｇ"):
        with pytest.raises(StoreError, match="recused"):
            resolve(triaged, "C01", "attention", "further", lookalike, "looks like li")
        with pytest.raises(StoreError, match="recused"):
            record_decision(triaged, key, lookalike, {"attention": "further"})


def test_a_recusal_typed_with_invisible_characters_still_holds(triaged):
    add_reviewer(triaged, "chen", "陈六", ["某市生态环境局\u200b南湖县分局\u00ad"])
    with pytest.raises(StoreError, match="recused"):
        record_decision(triaged, find_clue(triaged, "C03"), "chen", {"attention": "further"})


def _merged_xlsx(path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    sheet.append(["编号", "被巡察单位", "线索内容"])
    for (ident, _unit, text), unit in zip(CLUES, [DONGCHENG, None, NANHU, None], strict=True):
        sheet.append([ident, unit, text])
    sheet.merge_cells("B2:B3")
    sheet.merge_cells("B4:B5")
    book.save(path)
    return path


def test_merged_unit_cells_carry_their_value_to_every_row(model_home, tmp_path):
    source = _merged_xlsx(tmp_path / "merged.xlsx")
    rows = list(open_clue_file(source).rows())
    assert [r.values["被巡察单位"] for r in rows] == [DONGCHENG, DONGCHENG, NANHU, NANHU]
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    db = connect(model_home.db_path)
    units = dict(db.execute("SELECT clue_id, unit FROM clues").fetchall())
    assert units == {"C01": DONGCHENG, "C02": DONGCHENG, "C03": NANHU, "C04": NANHU}
    add_reviewer(db, "zhang", "张三", [DONGCHENG])
    with pytest.raises(StoreError, match="recused"):
        record_decision(db, find_clue(db, "C02"), "zhang", {"attention": "further"})


# -- 3. characters XML 1.0 forbids -------------------------------------------------------

ILLEGAL = "\uffff\ufffe\x01\x0b\x1b"


def test_xml_illegal_characters_never_make_a_workbook_unreadable(model_home, tmp_path):
    rows = [(ident, unit + ILLEGAL, text[:10] + ILLEGAL + text[10:]) for ident, unit, text in CLUES]
    source = write_csv(tmp_path / "bad.csv", ["编号", "被巡察单位", "线索内容" + "\uffff"], rows)
    out = tmp_path / "bad.triaged.xlsx"
    result = cli(model_home, "triage", str(source), "-o", str(out), "--workers", "1")
    assert result.exit_code == 0, result.stderr
    db = connect(model_home.db_path)
    add_reviewer(db, "li", "李四")
    written = [out, tmp_path / "review.xlsx", tmp_path / "handover.xlsx"]
    export_review_sheet(db, written[1])
    write_handover(db, written[2])
    for path in written:
        book = load_workbook(path)  # the full reader: it parses every cell
        cells = [c.value for ws in book.worksheets for row in ws.iter_rows() for c in row]
        assert any(isinstance(v, str) and "收受辖区企业" in v for v in cells), path
        assert not any(isinstance(v, str) and any(ch in v for ch in ILLEGAL) for v in cells), path


# -- 4. formula injection in CSV ----------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def test_csv_output_defuses_formulas_in_every_column(model_home, tmp_path):
    rows = [(f, f, f"{f}反映东城分局副局长王某收受辖区企业购物卡2万元。") for f in FORMULAS]
    source = write_csv(tmp_path / "f.csv", ["编号", "=note", "线索内容"], rows)
    out = tmp_path / "f.triaged.csv"
    triage_file(model_home, source, out, workers=1)
    got = read_csv(out)
    assert "'=note" in got[0]
    for formula, row in zip(FORMULAS, got, strict=True):
        assert row["id"] == "'" + formula.strip() and row["'=note"] == "'" + formula
        assert row["线索内容"] == "'" + formula + "反映东城分局副局长王某收受辖区企业购物卡2万元。"
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values())


# -- 5. short write locks ----------------------------------------------------------------


def test_an_up_to_date_store_opens_while_another_process_writes(home):
    connect(home.db_path).close()
    writer = connect(home.db_path)
    with transaction(writer, "a long review import"):
        started = time.perf_counter()
        reader = connect(home.db_path)  # no migration to run: no write lock wanted
        assert time.perf_counter() - started < 1
        reader.close()


def test_a_busy_store_says_what_holds_it(home, monkeypatch):
    connect(home.db_path).close()
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT", 0.2)
    holder, other = connect(home.db_path), connect(home.db_path)
    with transaction(holder, "a review import by zhang (20,000 decisions)"):
        started = time.perf_counter()
        with pytest.raises(StoreError, match=r"busy with a review import by zhang .*retry"):
            add_reviewer(other, "li", "李四")
        assert time.perf_counter() - started < 2
    add_reviewer(other, "li", "李四")


def _big_store(home: Home, n: int) -> None:
    """n clues with predictions from one complete run, written straight into the store."""
    db = connect(home.db_path)
    with transaction(db):
        run = db.execute("INSERT INTO runs (started, status, model_version, input_path, input_sha256) "
                         "VALUES ('2026-01-01', 'running', 'v1', 'x', 'x')").lastrowid
        db.executemany("INSERT INTO clues (clue_key, clue_id, unit, unit_key, text, first_run) VALUES (?, ?, ?, ?, ?, ?)",
                       [(f"k{i:06d}", f"C{i}", NANHU, unit_key(NANHU), f"线索{i}", run) for i in range(n)])
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, 'ok', 'aware', 0.6, 'policy', 0.6, 0.1, 1, '', "
                       "'', 'v1')", [(run, i + 2, f"k{i:06d}", f"C{i}") for i in range(n)])
        db.execute("UPDATE runs SET status = 'complete' WHERE run_id = ?", (run,))
    add_reviewer(db, "zhang", "张三")
    db.close()


def _filled_sheet(path: Path, n: int) -> Path:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("复核")
    sheet.append(["id", "reviewed_attention", "reviewed_area", "reason", "run", "clue_key"])
    for i in range(n):
        sheet.append([f"C{i}", "further" if i % 2 else "reference", "discipline", "", 1, f"k{i:06d}"])
    book.save(path)
    return path


def test_a_20000_row_import_holds_the_write_lock_under_2_seconds(home, tmp_path):
    n = 20_000
    _big_store(home, n)
    sheet = _filled_sheet(tmp_path / "big.xlsx", n)
    db = connect(home.db_path)
    result = import_review_sheet(db, sheet, "zhang")
    assert sum(result.recorded.values()) == 2 * n
    assert result.lock_seconds < 2, result.lock_seconds
    assert verify_store(db).ok
    again = import_review_sheet(db, sheet, "Zhang")
    assert sum(again.recorded.values()) == 0 and again.unchanged == 2 * n


def test_an_import_checks_again_when_the_store_changed_meanwhile(triaged, tmp_path, monkeypatch):
    from pipeline.review import workbooks

    sheet = export_review_sheet(triaged, tmp_path / "r.xlsx") and tmp_path / "r.xlsx"
    book = load_workbook(sheet)
    book.active.cell(2, 10).value = "进一步了解"
    book.save(sheet)
    real, calls = workbooks._plan_import, []

    def racing(db, *args):
        calls.append(1)
        if len(calls) == 1:  # another reviewer decides while this import is being checked
            record_decision(db, find_clue(db, "C04"), "wu", {"attention": "aware"})
        return real(db, *args)

    monkeypatch.setattr(workbooks, "_plan_import", racing)
    import_review_sheet(triaged, sheet, "li")
    assert len(calls) == 2 and verify_store(triaged).ok


# -- 7. one line and exit 2, never a traceback --------------------------------------------


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_lone_surrogate_in_jsonl_does_not_sink_the_run(model_home, tmp_path):
    source = _jsonl(tmp_path / "s.jsonl", ['{"text": "反映东城分局副局长\\ud800王某收受购物卡2万元"}',
                                          '{"text": "\\udfff"}', '{"text\\ud800": 1, "text": "收受购物卡的问题线索"}'])
    for suffix in (".csv", ".jsonl", ".xlsx"):
        out = tmp_path / f"s.out{suffix}"
        result = cli(model_home, "triage", str(source), "-o", str(out), "--workers", "1")
        assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in rows] == ["ok", "no_text", "ok"]
    assert "\ufffd" in rows[0]["text"]


def _xlsx_with(path: Path, member: str, transform) -> Path:
    """A copy of a small workbook with one zip member rewritten."""
    source = path.with_suffix(".orig.xlsx")
    book = Workbook()
    book.active.append(["线索内容"])
    book.active.append(["反映东城分局副局长王某收受购物卡2万元"])
    book.save(source)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            zout.writestr(item, transform(data) if item.filename == member else data)
    return path


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>')


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "nested JSON": _jsonl(tmp_path / "deep.jsonl", ['{"text": "收受购物卡", "x": ' + deep + "}"]),
        "4,300-digit integer": _jsonl(tmp_path / "big.jsonl", ['{"text": "收受购物卡", "n": ' + "9" * 5000 + "}"]),
        "malformed sheet XML": _xlsx_with(tmp_path / "broken.xlsx", "xl/worksheets/sheet1.xml",
                                          lambda d: d[: len(d) // 2]),
        "DTD entities": _xlsx_with(tmp_path / "dtd.xlsx", "xl/worksheets/sheet1.xml",
                                   lambda d: BILLION_LAUGHS + d.split(b"?>", 1)[-1]),
        "malformed workbook XML": _xlsx_with(tmp_path / "wb.xlsx", "xl/workbook.xml", lambda d: d[:40]),
    }


@pytest.mark.parametrize("case", ["nested JSON", "4,300-digit integer", "malformed sheet XML", "DTD entities",
                                  "malformed workbook XML"])
def test_bad_files_are_one_line_and_exit_2(model_home, tmp_path, case):
    path = _bad_inputs(tmp_path)[case]
    one_line_error(cli(model_home, "triage", str(path), "-o", str(tmp_path / "out.csv")))
    if path.suffix == ".xlsx":
        db = connect(model_home.db_path)
        add_reviewer(db, "li", "李四")
        one_line_error(cli(model_home, "review", "import", str(path), "--reviewer", "li"))


class FullDisk(io.StringIO):
    """A file on a disk that has just filled up: writing fails, and so does the final flush."""

    def write(self, text):
        raise OSError(28, "No space left on device")

    def close(self):
        super().close()
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_full_disk_for_the_output_is_one_line(model_home, tmp_path, monkeypatch, suffix):
    import builtins

    source = write_csv(tmp_path / "in.csv", ["线索内容"], [[t] for _i, _u, t in CLUES])
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".tmp"):
            return FullDisk()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    line = one_line_error(cli(model_home, "triage", str(source), "-o", str(tmp_path / f"out{suffix}")))
    assert "No space left" in line
    monkeypatch.undo()
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / f"out{suffix}").exists()


def test_a_full_disk_for_the_store_says_so(model_home, tmp_path, monkeypatch):
    """The store's disk fills up in the middle of a run (SQLite: SQLITE_FULL)."""
    rows = [[f"{t}（第{i}条，补充说明{'很长的内容' * 20}）"] for i in range(3000) for t in (CLUES[i % 4][2],)]
    source = write_csv(tmp_path / "in.csv", ["线索内容"], rows)
    connect(model_home.db_path).close()
    real_connect = sqlite3.connect

    def filling(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 2}")  # a few pages left on the disk
        return db

    monkeypatch.setattr(store_mod.sqlite3, "connect", filling)
    line = one_line_error(cli(model_home, "triage", str(source), "-o", str(tmp_path / "out.csv"), "--workers", "1"))
    assert "disk is full" in line
    assert not (tmp_path / "out.csv").exists()


def test_bad_paths_are_one_line_and_exit_2(triaged, model_home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["review", "export", "-o", str(blocker / "r.xlsx")], ["review", "export", "-o", str(tmp_path / "no" / "r.xlsx")],
                 ["handover", "-o", str(blocker / "h.xlsx")], ["handover", "-o", str(tmp_path / "no" / "h.xlsx")],
                 ["evaluate", "--data", str(tmp_path / "missing.jsonl")], ["train", "--data", str(tmp_path / "missing.jsonl")],
                 ["train", "--data", str(blocker)], ["review", "import", str(tmp_path / "missing.xlsx"), "--reviewer", "li"]):
        one_line_error(cli(model_home, *args))


def test_a_read_only_home_is_one_line(model_home, tmp_path, monkeypatch):
    source = write_csv(tmp_path / "in.csv", ["线索内容"], [[t] for _i, _u, t in CLUES])
    real_connect = sqlite3.connect

    def read_only(path, *args, **kwargs):
        db = real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)
        return db

    connect(model_home.db_path).close()
    monkeypatch.setattr(store_mod.sqlite3, "connect", read_only)
    line = one_line_error(cli(model_home, "triage", str(source), "-o", str(tmp_path / "out.csv")))
    assert "cannot be written" in line or "read" in line


@pytest.mark.parametrize("content", ['{"champion": 5}', '{"champion": "v1", "artifacts": []}', '[1, 2]',
                                     '{"champion": "v1", "artifacts": {"v1": "x"}, "events": [1]}', "not json"])
def test_a_damaged_registry_is_one_line(model_home, tmp_path, content):
    (model_home.models / "registry.json").write_text(content, encoding="utf-8")
    source = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0][2]]])
    for args in (["triage", str(source)], ["models", "list"], ["models", "current"]):
        assert "registry" in one_line_error(cli(model_home, *args))


@pytest.mark.parametrize("content", ["not json", "[]", '{"format_version": '])
def test_a_manifest_that_is_not_json_is_one_line(model_home, tmp_path, content):
    (model_home.models / "v1" / "manifest.json").write_text(content, encoding="utf-8")
    source = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0][2]]])
    for args in (["triage", str(source)], ["models", "list"], ["models", "show", "v1"]):
        assert "manifest" in one_line_error(cli(model_home, *args))


# -- 9. silent quality problems -----------------------------------------------------------


def test_mojibake_is_garbled_not_classified(trained_home):
    from pipeline.model.corpus import load_corpus
    from pipeline.model.registry import Registry

    model = Registry(trained_home.models).load().model
    texts = [c.text for c in load_corpus()]
    garbled = [t.encode("utf-8").decode("gb18030", errors="replace") for t in texts[:300]]
    results = classify_texts(model, garbled)
    assert sum(r.status == "garbled" for r in results) / len(results) > 0.99
    assert all(not r.attention for r in results if r.status == "garbled")
    assert not [t for t, r in zip(texts, classify_texts(model, texts), strict=True) if r.status == "garbled"]


def test_clues_on_another_sheet_are_refused_naming_it(model_home, tmp_path):
    book = Workbook()
    book.active.append(["线索内容"])
    book.active.append([CLUES[0][2]])
    notes = book.create_sheet("说明")
    notes.append(["填表说明：每行一条线索"])
    second = book.create_sheet("第二批")
    second.append(["编号", "线索内容"])
    second.append(["C9", CLUES[1][2]])
    book.save(tmp_path / "two.xlsx")
    line = one_line_error(cli(model_home, "triage", str(tmp_path / "two.xlsx")))
    assert "第二批" in line and "说明" not in line
    book.remove(second)
    book.save(tmp_path / "one.xlsx")
    assert cli(model_home, "triage", str(tmp_path / "one.xlsx"), "--workers", "1").exit_code == 0


def test_a_formula_without_a_saved_value_is_said(model_home, tmp_path):
    book = Workbook()
    book.active.append(["编号", "线索内容"])
    book.active.append(["C1", CLUES[0][2]])
    book.active.append(["C2", "=B2"])  # openpyxl saves formulas without a cached value
    book.save(tmp_path / "f.xlsx")
    triage_file(model_home, tmp_path / "f.xlsx", tmp_path / "f.csv", workers=1)
    rows = read_csv(tmp_path / "f.csv")
    assert rows[1]["status"] == "empty" and "B3: a formula with no saved value" in rows[1]["status_detail"]
    assert "formula" not in rows[0]["status_detail"]


def test_a_cell_cut_in_xlsx_output_is_said(model_home, tmp_path):
    long_text = CLUES[0][2] * 800  # ~37,000 characters
    source = write_csv(tmp_path / "long.csv", ["线索内容"], [[long_text], [CLUES[1][2]]])
    triage_file(model_home, source, tmp_path / "long.xlsx", workers=1)
    sheet = load_workbook(tmp_path / "long.xlsx").active
    header = [c.value for c in sheet[1]]  # a workbook: Chinese headers
    detail = [row[header.index("状态说明")] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert "cut at 32,767 characters" in detail[0] and "cut" not in (detail[1] or "")


def test_control_characters_never_reach_the_terminal(model_home, tmp_path):
    evil = "\x1b]0;owned\x07\x1b[2J反映东城分局副局长王某收受购物卡2万元\x9b31m"
    source = write_csv(tmp_path / "e.csv", ["编号", "被巡察单位", "线索内容"], [("E1", "单位\x1b[5m", evil)])
    assert cli(model_home, "triage", str(source), "--workers", "1").exit_code == 0
    db = connect(model_home.db_path)
    key = find_clue(db, "E1")
    add_reviewer(db, "li", "李四")
    record_decision(db, key, "li", {"attention": "further"}, reason="see \x1b[31mred")
    shown = cli(model_home, "history", "E1")
    assert shown.exit_code == 0 and "收受购物卡" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout and "\x07" not in shown.stdout
    from commands.review import _Keys, _session

    class Keys(_Keys):
        def __init__(self):
            self.tty = False

        def key(self, prompt):
            return "q"

    import contextlib
    from collections import Counter

    from commands import common

    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        common.err.file = buffer
        try:
            add_reviewer(db, "wu", "吴五")
            _session(db, "wu", None, Keys(), Counter())
        finally:
            common.err.file = None  # back to sys.stderr
    assert "收受购物卡" in buffer.getvalue() and "\x1b" not in buffer.getvalue()


# -- 10. the smaller ones ---------------------------------------------------------------


def test_a_version_registered_without_its_folder_is_never_reused(model_home):
    from pipeline.model.registry import Registry

    registry = Registry(model_home.models)
    state = json.loads((model_home.models / "registry.json").read_text())
    state["artifacts"]["v2"] = "0" * 64  # killed between the registry write and the folder rename
    (model_home.models / "registry.json").write_text(json.dumps(state))
    loaded = registry.load()
    manifest = registry.save(loaded.model, {k: v for k, v in loaded.manifest.items() if k != "version"})
    assert manifest["version"] == "v3"
    registry.verify("v3")
    with pytest.raises(Exception, match="no model version 'v2'"):
        registry.verify("v2")


def test_a_failed_run_leaves_no_clues(model_home, tmp_path, monkeypatch):
    from pipeline.intake import triage as triage_mod

    source = write_csv(tmp_path / "in.csv", ["编号", "被巡察单位", "线索内容"], CLUES)
    monkeypatch.setattr(triage_mod, "STORE_EVERY", 1)
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 1)  # two clues are stored before the failure
    real = triage_mod.TableWriter.write_values
    calls = []

    def failing(self, values):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(self, values)

    monkeypatch.setattr(triage_mod.TableWriter, "write_values", failing)
    with pytest.raises(OSError):
        triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    db = connect(model_home.db_path)
    assert db.execute("SELECT status FROM runs").fetchall()[0][0] == "failed"
    assert db.execute("SELECT COUNT(*) FROM clues").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
    monkeypatch.setattr(triage_mod.TableWriter, "write_values", real)
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)  # the same clues come in again
    assert db.execute("SELECT COUNT(*) FROM clues").fetchone()[0] == 4


def test_an_existing_home_becomes_owner_only(model_home, tmp_path):
    import os

    os.chmod(model_home.root, 0o755)
    os.chmod(model_home.var, 0o755)
    assert cli(model_home, "models", "list").exit_code == 0
    assert stat.S_IMODE(model_home.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(model_home.var.stat().st_mode) == 0o700


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_read(model_home, tmp_path, encoding):
    text = "编号,线索内容\r\nC1,反映东城分局副局长王某收受购物卡2万元\r\nC2,部分乡镇整治态度不坚决\r\n"
    source = tmp_path / "u16.csv"
    source.write_bytes(text.encode(encoding))
    cf = open_clue_file(source)
    assert cf.encoding == encoding and [r.values["线索内容"][:2] for r in cf.rows()] == ["反映", "部分"]
    assert cli(model_home, "triage", str(source), "--workers", "1").exit_code == 0


def test_a_missing_output_folder_is_refused_not_created(model_home, tmp_path):
    source = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0][2]]])
    line = one_line_error(cli(model_home, "triage", str(source), "-o", str(tmp_path / "missing" / "dir" / "x.csv")))
    assert f"folder {tmp_path / 'missing' / 'dir'} does not exist" in line
    assert not (tmp_path / "missing").exists()


def test_an_empty_home_says_it_has_no_store(tmp_path):
    empty = Home(tmp_path / "empty")
    empty.root.mkdir()
    for args in (["handover", "-o", str(tmp_path / "h.xlsx")], ["review", "disputes"], ["history", "C1"],
                 ["review", "export", "-o", str(tmp_path / "r.xlsx")], ["verify"]):
        line = one_line_error(cli(empty, *args))
        assert "no store" in line
    assert not (tmp_path / "h.xlsx").exists()


def test_a_store_from_before_the_guards_is_migrated_and_chained(home, monkeypatch):
    """An existing store (m001 + m002 only) gets m010 and m011: data kept, units re-keyed,
    overrides chained in id order, every guard in place."""
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:2])
    old = connect(home.db_path)
    typed = "某市生态环境局\u200b东城分局"
    with transaction(old):
        old.execute("INSERT INTO runs (started, status, model_version, input_path, input_sha256, row_count) "
                    "VALUES ('2026-01-01', 'complete', 'v1', 'in.csv', 'x', 1)")
        old.execute("INSERT INTO clues VALUES ('k1', 'C1', ?, ?, '收受购物卡', 1)", (DONGCHENG, DONGCHENG))
        old.execute("INSERT INTO predictions VALUES (1, 2, 'k1', 'C1', 'ok', 'aware', 0.6, 'policy', 0.6, 0.1, 1, "
                    "'', '', 'v1')")
        old.execute("INSERT INTO reviewers VALUES ('li', '李四', 'x'), ('zhang', '张三', 'x')")
        old.execute("INSERT INTO recusals VALUES ('zhang', ?, ?, 'x')", (typed, typed))  # old key kept the U+200B
        for label in ("further", "aware"):
            old.execute("INSERT INTO overrides (clue_key, head, kind, new_label, reviewer_id, channel, created) "
                        "VALUES ('k1', 'attention', 'review', ?, 'li', 'cli', 'x')", (label,))
    old.close()
    monkeypatch.undo()
    db = connect(home.db_path)
    names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names[2:4] == ["m010_identifier_keys", "m011_audit_guards"]
    assert db.execute("SELECT status, row_count, pid FROM runs").fetchone()[:] == ("complete", 1, None)
    assert db.execute("SELECT unit_key FROM recusals").fetchone()[0] == unit_key(DONGCHENG)
    report = verify_store(db)
    assert report.ok and report.overrides == 2
    with pytest.raises(StoreError, match="recused"):
        record_decision(db, "k1", "zhang", {"attention": "further"})
    record_decision(db, "k1", "li", {"attention": "reference"})
    assert verify_store(db).ok and verify_store(db).overrides == 3
    with pytest.raises(sqlite3.IntegrityError, match="audit trail"):
        db.execute("UPDATE runs SET status = 'failed'")
