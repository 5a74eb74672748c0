"""Rounds: start, triage into, scope of review / hand-over, close."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.errors import InputError, StoreError
from pipeline.intake.rounds import close_round, list_rounds, open_round, resolve_scope, start_round
from pipeline.intake.triage import triage_file
from pipeline.intake.units import add_unit
from pipeline.review.review import clue_states
from pipeline.store.store import connect

runner = CliRunner()
DONGCHENG, NANHU, BEISHAN = "某市生态环境局东城分局", "某市生态环境局南湖县分局", "某市生态环境局北山县分局"


def _write(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"), *rows])
    return path


FILE_A = [("A1", DONGCHENG, "反映东城分局副局长王某2023年春节前收受辖区企业购物卡2万元，并为该企业环评验收开绿灯。")]
FILE_B = [
    ("B1", NANHU, "举报南湖县分局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("B2", BEISHAN, "北山县分局对散乱污企业整治态度不坚决，存在关停后又死灰复燃的情况，群众意见很大。"),
]


@pytest.fixture
def db(home):
    connection = connect(home.db_path)
    for unit in (DONGCHENG, NANHU, BEISHAN):
        add_unit(connection, unit)
    yield connection
    connection.close()


def test_a_round_covers_directory_units_and_only_one_is_open(db, tmp_path):
    with pytest.raises(InputError, match="did you mean 某市生态环境局南湖县分局"):
        start_round(db, "第一轮", [NANHU.replace("南湖", "南胡")])
    units = tmp_path / "units.txt"
    units.write_text(f"{NANHU}\n某市生态环境监测中心\n", encoding="utf-8")
    first = start_round(db, "第一轮", ["南湖县分局"], units)  # a suffix resolves; the file adds a unit
    assert first.status == "open" and first.units == (NANHU, "某市生态环境监测中心")
    with pytest.raises(StoreError, match="still open"):
        start_round(db, "第二轮", [DONGCHENG])
    assert close_round(db).status == "closed"
    with pytest.raises(StoreError, match="no round is open"):
        close_round(db)
    with pytest.raises(StoreError, match="already a round"):
        start_round(db, "第一轮", [DONGCHENG])
    start_round(db, "第二轮", [DONGCHENG])
    assert [r.name for r in list_rounds(db)] == ["第一轮", "第二轮"] and open_round(db).name == "第二轮"


def test_triage_joins_the_open_round_and_commands_default_to_it(model_home, tmp_path):
    db = connect(model_home.db_path)
    for unit in (DONGCHENG, NANHU, BEISHAN):
        add_unit(db, unit)
    a = triage_file(model_home, _write(tmp_path / "a.csv", FILE_A), tmp_path / "a.out.csv", workers=1)
    assert a.round_name is None
    assert resolve_scope(db).label == f"run {a.run_id} (latest)"
    start_round(db, "第一轮", [NANHU])
    b = triage_file(model_home, _write(tmp_path / "b.csv", FILE_B), tmp_path / "b.out.csv", workers=1)
    assert b.round_name == "第一轮" and dict(b.outside_round) == {BEISHAN: 1}
    ids = lambda scope: sorted(s.clue_id for s in clue_states(db, scope))  # noqa: E731
    assert ids(resolve_scope(db)) == ["B1", "B2"]  # the open round
    assert ids(resolve_scope(db, every=True)) == ["A1", "B1", "B2"]
    assert ids(resolve_scope(db, run=a.run_id)) == ["A1"]
    with pytest.raises(InputError, match="at most one"):
        resolve_scope(db, "第一轮", a.run_id)

    exported = runner.invoke(app, ["review", "export", "-o", str(tmp_path / "r.xlsx")])
    assert exported.exit_code == 0, exported.output
    assert "2 clue(s)" in exported.stdout and "scope: round 第一轮" in exported.stderr
    handed = runner.invoke(app, ["handover", "--all", "-o", str(tmp_path / "h.xlsx")])
    assert handed.exit_code == 0 and "scope: all clues" in handed.stderr

    close_round(db)
    refused = runner.invoke(app, ["triage", str(tmp_path / "a.csv"), "--round", "第一轮", "-o", str(tmp_path / "x.csv")])
    assert refused.exit_code == 2 and "is closed" in refused.stderr
    assert ids(resolve_scope(db, "第一轮")) == ["B1", "B2"]
    listed = json.loads(runner.invoke(app, ["rounds", "list", "--json"]).stdout)
    assert listed[0]["name"] == "第一轮" and listed[0]["status"] == "closed" and listed[0]["runs"] == [b.run_id]
    db.close()


def test_cli_rounds_start_list_close(db, tmp_path):
    started = runner.invoke(app, ["rounds", "start", "第一轮", "--unit", DONGCHENG, "--unit", NANHU])
    assert started.exit_code == 0, started.output
    assert "round 第一轮 is open" in started.stdout
    assert "第一轮" in runner.invoke(app, ["rounds", "list"]).stdout
    assert runner.invoke(app, ["rounds", "close"]).exit_code == 0
    unknown = runner.invoke(app, ["rounds", "start", "第二轮", "--unit", "某市生态环境局东成分局"])
    assert unknown.exit_code == 2 and "did you mean" in unknown.stderr
