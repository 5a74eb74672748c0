"""Review by assignment: split, recusal, double review, each reviewer's share; undo in the terminal queue."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError
from pipeline.intake.rounds import resolve_scope, start_round
from pipeline.intake.triage import triage_file
from pipeline.intake.units import add_unit
from pipeline.review.assignments import assign, review_queue, share
from pipeline.review.review import add_reviewer, clue_states
from pipeline.review.workbooks import export_review_sheet
from pipeline.store.store import connect

runner = CliRunner()
DONGCHENG, NANHU = "某市生态环境局东城分局", "某市生态环境局南湖县分局"
CLUES = [
    ("D1", DONGCHENG, "反映东城分局副局长王某2023年春节前收受辖区企业购物卡2万元，并为该企业环评验收开绿灯。"),
    ("D2", DONGCHENG, "干部反映近年来东城分局年轻干部交流锻炼机会偏少，人才断层比较明显。"),
    ("D3", DONGCHENG, "东城分局执法大队对辖区小作坊罚了就走，以罚代管的问题比较突出。"),
    ("N1", NANHU, "举报南湖县分局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("N2", NANHU, "南湖县部分乡镇对散乱污企业整治态度不坚决，存在关停后又死灰复燃的情况。"),
    ("N3", NANHU, "上一轮巡察反馈的公务用车管理问题，南湖县分局整改台账只有表态没有措施，至今未见成效。"),
    ("N4", NANHU, "建议加强基层环境监测站人员培训，提高监测数据质量。"),
    ("U1", "", "分局党组会议记录不全，三重一大事项未经集体研究就由主要负责人拍板。"),
]


@pytest.fixture
def db(model_home, tmp_path):
    connection = connect(model_home.db_path)
    add_unit(connection, DONGCHENG)
    add_unit(connection, NANHU)
    start_round(connection, "第一轮", [DONGCHENG, NANHU])
    source = tmp_path / "clues.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"), *CLUES])
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    add_reviewer(connection, "zhang", "张三", [DONGCHENG])
    add_reviewer(connection, "li", "李四")
    add_reviewer(connection, "wang", "王五")
    yield connection
    connection.close()


def test_assignment_splits_once_respecting_recusal_and_is_idempotent(db):
    scope = resolve_scope(db)
    result = assign(db, ["zhang", "li"], scope)
    assert result.groups == 8 and sum(result.assigned.values()) == 8 and not result.nobody
    zhang = {s.clue_id for s in share(db, "zhang", scope)}
    li = {s.clue_id for s in share(db, "li", scope)}
    assert not zhang & li and zhang | li == {c[0] for c in CLUES}
    assert not any(i.startswith(("D", "U")) for i in zhang)  # recused unit and unknown unit go to li
    assert abs(len(zhang) - len(li)) <= 4
    again = assign(db, ["zhang", "li"], scope)
    assert (sum(again.assigned.values()), again.already) == (0, 8)
    # the exported sheet of a reviewer is their share; the terminal queue too
    assert export_review_sheet(db, _tmp(db) / "z.xlsx", scope, "zhang") == len(zhang)
    assert {s.clue_id for s in review_queue(db, "zhang", scope)} == zhang
    # wang was not assigned anything: he gets every clue he may see
    assert len(share(db, "wang", scope)) == 8


def _tmp(db) -> Path:
    return Path(db.execute("PRAGMA database_list").fetchone()[2]).parent


def test_double_assignment_gives_two_different_reviewers(db):
    result = assign(db, ["zhang", "li", "wang"], resolve_scope(db), double=True)
    per_clue = Counter(r[0] for r in db.execute("SELECT clue_key FROM assignments"))
    assert set(per_clue.values()) == {2} and len(per_clue) == 8
    assert sum(result.assigned.values()) == 16 and result.single == []


def test_double_assignment_says_which_clues_only_one_reviewer_may_see(db):
    result = assign(db, ["zhang", "li"], resolve_scope(db), double=True)
    assert sorted(result.single) == ["D1", "D2", "D3", "U1"]  # zhang is recused from 东城 and gets no unknown unit
    with pytest.raises(InputError, match="at least two"):
        assign(db, ["li"], double=True)


def test_export_filters_needs_review_unit_and_limit(db, tmp_path):
    scope = resolve_scope(db)
    flagged = {s.clue_id for s in clue_states(db, scope) if s.needs_review}
    assert {s.clue_id for s in share(db, "li", scope, needs_review=True)} == flagged
    assert {s.clue_id for s in share(db, "li", scope, unit="南湖县分局")} == {"N1", "N2", "N3", "N4"}
    assert len(share(db, "li", scope, limit=3)) == 3
    result = runner.invoke(app, ["review", "export", "--reviewer", "li", "--unit", NANHU, "--limit", "2",
                                 "-o", str(tmp_path / "li.xlsx")])
    assert result.exit_code == 0, result.output
    assert "2 clue(s)" in result.stdout
    assert load_workbook(tmp_path / "li.xlsx").active.max_row == 3


def test_cli_assign_then_terminal_undo(db, monkeypatch):
    result = runner.invoke(app, ["review", "assign", "--reviewers", "zhang,li"])
    assert result.exit_code == 0, result.output
    assert "8 clue group(s)" in result.stdout
    # li decides one clue, undoes it, decides it again as 参考类, quits
    keys = "a\nu\n1\n3\na\nq\n"
    result = runner.invoke(app, ["review", "next", "--reviewer", "li"], input=keys)
    assert result.exit_code == 0, result.output
    assert "2 decision(s) recorded" in result.stdout and "1 undone" in result.stdout
    rows = db.execute("SELECT clue_key, new_label FROM overrides WHERE head = 'attention' ORDER BY override_id").fetchall()
    assert len(rows) == 2 and rows[0][0] == rows[1][0] and rows[1][1] == "reference"


def test_review_page_serves_a_reviewers_share_of_the_open_round(db, model_home, tmp_path):
    """The web page's Scope.share seam: the round's runs, one clue per group, each reviewer
    their assigned share (the same as review next), never a clue of a recused unit."""
    from pipeline.review.assignments import page_share
    from pipeline.review.worklist import Scope, next_clue, page_stats, worklist

    second = tmp_path / "more.csv"
    with open(second, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"),
                                      ("N5", NANHU, "南湖县分局机关食堂长期接受企业免费供应食材，群众意见很大。")])
    triage_file(model_home, second, tmp_path / "more.out.csv", workers=1)
    scope = Scope(round="第一轮", share=page_share)
    assert {c.clue_id for c in worklist(db, "li", scope)} == {*(c[0] for c in CLUES), "N5"}  # both runs
    assign(db, ["zhang", "li"], resolve_scope(db))
    for reviewer in ("zhang", "li"):
        page = {c.clue_id for c in worklist(db, reviewer, scope)}
        assert page == {s.clue_id for s in review_queue(db, reviewer, resolve_scope(db))}
    zhang = {c.clue_id for c in worklist(db, "zhang", scope)}
    assert zhang and not zhang & {"D1", "D2", "D3", "U1"}  # recused from 东城; unknown unit withheld
    clue = next_clue(db, "zhang", scope)
    assert clue is not None and clue.clue_id in zhang
    stats = page_stats(db, scope)
    assert stats.round == "第一轮" and stats.counts["clues"] == len(CLUES) + 1
