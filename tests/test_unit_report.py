"""The report per unit: its numbers equal those of `review stats` and `handover`; .xlsx and .html."""

from __future__ import annotations

import csv
import stat

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from cli import app
from pipeline.intake.rounds import resolve_scope, start_round
from pipeline.intake.triage import triage_file
from pipeline.intake.units import add_unit
from pipeline.review.review import add_reviewer, clue_states, record_decision, review_stats
from pipeline.review.unit_report import SUMMARY_COLUMNS, build_report, write_report
from pipeline.review.workbooks import write_handover
from pipeline.store.store import connect

runner = CliRunner()
DONGCHENG, NANHU, BEISHAN = "某市生态环境局东城分局", "某市生态环境局南湖县分局", "某市生态环境局北山县分局"
LETTER = "反映东城分局副局长王某2023年春节前收受辖区企业购物卡2万元，并为该企业环评验收开绿灯，请组织调查。"
CLUES = [
    ("R1", DONGCHENG, LETTER),
    ("R2", "东城分局", "再次反映：" + LETTER),  # a repeat, the unit by its alias
    ("R3", DONGCHENG, "干部反映近年来东城分局年轻干部交流锻炼机会偏少，人才断层比较明显。"),
    ("R4", NANHU, "举报南湖县分局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("R5", NANHU, "上一轮巡察反馈的公务用车管理问题，南湖县分局整改台账只有表态没有措施，至今未见成效。"),
    ("R6", NANHU, "建议加强基层环境监测站人员培训，提高监测数据质量。"),
    ("R7", "", "分局党组会议记录不全，三重一大事项未经集体研究就由主要负责人拍板。"),
]


@pytest.fixture
def reviewed(model_home, tmp_path):
    db = connect(model_home.db_path)
    add_unit(db, DONGCHENG, ["东城分局"])
    add_unit(db, NANHU)
    add_unit(db, BEISHAN)
    start_round(db, "第一轮", [DONGCHENG, NANHU, BEISHAN])
    source = tmp_path / "clues.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"), *CLUES])
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    add_reviewer(db, "li", "李四")
    add_reviewer(db, "wang", "王五")
    states = {s.clue_id: s for s in clue_states(db)}
    record_decision(db, states["R1"].clue_key, "li", {"attention": "further", "area": "discipline"})
    record_decision(db, states["R4"].clue_key, "li", {"attention": "further", "area": "organization"})
    record_decision(db, states["R4"].clue_key, "wang", {"attention": "aware", "area": "organization"})  # a dispute
    yield db
    db.close()


def test_report_numbers_equal_review_stats_and_handover(reviewed, tmp_path):
    db = reviewed
    scope = resolve_scope(db)
    report = build_report(db, scope)
    handed = write_handover(db, tmp_path / "h.xlsx", scope)
    assert report.handover == handed.sheets and report.pending == handed.pending
    assert report.disputed_heads == review_stats(db, scope).disputed == 1
    assert report.total.matters == sum(handed.sheets.values()) + handed.pending == 6  # R1 and R2 are one matter
    assert report.total.reports == 7
    by_unit = {u.unit: u for u in report.units}
    assert list(by_unit) == [DONGCHENG, NANHU, BEISHAN, "(未填单位)"]  # the round's units first, even with no clue
    assert (by_unit[DONGCHENG].matters, by_unit[DONGCHENG].reports) == (2, 3)
    assert by_unit[BEISHAN].matters == 0 and by_unit[NANHU].disputed == 1
    assert not by_unit["(未填单位)"].in_directory
    for unit in report.units:
        assert sum(unit.cells.values()) == unit.matters
    assert sum(u.handover[b] for u in report.units for b in u.handover) == sum(handed.sheets.values())


def test_report_workbook_and_html(reviewed, tmp_path):
    report = build_report(reviewed, resolve_scope(reviewed))
    xlsx = write_report(report, tmp_path / "巡察线索汇总.xlsx")
    assert stat.S_IMODE(xlsx.stat().st_mode) == 0o600
    book = load_workbook(xlsx)
    assert book.sheetnames == ["汇总", "关注类别×领域", "移交去向", "说明"]
    summary = book["汇总"]
    assert summary.freeze_panes == "A2" and summary.auto_filter.ref
    assert [c.value for c in summary[1]] == [name for name, _ in SUMMARY_COLUMNS]
    total = [c.value for c in summary[summary.max_row]]
    assert total[:3] == ["合计", 6, 7]
    page = write_report(report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 1 + sum(1 for u in report.units if u.matters)
    assert "巡察线索汇总" in page and DONGCHENG in page and "http" not in page.split("<svg", 1)[0]


def test_cli_report(reviewed, tmp_path):
    result = runner.invoke(app, ["report", "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "scope: round 第一轮" in result.stderr and "6 matter(s) from 7 report(s)" in result.stdout
    bad = runner.invoke(app, ["report", "-o", str(tmp_path / "r.pdf")])
    assert bad.exit_code == 2 and ".xlsx or .html" in bad.stderr
