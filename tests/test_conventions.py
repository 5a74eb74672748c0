"""Command-line conventions and Excel ergonomics (issue 13): examples in every help, --version,
--json, --quiet, readable workbooks, Chinese headers, the import's allowed list."""

from __future__ import annotations

import csv
import json

import pytest
import typer
from openpyxl import load_workbook
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError
from pipeline.intake.triage import triage_file
from pipeline.labels import parse_label
from pipeline.review.review import add_reviewer, clue_states, record_decision
from pipeline.review.workbooks import HEADERS_ZH, REVIEW_COLUMNS, export_review_sheet
from pipeline.store.store import connect

runner = CliRunner()


def _commands(group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")


def test_every_command_and_group_help_ends_with_an_example():
    root = typer.main.get_command(app)
    assert "Example:" in (root.help or "")
    missing = [name for name, command in _commands(root) if "Example" not in (command.help or "")]
    assert missing == []


def test_version_and_listed_json_options():
    assert runner.invoke(app, ["--version"]).stdout.startswith("clue-triage ")
    root = typer.main.get_command(app)
    commands = dict(_commands(root))
    for name in ("models list", "models show", "review stats", "review disputes", "history", "rounds list", "units list"):
        assert "--json" in {o for p in commands[name].params for o in p.opts}, name
    for name in ("triage", "train", "retrain"):
        assert "--quiet" in {o for p in commands[name].params for o in p.opts}, name


def test_json_outputs_parse(model_home, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"),
                                      ("J1", "某市生态环境局东城分局", "反映东城分局副局长王某收受辖区企业购物卡2万元。")])
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    db = connect(model_home.db_path)
    add_reviewer(db, "li", "李四")
    add_reviewer(db, "wang", "王五")
    key = clue_states(db)[0].clue_key
    record_decision(db, key, "li", {"attention": "further"})
    record_decision(db, key, "wang", {"attention": "aware"})
    db.close()
    assert json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)[0]["version"] == "v1"
    assert json.loads(runner.invoke(app, ["models", "show", "v1", "--json"]).stdout)["version"] == "v1"
    stats = json.loads(runner.invoke(app, ["review", "stats", "--json"]).stdout)
    assert stats["disputed"] == 1 and stats["rows"] == 2
    disputes = json.loads(runner.invoke(app, ["review", "disputes", "--json"]).stdout)
    assert disputes[0]["clue"] == "J1" and disputes[0]["reviewers"] == {"li": "further", "wang": "aware"}
    trail = json.loads(runner.invoke(app, ["history", "J1", "--json"]).stdout)
    assert trail["effective"]["attention"]["status"] == "disputed" and len(trail["trail"]) == 4


def test_triage_workbook_is_readable(model_home, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "线索内容"), ("K1", "举报某科长收受购物卡。"), ("K2", "建议加强培训。")])
    triage_file(model_home, source, tmp_path / "out.xlsx", workers=1)
    sheet = load_workbook(tmp_path / "out.xlsx").active
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:{sheet.cell(1, sheet.max_column).column_letter}3"
    assert sheet.cell(1, 1).font.b and sheet.column_dimensions["B"].width == 60


def test_review_sheet_headers_are_chinese_unless_en(model_home, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "线索内容"), ("K1", "举报某科长收受购物卡。")])
    triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    db = connect(model_home.db_path)
    export_review_sheet(db, tmp_path / "zh.xlsx")
    export_review_sheet(db, tmp_path / "en.xlsx", headers="en")
    assert [c.value for c in load_workbook(tmp_path / "zh.xlsx").active[1]] == [HEADERS_ZH[n] for n, _ in REVIEW_COLUMNS]
    assert [c.value for c in load_workbook(tmp_path / "en.xlsx").active[1]] == [n for n, _ in REVIEW_COLUMNS]
    with pytest.raises(InputError, match="header style"):
        export_review_sheet(db, tmp_path / "x.xlsx", headers="fr")
    db.close()
    result = runner.invoke(app, ["review", "export", "--headers", "en", "-o", str(tmp_path / "cli.xlsx")])
    assert result.exit_code == 0 and "(owner-only)" in result.stdout


def test_the_allowed_list_of_an_import_error_matches_the_drop_down():
    with pytest.raises(InputError, match="allowed: 政策落实、从严治党、组织路线、巡察整改"):
        parse_label("area", "别的")


def test_report_and_verify_in_a_home_without_a_store_say_so(tmp_path):
    """An empty report or a 'store OK' for a home that has no store would mislead."""
    from typer.testing import CliRunner

    from cli import app

    empty = tmp_path / "empty-home"
    empty.mkdir()
    runner = CliRunner()
    for args in (["report", "-o", str(tmp_path / "r.xlsx")], ["verify"], ["rounds", "list"]):
        result = runner.invoke(app, ["--home", str(empty), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "no store" in result.output
    assert not (empty / "var" / "clue-triage.db").exists()
    assert not (tmp_path / "r.xlsx").exists()
