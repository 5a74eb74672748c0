"""Batch triage: screening statuses, order and count, workers, the store, and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from rich.console import Console
from typer.testing import CliRunner

import pipeline.intake.triage as triage_mod
from cli import PROGRESS_MIN_ROWS, TriageProgress, app
from pipeline.errors import InputError
from pipeline.fsutil import sha256_file
from pipeline.intake.triage import (
    ADDED_COLUMNS,
    ADDED_HEADERS_ZH,
    MAX_CHARS,
    TriageStart,
    classify_batches,
    classify_texts,
    triage_file,
)
from pipeline.labels import SHORT_NAMES
from pipeline.model.registry import Registry
from pipeline.store.store import clue_key, unit_key

CLUES = [
    "东城分局执法一中队的覃某某去年到我场里检查，说要罚五万，后来收了一万二现金就没下文了。",
    "談話中，南湖縣分局兩名執法人員反映，縣裡對工業園區企業的檢查「提前打招呼」已成慣例。",
    "建议监测中心把每月的空气质量排名在公众号上按街道公布，让老百姓也能看到。",
    "選人用人檢查發現，市局法規科副科長晉升為科長時，任職年限按其在企業的工作經歷折算。",
    "该局去年巡察整改方案中承诺的三项制度至今没有出台，整改报告却写已全部完成。",
]
LONG_TEXT = ("东城分局执法中队长刘某某多次收受企业礼金，检查走过场，" * 2000)[:50_000]

# (text, status, classified)
SCREENING = [
    ("", "empty", False),
    ("   \n\t\u3000 ", "empty", False),
    ("\u200b\u200b\ufeff", "empty", False),
    ("。，！？……——《》", "no_text", False),
    ("12345 678.9 %", "no_text", False),
    ("The director of the bureau took bribes from a chemical plant.", "not_chinese", False),
    ("ｘｙｚ１２３", "not_chinese", False),
    ("礼金", "too_short", True),
    (CLUES[0], "ok", True),
    (CLUES[1], "ok", True),
    (LONG_TEXT, "too_long_truncated", True),
]


@pytest.fixture(scope="module")
def model(trained_home):
    return Registry(trained_home.models).load().model


def write_csv(path: Path, header, rows, encoding="utf-8") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([header, *rows])
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "CSV output must be UTF-8 with BOM"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


class FullDisk:
    """A CSV writer on a disk that has just filled up."""

    def writerow(self, row):
        raise OSError(28, "No space left on device")


def fill_disk_at_row(monkeypatch, n: int) -> None:
    """Make the triage output's n-th row write hit a full disk."""
    real = triage_mod.TableWriter.write_values
    calls = 0

    def failing(self, row):
        nonlocal calls
        calls += 1
        if calls == n:
            self._csv = FullDisk()
        real(self, row)

    monkeypatch.setattr(triage_mod.TableWriter, "write_values", failing)


def mixed_rows(n: int) -> list[list[str]]:
    """``n`` rows cycling through every screening case, ids ``R0001…``."""
    texts = [t for t, _, _ in SCREENING if len(t) < 1000] + CLUES
    return [[f"R{i:04d}", "某市生态环境局", texts[i % len(texts)]] for i in range(n)]


# -- screening and classification -------------------------------------------------------


@pytest.mark.parametrize(("text", "status", "classified"), SCREENING, ids=lambda v: str(v)[:12] if isinstance(v, str) else None)
def test_screening_statuses(model, text, status, classified):
    [result] = classify_texts(model, [text])
    assert result.status == status
    assert bool(result.attention) == classified
    assert bool(result.area) == classified
    if classified:
        assert 0.0 < result.attention_conf <= 1.0 and 0.0 < result.area_conf <= 1.0
    else:
        assert result.detail and result.attention_conf is None and result.terms == []
    if status in ("too_short", "too_long_truncated"):
        assert result.needs_review


def test_long_text_detail_says_what_was_classified(model):
    [result] = classify_texts(model, [LONG_TEXT])
    assert f"{MAX_CHARS:,}" in result.detail and "50,000" in result.detail


def test_traditional_clue_terms_are_shown_in_traditional(model):
    [result] = classify_texts(model, [CLUES[1]])
    assert result.terms and all(term in CLUES[1] or term.startswith("<") for term in result.terms)


def test_a_row_that_breaks_the_model_gets_an_error_status(model, monkeypatch):
    real = type(model).predict

    def fragile(self, docs, *args, **kwargs):
        if any("炸" in d.text for d in docs):
            raise ValueError("simulated failure")
        return real(self, docs, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict", fragile)
    results = classify_texts(model, [CLUES[0], "这一条线索会让模型炸掉", CLUES[2]])
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "simulated failure" in results[1].detail
    assert results[1].needs_review and results[0].attention


def test_batches_in_flight_are_bounded(model, monkeypatch):
    """However long the input, only a few batches are read ahead of the results."""
    pulled = 0

    def batches():
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield [CLUES[i % len(CLUES)]] * 3

    ahead = []
    out = []
    for results in classify_batches(model, batches(), workers=2):
        ahead.append(pulled - len(out))
        out.append(results)
    assert len(out) == 40 and all(len(r) == 3 for r in out)
    assert max(ahead) <= triage_mod.IN_FLIGHT_PER_WORKER * 2 + 1


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_parallel_results_equal_serial_results(model, monkeypatch, start_method):
    monkeypatch.setattr(triage_mod, "START_METHOD", start_method)
    batches = [[CLUES[(i + j) % len(CLUES)] for j in range(4)] + [""] for i in range(12)]
    serial = [[(r.status, r.attention, r.area, r.terms) for r in res] for res in classify_batches(model, iter(batches), workers=1)]
    parallel = [[(r.status, r.attention, r.area, r.terms) for r in res] for res in classify_batches(model, iter(batches), workers=2)]
    assert serial == parallel


# -- triage_file ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_every_row_once_in_order(model_home, tmp_path, monkeypatch, workers):
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 7)
    rows = mixed_rows(60)
    src = write_csv(tmp_path / "clues.csv", ["编号", "被巡察单位", "线索内容"], rows)
    summary = triage_file(model_home, src, workers=workers)
    assert summary.output == tmp_path / "clues.triaged.csv"
    got = read_csv(summary.output)
    assert list(got[0]) == ["编号", "被巡察单位", "线索内容", *ADDED_COLUMNS]
    assert [[r["编号"], r["被巡察单位"], r["线索内容"]] for r in got] == rows
    assert [r["id"] for r in got] == [r[0] for r in rows]
    assert summary.rows == 60 and sum(summary.statuses.values()) == 60
    assert {r["model_version"] for r in got} == {"v1"}
    for r in got:
        classified = r["status"] in ("ok", "too_short", "too_long_truncated")
        assert bool(r["attention"]) == classified, r
        if classified:
            assert r["attention_name"] and r["area_name"] and r["handover"]
            assert r["area_name"] == SHORT_NAMES[r["area"]]  # the names of the sheets and the summary
            assert 0 < float(r["attention_confidence"]) <= 1 and r["needs_review"] in ("yes", "no")
        else:
            assert r["status_detail"] and r["needs_review"] == "no"
    assert sum(summary.cells.values()) == sum(1 for r in got if r["attention"])
    assert summary.needs_review == sum(r["needs_review"] == "yes" for r in got)


def test_serial_and_parallel_runs_write_the_same_file(model_home, tmp_path, monkeypatch):
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 5)
    src = write_csv(tmp_path / "clues.csv", ["编号", "被巡察单位", "线索内容"], mixed_rows(43))
    one = triage_file(model_home, src, tmp_path / "one.csv", workers=1)
    two = triage_file(model_home, src, tmp_path / "two.csv", workers=2)
    assert one.output.read_bytes() == two.output.read_bytes()


@pytest.mark.parametrize("suffix", [".xlsx", ".jsonl"])
def test_other_output_formats(model_home, tmp_path, suffix):
    rows = mixed_rows(15)
    src = write_csv(tmp_path / "clues.csv", ["编号", "被巡察单位", "线索内容"], rows)
    out = tmp_path / f"result{suffix}"
    triage_file(model_home, src, out, workers=1)
    if suffix == ".xlsx":
        values = list(load_workbook(out, read_only=True).active.iter_rows(values_only=True))
        header, body = list(values[0]), [dict(zip(values[0], v, strict=True)) for v in values[1:]]
    else:
        body = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        header = list(body[0])
    if suffix == ".xlsx":  # a workbook: Chinese headers, 是/否
        assert header == ["编号", "被巡察单位", "线索内容", *(ADDED_HEADERS_ZH[c] for c in ADDED_COLUMNS)]
        assert {b["需复核"] for b in body} == {"是", "否"}
    else:
        assert header == ["编号", "被巡察单位", "线索内容", *ADDED_COLUMNS]
        assert {b["needs_review"] for b in body} == {"yes", "no"}
    assert [b["编号"] for b in body] == [r[0] for r in rows]
    assert [b["线索内容"] or "" for b in body] == [r[2] for r in rows]


def test_headers_are_a_choice_and_a_chinese_one_the_input_has_keeps_the_code(model_home, tmp_path):
    """--headers en keeps the codes in a workbook, zh gives a CSV Chinese ones; an added
    header the input already has (关键词 here) keeps its code rather than appear twice."""
    rows = mixed_rows(6)
    src = write_csv(tmp_path / "clues.csv", ["编号", "线索内容", "关键词"], [[r[0], r[2], ""] for r in rows])
    triage_file(model_home, src, tmp_path / "en.xlsx", workers=1, headers="en")
    header = [c.value for c in next(load_workbook(tmp_path / "en.xlsx", read_only=True).active.iter_rows(max_row=1))]
    assert header[3:] == list(ADDED_COLUMNS)
    triage_file(model_home, src, tmp_path / "zh.csv", workers=1, headers="zh")
    with open(tmp_path / "zh.csv", encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert "key_terms" in table[0] and list(table[0])[3] == "线索编号" and "关键词" in table[0]
    assert {t["需复核"] for t in table} <= {"是", "否"}
    with pytest.raises(InputError, match="header style"):
        triage_file(model_home, src, tmp_path / "x.csv", workers=1, headers="fr")


@pytest.mark.parametrize(
    ("encoding", "header", "expected"),
    [
        ("gbk", ["编号", "被巡察单位", "线索内容"], "gb18030"),
        ("big5", ["編號", "被巡察單位", "線索內容"], "cp950"),
        ("utf-8-sig", ["編號", "被巡察單位", "線索內容"], "utf-8-sig"),
    ],
)
def test_encodings_end_to_end(model_home, tmp_path, encoding, header, expected):
    rows = [[f"T{i}", "某市生態環境局", text] for i, text in enumerate([CLUES[1], CLUES[3], "", "禮金"])]
    src = write_csv(tmp_path / "in.csv", header, rows, encoding)
    summary = triage_file(model_home, src, workers=1)
    assert summary.encoding == expected
    got = read_csv(summary.output)
    assert [[r[h] for h in header] for r in got] == rows
    assert [r["status"] for r in got] == ["ok", "ok", "empty", "too_short"]


def test_xlsx_input_with_title_and_empty_row(model_home, tmp_path):
    book = Workbook()
    sheet = book.active
    sheet["A1"] = "問題線索匯總表"
    sheet.merge_cells("A1:C1")
    sheet.append(["序號", "單位", "問題線索"])
    sheet.append([1, "某局", CLUES[1]])
    sheet.append([])
    sheet.append([3, "某局", CLUES[3]])
    book.save(tmp_path / "in.xlsx")
    summary = triage_file(model_home, tmp_path / "in.xlsx", workers=1)
    assert summary.output == tmp_path / "in.triaged.csv"
    got = read_csv(summary.output)
    assert [(r["序號"], r["id"], r["status"]) for r in got] == [("1", "1", "ok"), ("", "4", "empty"), ("3", "3", "ok")]


def test_jsonl_input(model_home, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(CLUES)),
                   encoding="utf-8")
    summary = triage_file(model_home, src, tmp_path / "out.jsonl", workers=1)
    got = [json.loads(line) for line in summary.output.read_text(encoding="utf-8").splitlines()]
    assert [g["id"] for g in got] == [str(i) for i in range(len(CLUES))]
    assert all(g["status"] == "ok" for g in got)
    assert "triage_id" not in got[0]


def test_input_columns_named_like_output_columns_are_kept(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["id", "status", "text", "attention"], [["a1", "待办", CLUES[0], "人工"], ["", "待办", CLUES[2], ""]])
    got = read_csv(triage_file(model_home, src, workers=1).output)
    assert list(got[0])[:4] == ["id", "status", "text", "attention"]
    assert [(r["id"], r["status"], r["attention"]) for r in got] == [("a1", "待办", "人工"), ("3", "待办", "")]
    assert {r["triage_status"] for r in got} == {"ok"} and all(r["triage_attention"] for r in got)


def test_id_is_the_row_number_without_an_id_column(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0]], [""], [CLUES[1]]])
    got = read_csv(triage_file(model_home, src, workers=1).output)
    assert [r["id"] for r in got] == ["2", "3", "4"]


@pytest.mark.parametrize("workers", [1, 2])
def test_run_is_recorded_in_the_store(model_home, tmp_path, monkeypatch, workers):
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 4)
    monkeypatch.setattr(triage_mod, "STORE_EVERY", 7)
    rows = mixed_rows(12)
    src = write_csv(tmp_path / "in.csv", ["编号", "被巡察单位", "线索内容"], rows)
    summary = triage_file(model_home, src, workers=workers)
    db = sqlite3.connect(model_home.db_path)
    run = db.execute("SELECT run_id, status, model_version, input_path, input_sha256, row_count, started, finished FROM runs").fetchall()
    assert run == [(summary.run_id, "complete", "v1", str(src.resolve()), sha256_file(src), 12, run[0][6], run[0][7])]
    assert run[0][6] and run[0][7]
    preds = db.execute("SELECT row_number, clue_id, status, attention, model_version FROM predictions WHERE run_id = ? ORDER BY row_number",
                       (summary.run_id,)).fetchall()
    got = read_csv(summary.output)
    assert [(p[0], p[1], p[2], p[3] or "") for p in preds] == [(i + 2, r["id"], r["status"], r["attention"]) for i, r in enumerate(got)]
    clues = db.execute("SELECT clue_key, unit, unit_key, text FROM clues WHERE first_run = ?", (summary.run_id,)).fetchall()
    assert sorted(clues) == sorted(
        {(clue_key(r["被巡察单位"], r["线索内容"]), r["被巡察单位"], unit_key(r["被巡察单位"]), r["线索内容"])
         for r in got if r["attention"]}
    )
    keys = dict(db.execute("SELECT row_number, clue_key FROM predictions WHERE run_id = ?", (summary.run_id,)).fetchall())
    assert [keys[i + 2] for i, r in enumerate(got)] == [
        clue_key(r["被巡察单位"], r["线索内容"]) if r["attention"] else None for r in got
    ]


def test_a_failed_run_leaves_no_output_and_is_marked_failed(model_home, tmp_path, monkeypatch):
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 4)
    src = write_csv(tmp_path / "in.csv", ["编号", "被巡察单位", "线索内容"], mixed_rows(30))
    out = tmp_path / "out.csv"
    out.write_text("previous result", encoding="utf-8")
    fill_disk_at_row(monkeypatch, 10)
    with pytest.raises(InputError, match=r"out\.csv: cannot write.*No space left"):
        triage_file(model_home, src, out, workers=1)
    assert out.read_text(encoding="utf-8") == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.csv", "out.csv"]
    db = sqlite3.connect(model_home.db_path)
    assert db.execute("SELECT status, finished IS NOT NULL FROM runs").fetchall() == [("failed", 1)]
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("output", "message"),
    [("in.csv", r"output would overwrite the input"), ("out.txt", r"out\.txt: unsupported output type")],
)
def test_bad_output_is_refused_before_the_run(model_home, tmp_path, output, message):
    src = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0]]])
    with pytest.raises(InputError, match=message):
        triage_file(model_home, src, tmp_path / output, workers=1)
    assert not model_home.db_path.exists() or sqlite3.connect(model_home.db_path).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_start_event_reports_rows_and_encoding(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["线索内容"], [[t] for t in CLUES], encoding="gbk")
    events: list[TriageStart] = []
    advanced: list[int] = []
    triage_file(model_home, src, workers=1, on_start=events.append, progress=advanced.append)
    [start] = events
    assert (start.rows, start.encoding, start.model_version) == (len(CLUES), "gb18030", "v1")
    assert sum(advanced) == len(CLUES)


def test_default_workers_follow_the_cpus_this_process_may_use():
    assert 1 <= triage_mod.available_cpus()


# -- the command line ----------------------------------------------------------------------

runner = CliRunner()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "home")


def test_cli_triage_prints_a_summary(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["编号", "被巡察单位", "线索内容"], mixed_rows(16))
    result = runner.invoke(app, ["triage", str(src), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert files_in(tmp_path) == ["in.csv", "in.triaged.csv"]
    assert "进一步了解关注类" in result.stdout and "合计" in result.stdout
    assert "needs review:" in result.stdout
    assert "rows with a status other than ok:" in result.stdout and "not_chinese" in result.stdout
    assert "clues/s" in result.stderr
    assert "input encoding" not in result.stderr


def test_cli_reports_a_non_utf8_encoding_on_stderr(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["編號", "線索內容"], [["1", CLUES[1]]], encoding="big5")
    result = runner.invoke(app, ["triage", str(src), "-o", str(tmp_path / "out.xlsx")])
    assert result.exit_code == 0, result.output
    assert "input encoding: Big5" in result.stderr
    assert "Big5" not in result.stdout
    assert files_in(tmp_path) == ["in.csv", "out.xlsx"]


def test_cli_quiet_prints_nothing(model_home, tmp_path):
    src = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0]]], encoding="gbk")
    result = runner.invoke(app, ["triage", str(src), "--quiet"])
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def _xlsx_without_text_column(path: Path) -> None:
    book = Workbook()
    book.active.append(["日期", "摘要"])
    book.active.append(["2024-01-01", "收受礼金"])
    book.save(path)


BAD_INPUTS = [
    # (file name, how to make it, extra args, message pattern)
    ("missing.csv", None, [], r"missing\.csv: file not found"),
    ("binary.csv", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10), [], r"binary\.csv: binary file"),
    ("folder.csv", lambda p: p.mkdir(), [], r"folder\.csv: not a file"),
    ("nothing.xlsx", _xlsx_without_text_column, [], r"nothing\.xlsx: no text column found.*columns seen: 日期, 摘要"),
    ("cut.csv", lambda p: p.write_text('编号,线索内容\n1,甲\n2,"乙被截', encoding="utf-8"), [], r"cut\.csv, row 3: .*truncated"),
    ("short.csv", lambda p: p.write_text("编号,单位,线索内容\n1,某局,甲\n2,某局", encoding="utf-8"), [], r"short\.csv, row 3: has 2 fields"),
    ("both.csv", lambda p: p.write_text("内容,线索内容\n甲,乙\n", encoding="utf-8"), [], r"both\.csv: several columns.*columns seen: 内容, 线索内容"),
    ("bad.jsonl", lambda p: p.write_text('{"text": "甲"}\n{"text": ', encoding="utf-8"), [], r"bad\.jsonl, row 2: invalid JSON"),
    ("empty.csv", lambda p: p.write_bytes(b""), [], r"empty\.csv: file is empty"),
    ("ok.csv", lambda p: p.write_text("线索内容\n收受礼金\n", encoding="utf-8"), ["--text-col", "正文"], r"ok\.csv: no column '正文'"),
    ("ok.csv", lambda p: p.write_text("线索内容\n收受礼金\n", encoding="utf-8"), ["-o", "{dir}/out.txt"], r"out\.txt: unsupported output type"),
    ("ok.csv", lambda p: p.write_text("线索内容\n收受礼金\n", encoding="utf-8"), ["--model", "v9"], r"no model version 'v9'"),
]


@pytest.mark.parametrize(("name", "make", "args", "message"), BAD_INPUTS, ids=[f"{b[0]}{' '.join(b[2])}" for b in BAD_INPUTS])
def test_cli_bad_input_is_one_line_and_exit_2(model_home, tmp_path, name, make, args, message):
    import re

    path = tmp_path / name
    if make:
        make(path)
    before = files_in(tmp_path)
    result = runner.invoke(app, ["triage", str(path), *[a.format(dir=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert re.search(message, lines[0]), lines[0]
    assert files_in(tmp_path) == before, "no output or temporary file may be left behind"


def test_cli_without_a_model_says_how_to_get_one(tmp_path):
    src = write_csv(tmp_path / "in.csv", ["线索内容"], [[CLUES[0]]])
    result = runner.invoke(app, ["triage", str(src)])
    assert result.exit_code == 2
    assert "clue-triage train" in result.stderr and "Traceback" not in result.output
    assert files_in(tmp_path) == ["in.csv"]


def test_cli_failure_mid_run_leaves_nothing(model_home, tmp_path, monkeypatch):
    monkeypatch.setattr(triage_mod, "BATCH_SIZE", 3)
    src = write_csv(tmp_path / "in.csv", ["编号", "被巡察单位", "线索内容"], mixed_rows(20))
    fill_disk_at_row(monkeypatch, 8)
    result = runner.invoke(app, ["triage", str(src), "--workers", "2"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "in.triaged.csv: cannot write" in result.stderr
    assert files_in(tmp_path) == ["in.csv"]


# -- progress --------------------------------------------------------------------------------


def _start(rows: int | None, encoding: str | None = "utf-8") -> TriageStart:
    return TriageStart(run_id=1, input=Path("in.csv"), output=Path("out.csv"), encoding=encoding,
                       rows=rows, model_version="v1", workers=2)


@pytest.mark.parametrize(
    ("rows", "terminal", "quiet", "shown"),
    [
        (PROGRESS_MIN_ROWS + 500, True, False, True),
        (PROGRESS_MIN_ROWS, True, False, False),
        (50, True, False, False),
        (None, True, False, False),
        (PROGRESS_MIN_ROWS + 500, False, False, False),
        (PROGRESS_MIN_ROWS + 500, True, True, False),
    ],
)
def test_progress_bar_only_for_large_inputs_on_a_terminal(rows, terminal, quiet, shown):
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=terminal, width=100)
    progress = TriageProgress(console, quiet=quiet)
    progress.start(_start(rows))
    try:
        assert (progress.bar is not None) == shown
        progress.advance(100)
    finally:
        progress.stop()
    if not shown:
        assert "━" not in stream.getvalue()


@pytest.mark.parametrize(
    ("encoding", "note"),
    [("utf-8", None), ("utf-8-sig", None), (None, None), ("gb18030", "GB18030/GBK"), ("cp950", "Big5")],
)
def test_encoding_note(encoding, note):
    stream = io.StringIO()
    progress = TriageProgress(Console(file=stream, width=200), quiet=False)
    progress.start(_start(10, encoding))
    progress.stop()
    text = stream.getvalue()
    assert (f"input encoding: {note}" in text) if note else text == ""


def test_cli_error_message_with_brackets_is_printed_as_is(model_home, tmp_path):
    src = tmp_path / "brackets.csv"
    src.write_text("[/x],[bold]y\n1,2\n", encoding="utf-8")
    result = runner.invoke(app, ["triage", str(src)])
    assert result.exit_code == 2
    assert "columns seen: [/x], [bold]y" in result.stderr


def test_progress_bar_on_a_real_terminal(model_home, tmp_path):
    """End to end under a pseudo-terminal: a bar for a large input, none for a small one."""
    import re
    import sys

    import pexpect

    from pipeline.paths import PROJECT_ROOT

    frames = {}
    for rows in (PROGRESS_MIN_ROWS + 100, 200):
        src = write_csv(tmp_path / f"in{rows}.csv", ["线索内容"], [[CLUES[i % len(CLUES)]] for i in range(rows)])
        child = pexpect.spawn(sys.executable, [str(PROJECT_ROOT / "cli.py"), "triage", str(src), "--workers", "2"],
                              env={**os.environ, "CLUE_TRIAGE_HOME": str(model_home.root), "TERM": "xterm"},
                              encoding="utf-8", timeout=180, dimensions=(40, 120))
        output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.read())
        child.close()
        assert child.exitstatus == 0, output
        frames[rows] = re.findall(rf"triage .*?(\d+)/{rows}\b", output)
        assert f"written: {src.with_name(src.stem + '.triaged.csv')}" in output
    assert frames[PROGRESS_MIN_ROWS + 100], "a progress bar on a terminal for a large input"
    assert frames[200] == [], "no progress bar for a small input"
