"""The reviewer loop: queue, decisions, Excel round trip, disputes, hand-over, history, stats.

A real triage (the session's trained model) stores predictions for a small file with
Traditional and Simplified text from two units; reviews then go through the same library
functions the CLI uses, and a few tests drive the CLI itself (CliRunner, and pexpect for the
terminal queue killed mid-session).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError, StoreError, ValidationError
from pipeline.fsutil import sha256_file
from pipeline.intake.routing import load_routing
from pipeline.intake.triage import triage_file
from pipeline.labels import ATTENTION, SHORT_NAMES
from pipeline.paths import Home
from pipeline.review.assignments import review_queue
from pipeline.review.review import (
    add_reviewer,
    clue_state,
    clue_states,
    cohen_kappa,
    disputes,
    find_clue,
    history,
    record_decision,
    resolve,
    review_stats,
    reviewed_examples,
)
from pipeline.review.workbooks import (
    HEADERS_ZH,
    PENDING_SHEET,
    REVIEW_COLUMNS,
    export_review_sheet,
    import_review_sheet,
    write_handover,
)
from pipeline.store.store import connect

DONGCHENG_T, DONGCHENG_S, NANHU = "某市生態環境局東城分局", "某市生态环境局东城分局", "某市生态环境局南湖县分局"
CLUES = [
    ("C01", DONGCHENG_T, "反映東城分局副局長王某2023年春節前收受轄區企業購物卡2萬元，並為該企業環評驗收「開綠燈」。"),
    ("C02", DONGCHENG_S, "举报局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("C03", NANHU, "部分乡镇对“散乱污”企业整治态度不坚决，存在关停后又死灰复燃的情况。"),
    ("C04", "某市生態環境局南湖縣分局", "上一輪巡察反饋的公務用車管理問題，整改臺賬只有表態沒有措施，至今未見成效。"),
    ("C05", NANHU, "建议加强基层环境监测站人员培训，提高监测数据质量。"),
    ("C06", DONGCHENG_S, "干部反映近年来年轻干部交流锻炼机会偏少。"),
    ("C07", NANHU, "收红包"),  # too short: always needs review
    ("C08", "某市生態環境局南湖縣分局", "談話中有同志反映，分局黨組會議記錄不全，「三重一大」事項未經集體研究就由主要負責人拍板。"),
    ("C09", NANHU, "English only, not classified"),
]
NANHU_IDS = {"C03", "C04", "C05", "C07", "C08"}
COLUMN = {name: i for i, (name, _) in enumerate(REVIEW_COLUMNS, 1)}


@dataclass
class Triaged:
    home: Home
    run: int
    db: object
    folder: Path


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        writer.writerows(rows)
    return path


@pytest.fixture
def triaged(model_home: Home, tmp_path: Path):
    source = _write_csv(tmp_path / "clues.csv", CLUES)
    summary = triage_file(model_home, source, tmp_path / "clues.triaged.csv", workers=1)
    db = connect(model_home.db_path)
    add_reviewer(db, "zhang", "张三", [DONGCHENG_S])  # recused from 東城分局 whatever the script
    add_reviewer(db, "li", "李四")
    add_reviewer(db, "wang", "王五")
    yield Triaged(model_home, summary.run_id, db, tmp_path)
    db.close()


def _rows(db, sql: str = "SELECT * FROM overrides ORDER BY override_id", args: tuple = ()) -> list[dict]:
    return [dict(r) for r in db.execute(sql, args)]


def _fill(path: Path, out: Path, values: dict[str, dict[str, str]]) -> Path:
    """Fill reviewed columns of an exported sheet: {clue id: {column: value}}."""
    book = load_workbook(path)
    sheet = book.active
    for row in range(2, sheet.max_row + 1):
        for column, value in values.get(str(sheet.cell(row, COLUMN["id"]).value), {}).items():
            sheet.cell(row, COLUMN[column]).value = value
    book.save(out)
    return out


# -- queue and decisions --------------------------------------------------------------


def test_queue_is_most_uncertain_first_and_skips_recused_and_decided(triaged):
    db = triaged.db
    queue = review_queue(db, "zhang")
    assert {s.clue_id for s in queue} == NANHU_IDS  # 東城分局 in either script is recused; C09 unclassified
    margins = [s.prediction.margin for s in queue]
    assert margins == sorted(margins)
    assert {s.clue_id for s in review_queue(db, "li")} == NANHU_IDS | {"C01", "C02", "C06"}
    first = queue[0]
    record_decision(db, first.clue_key, "zhang", first.prediction.labels)
    assert [s.clue_id for s in review_queue(db, "zhang")] == [s.clue_id for s in queue[1:]]
    assert first.clue_id in {s.clue_id for s in review_queue(db, "li")}  # another reviewer still sees it
    with pytest.raises(StoreError, match="reviewers add"):
        review_queue(db, "nobody")


def test_a_decision_records_prediction_old_label_and_reason(triaged):
    db = triaged.db
    key = find_clue(db, "C04")
    predicted = clue_state(db, key).prediction
    other = next(a for a in ("further", "aware", "reference") if a != predicted.labels["attention"])
    record_decision(db, key, "li", {"attention": predicted.labels["attention"], "area": predicted.labels["area"]})
    state = record_decision(db, key, "li", {"attention": SHORT_NAMES[other]}, reason="有具體人和事", channel="cli")
    rows = _rows(db)
    assert [(r["head"], r["new_label"]) for r in rows] == [
        ("attention", predicted.labels["attention"]), ("area", predicted.labels["area"]), ("attention", other)]
    assert all(r["kind"] == "review" and r["run_id"] == triaged.run and r["model_version"] == "v1" for r in rows)
    assert rows[0]["predicted_conf"] == pytest.approx(predicted.confidence["attention"])
    assert rows[0]["old_label"] == predicted.labels["attention"]
    assert rows[2]["old_label"] == predicted.labels["attention"] and rows[2]["reason"] == "有具體人和事"
    assert state.heads["attention"].effective == other and state.heads["attention"].status == "reviewed"
    with pytest.raises(InputError, match="unknown attention label"):
        record_decision(db, key, "li", {"attention": "紧急"})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE overrides SET new_label = 'further', reason = '' WHERE override_id = ?", (rows[2]["override_id"],))
    assert _rows(db) == rows


def test_reviewers_are_never_renamed_and_recusals_only_added(triaged):
    db = triaged.db
    with pytest.raises(StoreError, match="already exists"):
        add_reviewer(db, "li", "李小四")
    with pytest.raises(InputError, match="one word"):
        add_reviewer(db, "li si", "李四")
    reviewer = add_reviewer(db, "li", "李四", ["某市生態環境局南湖縣分局"])
    assert reviewer.recused == ("某市生態環境局南湖縣分局",)
    assert {s.clue_id for s in review_queue(db, "li")} == {"C01", "C02", "C06"}


def test_recusal_is_enforced_when_deciding(triaged):
    db = triaged.db
    key = find_clue(db, "C01")  # 東城分局 (Traditional); zhang recused from 东城分局 (Simplified)
    with pytest.raises(StoreError, match="recused"):
        record_decision(db, key, "zhang", {"attention": "further", "area": "discipline"})
    assert _rows(db) == []


def test_a_clue_id_naming_several_clues_is_an_error(triaged, tmp_path):
    again = _write_csv(tmp_path / "again.csv", [("C03", NANHU, "另一条线索：某站长把监测数据改了以后上报，多次被人看见。")])
    triage_file(triaged.home, again, tmp_path / "again.triaged.csv", workers=1)
    with pytest.raises(InputError, match="names 2 clues"):
        find_clue(triaged.db, "C03")
    assert find_clue(triaged.db, "C05") == clue_states(triaged.db, triaged.run)[4].clue_key


# -- Excel round trip -----------------------------------------------------------------


def test_excel_export_is_readable_and_round_trips(triaged):
    db, folder = triaged.db, triaged.folder
    exported = folder / "review.xlsx"
    assert export_review_sheet(db, exported, triaged.run) == 8  # C09 was not classified
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    sheet = load_workbook(exported).active
    assert [c.value for c in sheet[1]] == [HEADERS_ZH[name] for name, _ in REVIEW_COLUMNS]  # Chinese by default
    assert sheet.freeze_panes == "A2"
    assert sheet.column_dimensions["C"].width >= 40 and sheet.cell(2, COLUMN["text"]).alignment.wrap_text
    assert sheet.column_dimensions[get_column_letter(COLUMN["clue_key"])].hidden
    assert sheet.cell(2, COLUMN["text"]).value == CLUES[0][2]  # the original (Traditional) text
    assert sheet.cell(2, COLUMN["predicted_attention"]).value in SHORT_NAMES.values()
    lists = {str(dv.sqref): dv.formula1 for dv in sheet.data_validations.dataValidation}
    assert lists == {"J2:J9": '"进一步了解关注类,了解关注类,参考类"', "K2:K9": '"政策落实,从严治党,组织路线,巡察整改"'}
    assert all(sheet.cell(r, COLUMN[c]).value is None for r in range(2, 10) for c in ("reviewed_attention", "reviewed_area", "reason"))

    filled = _fill(exported, folder / "filled.xlsx", {
        "C03": {"reviewed_attention": "further", "reviewed_area": "從嚴治黨", "reason": "點名到人"},
        "C04": {"reviewed_attention": "參考類"},
        "C05": {"reviewed_area": "落实巡视巡察整改"},
    })
    result = import_review_sheet(db, filled, "li")
    assert (result.rows, dict(result.recorded), result.unchanged) == (3, {"attention": 2, "area": 2}, 0)
    effective = {s.clue_id: s.effective() for s in clue_states(db, triaged.run)}
    assert effective["C03"] == {"attention": "further", "area": "discipline"}
    assert effective["C04"]["attention"] == "reference"
    assert effective["C05"]["area"] == "rectification"
    rows = _rows(db)
    assert {r["channel"] for r in rows} == {"excel"} and {r["import_sha256"] for r in rows} == {sha256_file(filled)}
    assert [r["reason"] for r in rows if r["new_label"] == "discipline"] == ["點名到人"]


def test_import_is_all_or_nothing_and_lists_every_bad_row(triaged):
    db, folder = triaged.db, triaged.folder
    exported = folder / "review.xlsx"
    export_review_sheet(db, exported, triaged.run)
    book = load_workbook(exported)
    sheet = book.active
    sheet.cell(10, COLUMN["id"]).value = "NOPE"
    sheet.cell(10, COLUMN["reviewed_attention"]).value = "aware"
    book.save(exported)
    filled = _fill(exported, folder / "bad.xlsx", {
        "C03": {"reviewed_attention": "further"},       # good
        "C04": {"reviewed_area": "紧急整改"},             # unknown label
        "C01": {"reviewed_attention": "參考類"},          # zhang recused from 東城分局
        "C05": {"reviewed_area": "discipline"},          # good
    })
    with pytest.raises(ValidationError, match="3 problem") as caught:
        import_review_sheet(db, filled, "zhang")
    problems = "\n".join(caught.value.problems)
    assert len(caught.value.problems) == 3
    assert "row 2 (clue C01)" in problems and "recused" in problems
    assert "row 5 (clue C04), column 'reviewed_area'" in problems and "紧急整改" in problems
    assert "row 10: unknown clue id 'NOPE'" in problems
    assert _rows(db) == []

    result = CliRunner().invoke(app, ["review", "import", str(filled), "--reviewer", "zhang"])
    assert result.exit_code == 2 and "row 10: unknown clue id" in result.stderr and "nothing was recorded" in result.stderr
    assert _rows(db) == []


def test_reimporting_the_same_decisions_adds_nothing(triaged):
    db, folder = triaged.db, triaged.folder
    export_review_sheet(db, folder / "review.xlsx", triaged.run)
    filled = _fill(folder / "review.xlsx", folder / "filled.xlsx",
                   {"C03": {"reviewed_attention": "aware", "reviewed_area": "policy"}, "C08": {"reviewed_area": "組織路線"}})
    first = import_review_sheet(db, filled, "li")
    assert sum(first.recorded.values()) == 3
    again = import_review_sheet(db, filled, "li")
    assert (sum(again.recorded.values()), again.unchanged) == (0, 3)
    resaved = folder / "resaved.xlsx"
    book = load_workbook(filled)
    book.active.cell(1, 20).value = "a note"  # re-saved with another change: other bytes, same decisions
    book.save(resaved)
    assert sha256_file(resaved) != sha256_file(filled)
    assert sum(import_review_sheet(db, resaved, "li").recorded.values()) == 0
    changed = _fill(resaved, folder / "changed.xlsx", {"C08": {"reviewed_area": "discipline"}})
    assert dict(import_review_sheet(db, changed, "li").recorded) == {"area": 1}
    assert len(_rows(db)) == 4
    assert sum(import_review_sheet(db, filled, "wang").recorded.values()) == 3  # another reviewer's own decisions


# -- disputes, hand-over, history, statistics ------------------------------------------


def _sheet_ids(path: Path) -> dict[str, set[str]]:
    book = load_workbook(path)
    return {ws.title: {str(r[0]) for r in ws.iter_rows(min_row=2, values_only=True)} for ws in book.worksheets}


def test_a_dispute_is_raised_kept_out_of_hand_over_and_resolved(triaged):
    db, folder = triaged.db, triaged.folder
    key = find_clue(db, "C03")
    area = clue_state(db, key).prediction.labels["area"]
    record_decision(db, key, "li", {"attention": "further", "area": area})
    record_decision(db, key, "wang", {"attention": "aware", "area": area})
    found = disputes(db)
    assert [(d.state.clue_id, d.head, d.decisions) for d in found] == [("C03", "attention", {"li": "further", "wang": "aware"})]
    state = clue_state(db, key)
    assert state.disputed and state.heads["attention"].effective == state.prediction.labels["attention"]
    assert state.heads["area"].status == "reviewed"
    assert "C03" not in {e.clue_id for e in reviewed_examples(db)}

    routing = load_routing()
    handed = write_handover(db, folder / "handover.xlsx", triaged.run)
    sheets = _sheet_ids(folder / "handover.xlsx")
    assert list(sheets) == [*routing.bodies(), PENDING_SHEET]
    assert {"C03", "C07"} <= sheets[PENDING_SHEET]  # disputed; too short and never reviewed
    assert all("C03" not in ids and "C07" not in ids for body, ids in sheets.items() if body != PENDING_SHEET)
    assert sum(handed.sheets.values()) + handed.pending == 8

    with pytest.raises(StoreError, match="recused"):
        resolve(db, "C01", "attention", "further", "zhang", "irrelevant")
    with pytest.raises(StoreError, match="not disputed"):
        resolve(db, "C05", "attention", "further", "wang", "nothing to settle")
    with pytest.raises(InputError, match="reason"):
        resolve(db, "C03", "attention", "further", "zhang", " ")
    with pytest.raises(StoreError, match="the adjudicator must be someone else"):
        resolve(db, "C03", "attention", "further", "li", "I was right")  # li is one of the disputants
    head = resolve(db, "C03", "attention", "進一步了解關注類", "zhang", "有具體時間地點")
    assert (head.effective, head.status) == ("further", "adjudicated")
    assert disputes(db) == []
    write_handover(db, folder / "handover.xlsx", triaged.run)
    sheets = _sheet_ids(folder / "handover.xlsx")
    assert "C03" in sheets[routing.handover("further", area)] and "C03" not in sheets[PENDING_SHEET]
    example = next(e for e in reviewed_examples(db) if e.clue_id == "C03")
    assert (example.attention, example.area, example.n_overrides) == ("further", area, 5)

    state, trail = history(db, "C03")
    assert [e.kind for e in trail] == ["prediction", "prediction", "review", "review", "review", "review", "adjudication"]
    assert [e.time for e in trail] == sorted(e.time for e in trail)
    assert trail[-1].actor == "zhang" and trail[-1].reason == "有具體時間地點"


def test_reviewed_examples_keep_the_prediction_of_an_undecided_head(triaged):
    db = triaged.db
    key = find_clue(db, "C08")
    predicted = clue_state(db, key).prediction.labels
    record_decision(db, key, "li", {"area": "organization"})
    (example,) = reviewed_examples(db)
    assert (example.clue_id, example.unit, example.attention, example.area, example.n_overrides) == (
        "C08", "某市生態環境局南湖縣分局", predicted["attention"], "organization", 1)
    assert example.text == CLUES[7][2] and example.last_decided


def test_stats_count_changes_rates_and_agreement(triaged):
    db = triaged.db
    decided = {}
    for clue_id, li, wang in [("C03", "further", "further"), ("C04", "aware", "reference"), ("C05", "reference", "reference")]:
        key = find_clue(db, clue_id)
        decided[clue_id] = clue_state(db, key).prediction.labels["attention"]
        record_decision(db, key, "li", {"attention": li})
        record_decision(db, key, "wang", {"attention": wang})
    stats = review_stats(db)
    (pair,) = stats.agreement
    assert (pair.head, pair.reviewers, pair.n) == ("attention", ("li", "wang"), 3)
    assert pair.agreement == pytest.approx(2 / 3)
    assert pair.kappa == pytest.approx(cohen_kappa(["further", "aware", "reference"], ["further", "reference", "reference"]))
    (rate,) = stats.by_model
    labels = {"C03": ["further"] * 2, "C04": ["aware", "reference"], "C05": ["reference"] * 2}
    assert rate[:3] == ("v1", "attention", 6)
    assert rate[3] == sum(new != decided[c] for c, news in labels.items() for new in news)
    assert sum(n for *_, n in stats.changes) == rate[3]
    assert stats.rows == 6 and stats.disputed == 1


def test_cohen_kappa_matches_scikit_learn():
    from sklearn.metrics import cohen_kappa_score

    a = ["x", "x", "y", "y", "z", "x", "y", "z"]
    b = ["x", "y", "y", "y", "z", "x", "x", "z"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None and cohen_kappa([], []) is None


# -- the command line -----------------------------------------------------------------


def test_cli_reviewers_and_terminal_queue_with_scripted_keys(triaged):
    runner = CliRunner()
    added = runner.invoke(app, ["reviewers", "add", "zhao", "--name", "赵六", "--recuse", "某市生态环境局南湖县分局"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["reviewers", "list"])
    assert "zhao" in listed.stdout and "南湖县分局" in listed.stdout
    queue = review_queue(triaged.db, "zhao")
    assert {s.clue_id for s in queue} == {"C01", "C02", "C06"}
    target = next(a for a in ATTENTION if a != queue[1].prediction.labels["attention"])
    # accept; change attention with a reason and record; an unknown key; quit
    keys = f"a\n1\n{ATTENTION.index(target) + 1}\nr\n只是意見\na\nx\nq\n"
    result = runner.invoke(app, ["review", "next", "--reviewer", "zhao"], input=keys)
    assert result.exit_code == 0, result.output
    assert "2 decision(s) recorded (1 changed a label)" in result.stdout and "1 left" in result.stdout
    assert queue[0].text in result.stderr  # the clue, in its original script
    rows = _rows(triaged.db)
    assert [(r["clue_key"], r["head"], r["new_label"], r["channel"]) for r in rows] == [
        (queue[0].clue_key, "attention", queue[0].prediction.labels["attention"], "terminal"),
        (queue[0].clue_key, "area", queue[0].prediction.labels["area"], "terminal"),
        (queue[1].clue_key, "attention", target, "terminal"),
        (queue[1].clue_key, "area", queue[1].prediction.labels["area"], "terminal"),
    ]
    assert rows[2]["reason"] == "只是意見"
    recused = runner.invoke(app, ["review", "next", "--reviewer", "zhao"], input="q\n")
    assert queue[0].text not in recused.stderr and "C03" not in recused.stderr


def test_cli_export_import_disputes_resolve_history_stats_handover(triaged):
    runner, folder = CliRunner(), triaged.folder

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "8 clue(s) written" in run("review", "export", "--run", str(triaged.run), "-o", str(folder / "r.xlsx"))
    _fill(folder / "r.xlsx", folder / "li.xlsx", {"C05": {"reviewed_attention": "further", "reviewed_area": "discipline"}})
    _fill(folder / "r.xlsx", folder / "wang.xlsx", {"C05": {"reviewed_attention": "aware", "reviewed_area": "discipline"}})
    shown = run("review", "import", str(folder / "li.xlsx"), "--reviewer", "li")
    assert "attention" in shown and "1" in shown
    run("review", "import", str(folder / "wang.xlsx"), "--reviewer", "wang")
    assert "already on record" in run("review", "import", str(folder / "wang.xlsx"), "--reviewer", "wang")
    assert "C05" in run("review", "disputes")
    assert "adjudicated" in run("review", "resolve", "C05", "--head", "attention", "--label", "了解關注類",
                                "--reviewer", "zhang", "--reason", "沒有具體時間金額")
    assert "0 disputed" in run("review", "disputes")
    trail = run("history", "C05")
    assert trail.index("prediction") < trail.index("review") < trail.index("adjudication") and "沒有具體時間金額" in trail
    assert "li / wang" in run("review", "stats")
    assert "纪检监察机关" in run("handover", "-o", str(folder / "移交清單.xlsx"))
    assert (folder / "移交清單.xlsx").exists()
    missing = runner.invoke(app, ["history", "NOPE"])
    assert missing.exit_code == 2 and "unknown clue" in missing.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="pexpect needs a POSIX terminal")
def test_terminal_session_killed_after_three_decisions_keeps_them(triaged):
    import pexpect

    queue = review_queue(triaged.db, "li")
    executable = Path(sys.executable).parent / "clue-triage"
    if not executable.exists():
        executable = Path(shutil.which("clue-triage") or "clue-triage")
    env = {**os.environ, "CLUE_TRIAGE_HOME": str(triaged.home.root)}
    child = pexpect.spawn(str(executable), ["review", "next", "--reviewer", "li"], env=env, encoding="utf-8",
                          timeout=30, dimensions=(50, 200))

    def press(wait_for: str, key: str) -> None:
        child.expect_exact(wait_for)
        time.sleep(0.3)  # keys typed before the prompt reads them are discarded on purpose
        child.send(key)

    try:
        press("quit >", "a")
        child.expect_exact("recorded")
        press("quit >", "1")
        press("[3]", "3")  # attention → reference
        press("quit >", "r")
        child.expect_exact("reason:")
        time.sleep(0.3)
        child.sendline("僅供參考")
        press("quit >", "a")
        child.expect_exact("recorded")
        press("quit >", "2")
        press("[4]", "4")  # area → rectification
        press("quit >", "a")
        child.expect_exact("recorded")
        child.expect_exact("quit >")  # the fourth clue is on screen
    finally:
        child.kill(signal.SIGKILL)
        child.close(force=True)
    assert child.signalstatus == signal.SIGKILL

    db = connect(triaged.home.db_path)
    rows = _rows(db, "SELECT * FROM overrides WHERE reviewer_id = 'li' ORDER BY override_id")
    db.close()
    first, second, third = (q.prediction.labels for q in queue[:3])
    assert [(r["clue_key"], r["head"], r["new_label"]) for r in rows] == [
        (queue[0].clue_key, "attention", first["attention"]), (queue[0].clue_key, "area", first["area"]),
        (queue[1].clue_key, "attention", "reference"), (queue[1].clue_key, "area", second["area"]),
        (queue[2].clue_key, "attention", third["attention"]), (queue[2].clue_key, "area", "rectification"),
    ]
    assert {r["channel"] for r in rows} == {"terminal"} and rows[2]["reason"] == "僅供參考"


def test_two_rows_about_one_clue_setting_different_heads_are_both_recorded(triaged):
    db, folder = triaged.db, triaged.folder
    export_review_sheet(db, folder / "review.xlsx", triaged.run)
    filled = _fill(folder / "review.xlsx", folder / "two.xlsx", {"C03": {"reviewed_attention": "参考", "reason": "观点"}})
    book = load_workbook(filled)
    sheet = book.active
    source = next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, COLUMN["id"]).value == "C03")
    copy = [c.value for c in sheet[source]]
    copy[COLUMN["reviewed_attention"] - 1] = None
    copy[COLUMN["reviewed_area"] - 1] = "巡察整改"
    copy[COLUMN["reason"] - 1] = "属整改问题"
    sheet.append(copy)
    book.save(filled)
    result = import_review_sheet(db, filled, "li")
    assert dict(result.recorded) == {"attention": 1, "area": 1}
    assert sorted(r["reason"] for r in _rows(db)) == ["观点; 属整改问题"] * 2


def test_a_reviewers_export_leaves_out_units_they_recused_from(triaged):
    db, folder = triaged.db, triaged.folder
    everyone = export_review_sheet(db, folder / "all.xlsx", triaged.run)
    mine = export_review_sheet(db, folder / "zhang.xlsx", triaged.run, reviewer_id="zhang")
    assert mine < everyone
    ids = {load_workbook(folder / "zhang.xlsx").active.cell(r, COLUMN["id"]).value for r in range(2, mine + 2)}
    assert "C01" not in ids  # 東城分局: zhang recused from 东城分局
