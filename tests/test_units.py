"""The unit directory: resolution, recusal on resolved units, unknown units, ended recusals."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError, StoreError
from pipeline.intake.triage import TriageStart, triage_file
from pipeline.intake.units import add_unit, import_units, list_units, load_directory, unit_warnings
from pipeline.review.assignments import review_queue
from pipeline.review.review import add_reviewer, end_recusal, get_reviewer, recuse
from pipeline.review.workbooks import export_review_sheet
from pipeline.store.store import connect

runner = CliRunner()
DONGCHENG, NANHU, BEISHAN = "某市生态环境局东城分局", "某市生态环境局南湖县分局", "某市生态环境局北山县分局"


@pytest.fixture
def db(home):
    connection = connect(home.db_path)
    add_unit(connection, DONGCHENG, ["东城分局", "东城局"], kind="分局", parent="某市生态环境局")
    add_unit(connection, NANHU, ["南湖分局"])
    add_unit(connection, BEISHAN)
    yield connection
    connection.close()


@pytest.mark.parametrize(("written", "how", "name"), [
    (DONGCHENG, "name", DONGCHENG),
    ("某市生態環境局東城分局", "name", DONGCHENG),  # Traditional
    ("某市生态环境局　东城分局 ", "name", DONGCHENG),  # full-width space, trailing space
    ("东城分局", "alias", DONGCHENG),
    ("東城局", "alias", DONGCHENG),
    ("南湖县分局", "suffix", NANHU),  # the end of exactly one name
    ("ＮＡＮＨＵ", "unresolved", None),
    ("某市生态环境局东成分局", "unresolved", None),  # a typo stays as written
    ("", "empty", None),
])
def test_resolution(db, written, how, name):
    res = load_directory(db).resolve(written)
    assert res.how == how
    assert (res.unit.name if res.unit else None) == name


def test_schema_of_the_directory_and_recusal_log(db):
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"units", "unit_aliases", "recusal_log"} <= tables
    triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"recusals_no_delete", "recusal_log_no_update", "recusal_log_no_delete"} <= triggers
    assert {r[1] for r in db.execute("PRAGMA table_info(units)")} == {"unit_key", "name", "kind", "parent", "created"}


def test_an_alias_cannot_stand_for_two_units(db):
    with pytest.raises(InputError, match="already stands for"):
        add_unit(db, NANHU, ["东城分局"])
    assert [u.name for u in list_units(db)] == sorted([DONGCHENG, NANHU, BEISHAN])


def test_import_reads_names_aliases_kind_and_parent(home, tmp_path):
    path = tmp_path / "units.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["单位名称", "别名", "类型", "上级单位"],
                                      [DONGCHENG, "东城分局、东城局", "分局", "某市生态环境局"],
                                      [NANHU, "", "分局", "某市生态环境局"]])
    db = connect(home.db_path)
    result = import_units(db, path)
    assert (result.units, result.added) == (2, 2)
    unit = load_directory(db).resolve("东城局").unit
    assert unit is not None and unit.kind == "分局" and unit.parent == "某市生态环境局"
    db.close()


def test_recusal_warns_with_the_nearest_names_and_ends_with_a_reason(db):
    [warning] = unit_warnings(db, ["某市生态环境局东成分局"])
    assert warning.startswith("unit '某市生态环境局东成分局' is not in the unit directory; did you mean: 某市生态环境局东城分局")
    assert unit_warnings(db, ["东城分局"]) == []
    add_reviewer(db, "zhang", "张三", ["东城分局"])  # an alias: the recusal is on the unit
    assert db.execute("SELECT unit_key FROM recusals").fetchone()[0] == load_directory(db).resolve(DONGCHENG).key
    with pytest.raises(InputError, match="reason"):
        end_recusal(db, "zhang", DONGCHENG, " ")
    with pytest.raises(StoreError, match="not recused from"):
        end_recusal(db, "zhang", NANHU, "typo")
    assert end_recusal(db, "zhang", "東城分局", "调离该单位已满三年").recused == ()
    recuse(db, "zhang", [DONGCHENG], reason="重新回避")
    log = [(r["action"], r["reason"]) for r in db.execute("SELECT * FROM recusal_log ORDER BY log_id")]
    assert log == [("recuse", ""), ("end", "调离该单位已满三年"), ("recuse", "重新回避")]
    assert get_reviewer(db, "zhang").recused == (DONGCHENG,)
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        db.execute("DELETE FROM recusals")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM recusal_log")


def _clue_file(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


TEXTS = [
    "反映东城分局副局长王某2023年春节前收受辖区企业购物卡2万元，并为该企业环评验收开绿灯。",
    "举报南湖县分局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。",
    "部分乡镇对散乱污企业整治态度不坚决，存在关停后又死灰复燃的情况，群众意见很大。",
    "上一轮巡察反馈的公务用车管理问题，整改台账只有表态没有措施，至今未见成效。",
]


def test_triage_resolves_units_from_a_unit_name_column_and_counts_the_rest(model_home, tmp_path):
    db = connect(model_home.db_path)
    add_unit(db, DONGCHENG, ["东城分局"])
    add_unit(db, NANHU)
    add_reviewer(db, "zhang", "张三", [DONGCHENG])
    source = _clue_file(tmp_path / "in.csv", ["编号", "单位名称", "线索内容"], [
        ["A1", "东城分局", TEXTS[0]], ["A2", "南湖县分局", TEXTS[1]], ["A3", "东成分局", TEXTS[2]], ["A4", "", TEXTS[3]]])
    summary = triage_file(model_home, source, tmp_path / "out.csv", workers=1)
    assert summary.unit_column == "单位名称"
    assert summary.unresolved_units == {"东成分局": 1} and summary.no_unit == 1
    keys = dict(db.execute("SELECT clue_id, unit_key FROM clues").fetchall())
    directory = load_directory(db)
    assert keys["A1"] == directory.resolve(DONGCHENG).key and keys["A2"] == directory.resolve(NANHU).key
    # zhang (recused) gets neither 东城 nor the unknown units (a typo, no unit) …
    assert [s.clue_id for s in review_queue(db, "zhang")] == ["A2"]
    assert export_review_sheet(db, tmp_path / "z.xlsx", reviewer_id="zhang") == 1
    # … unless asked; the recused unit itself never
    assert sorted(s.clue_id for s in review_queue(db, "zhang", include_unknown_units=True)) == ["A2", "A3", "A4"]
    # a reviewer without recusals gets everything
    add_reviewer(db, "li", "李四")
    assert len(review_queue(db, "li")) == 4
    # a unit added after the triage is resolved in the store too
    add_unit(db, DONGCHENG, ["东成分局"])
    assert [s.clue_id for s in review_queue(db, "zhang", include_unknown_units=True)] != []
    assert "A3" not in [s.clue_id for s in review_queue(db, "zhang", include_unknown_units=True)]
    db.close()


def test_triage_without_a_unit_column_says_so(model_home, tmp_path):
    source = _clue_file(tmp_path / "in.csv", ["编号", "线索内容"], [["B1", TEXTS[0]], ["B2", TEXTS[1]]])
    starts: list[TriageStart] = []
    summary = triage_file(model_home, source, tmp_path / "out.csv", workers=1, on_start=starts.append)
    assert summary.unit_column is None and summary.no_unit == 2
    assert any("no unit column" in w and "recusal cannot be applied" in w for w in starts[0].notices)
    result = runner.invoke(app, ["triage", str(source), "-o", str(tmp_path / "out2.csv")])
    assert result.exit_code == 0, result.output
    assert "no unit column" in result.stderr
    assert "recusal cannot be applied to 2 clue(s)" in result.stdout


def test_cli_units_and_recusal(home, tmp_path):
    assert runner.invoke(app, ["units", "add", DONGCHENG, "--alias", "东城分局"]).exit_code == 0
    listed = runner.invoke(app, ["units", "list", "--json"])
    assert json.loads(listed.stdout) == [{"name": DONGCHENG, "aliases": ["东城分局"], "kind": "", "parent": ""}]
    added = runner.invoke(app, ["reviewers", "add", "zhang", "--name", "张三", "--recuse", "某市生态环境局东成分局"])
    assert added.exit_code == 0
    assert "not in the unit directory; did you mean: 某市生态环境局东城分局?" in added.stderr
    ended = runner.invoke(app, ["reviewers", "unrecuse", "zhang", "某市生态环境局东成分局", "--reason", "录入错误"])
    assert ended.exit_code == 0, ended.output
    assert "recused from: none" in ended.stdout
    again = runner.invoke(app, ["reviewers", "recuse", "zhang", "东城分局"])
    assert again.exit_code == 0 and DONGCHENG not in again.stderr and "东城分局" in again.stdout
    missing = runner.invoke(app, ["reviewers", "unrecuse", "zhang", DONGCHENG])
    assert missing.exit_code == 2 and "--reason" in missing.output
