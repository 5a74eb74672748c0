"""Repeat clues: grouping quality (paraphrase table, corpus), and groups in triage, review and hand-over."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from pipeline.intake.repeats import canonical, group_texts, signatures, text_hash
from pipeline.intake.triage import triage_file
from pipeline.paths import CORPUS_PATH
from pipeline.review.assignments import review_queue
from pipeline.review.review import add_reviewer, clue_states, group_members, record_decision
from pipeline.review.workbooks import (
    REVIEW_COLUMNS,
    export_review_sheet,
    import_review_sheet,
    write_handover,
)
from pipeline.store.store import connect, unit_key

#: the same matter reported twice in different words (a letter sent again with changes, a
#: second writer, a talk note and a letter): each pair must be one group
PAIRS = [
    ("反映东城分局执法二中队中队长刘某某去年10月检查宏达精细化工时查出废水直排，后来没了下文，检查后第三天晚上刘某某到厂里收了老板两万块茶钱。",
     "再次反映：东城分局执法二中队刘某某中队长，去年10月检查宏达精细化工发现废水直排，事后不了了之。检查后第三天晚上他到厂里拿了老板给的两万块“茶钱”，请巡察组查处。"),
    ("举报南湖县分局办公室主任李某任职不满两年被突击提拔，其干部档案中出生日期存在涂改。",
     "南湖县分局办公室主任李某任职不满两年就被突击提拔为副局长，他的干部档案出生日期有涂改痕迹，希望组织核查。"),
    ("分局党组会议记录不全，三重一大事项未经集体研究就由主要负责人拍板，2023年的办公楼维修项目就是这样定的。",
     "談話中有同志反映：分局黨組會議記錄不全，「三重一大」事項未經集體研究由主要負責人拍板，2023年辦公樓維修項目即如此。"),
    ("上一轮巡察反馈的公务用车管理问题，整改台账只有表态没有措施，至今未见成效，公车私用仍然存在。",
     "上轮巡察指出的公务用车管理问题，整改台账只有表态、没有具体措施，到现在也没见成效，公车私用照旧。"),
    ("监测站站长张某要求第三方运维公司修改在线监控数据，2023年8月青河区化工园区两个点位的超标数据被人为改小。",
     "实名举报：监测站张站长让第三方运维公司改在线监控数据，2023年8月青河区化工园区有两个点位超标数据被人为改小了。"),
    ("财务科长王某用虚开的会议费发票报销，2022年共报销4.6万元，实际没有开过这些会。",
     "财务科王科长2022年用虚开的会议费发票报销了4.6万元，这些会议实际都没开过，请查一查。"),
    ("北山县分局局长的小舅子开的环保工程公司，近三年承接了分局七个污染治理项目，都没有公开招标。",
     "北山县分局局长小舅子开的环保工程公司近三年拿到分局7个污染治理项目，全部没有公开招标，明显是利益输送。"),
    ("临江县分局2023年中秋前用公款购买购物卡发给全体职工，每人1000元，列支在办公经费里。",
     "反映临江县分局在2023年中秋节前用公款买购物卡给全体职工发放，每人1000元，费用列在办公经费中。"),
    ("执法支队副支队长陈某长期在辖区企业吃喝，逢年过节收受企业送的土特产和烟酒，群众看在眼里。",
     "执法支队陈副支队长长期在辖区企业吃吃喝喝，逢年过节还收企业送的土特产、烟酒，群众都看在眼里。"),
    ("环评科对企业环评审批故意拖延，不送钱就不办，宏远建材的项目拖了八个月，老板找了科长吃饭送礼才批下来。",
     "环评科审批故意拖延，不送钱不办事，宏远建材项目被拖了8个月，老板请科长吃饭送礼后才批下来，营商环境很差。"),
    ("清水镇环保员吴某长期不上班，工资照领，实际在县城开了一家饭店。",
     "清水镇的环保员吴某长期不到岗上班，工资一分不少照领，人实际上在县城开饭店。"),
    ("水务集团2022年污水处理厂提标改造工程结算价比中标价高出三成，变更签证没有经过集体研究。",
     "水务集团2022年污水处理厂提标改造工程，结算价比中标价高出30%，工程变更签证未经集体研究决定。"),
    ("固废中心主任的儿子在危废处置公司任副总，中心多次把危废转运业务交给这家公司。",
     "固废中心主任儿子在一家危废处置公司当副总，中心多次把危废转运业务给了这家公司，存在利益冲突。"),
    ("局机关三会一课流于形式，支部组织生活会批评与自我批评不见辣味，会议记录是事后补写的。",
     "局机关支部三会一课流于形式，组织生活会上批评和自我批评没有辣味，会议记录都是事后补的。"),
    ("上次督察反馈的城北新区黑臭水体问题，整改方案照搬上级文件，整改完成率注水，水体现在还是黑臭。",
     "城北新区黑臭水体问题是上次督察反馈的，整改方案照搬上级文件，整改完成率有水分，现在水体依旧黑臭。"),
    ("职业技术学校校长违规发放津补贴，2023年以课时费名义给班子成员每人多发2万元。",
     "反映职业技术学校校长违规发津补贴：2023年以课时费的名义给班子成员每人多发了2万元。"),
    ("西城分局副局长赵某在2023年6月的干部选拔中搞任人唯亲，把自己的老乡提拔为执法中队长。",
     "西城分局赵副局长在2023年6月干部选拔中任人唯亲，把老乡提拔当了执法中队长，大家意见很大。"),
    ("投资集团下属公司长期借调人员在局机关上班，工资由公司发放，已经借调三年多。",
     "投资集团下属公司的人员长期被借调到局机关上班，工资却由公司发放，借调已三年多了。"),
    ("某化工厂夜间偷排废气，附近居民多次向分局投诉，分局每次都说已经处理，但偷排一直没停。",
     "附近居民多次向分局投诉某化工厂夜间偷排废气，分局每次回复已处理，可偷排从来没停过。"),
    ("监测中心副主任刘某利用职权为其亲属开办的检测公司介绍业务，2022年以来介绍了十几单。",
     "监测中心刘副主任利用职权给亲属开的检测公司介绍业务，2022年以来介绍了十多单生意。"),
]


def test_paraphrased_repeats_are_found():
    found = sum(len(set(group_texts([a, b]))) == 1 for a, b in PAIRS)
    assert found / len(PAIRS) >= 0.95, f"{found} of {len(PAIRS)} pairs grouped"


def test_fewer_than_one_percent_of_corpus_clues_are_grouped_falsely():
    """The corpus has no repeated matter: every clue in a group of two or more is a false grouping."""
    rows = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    groups = group_texts([r["text"] for r in rows], [unit_key(r.get("unit", "")) for r in rows])
    grouped = sum(n for n in Counter(groups).values() if n > 1)
    assert grouped / len(rows) < 0.01, f"{grouped} of {len(rows)} corpus clues grouped"


@pytest.mark.parametrize(("a", "b"), [
    ("反映東城分局副局長王某收受購物卡２萬元。", "反映东城分局副局长王某收受购物卡2万元"),  # script, width, punctuation
    ("举报 李某 被突击提拔！", "举报李某被突击提拔"),
])
def test_exact_duplicates_ignore_script_width_punctuation_and_spaces(a, b):
    assert text_hash(canonical(a)) == text_hash(canonical(b))
    assert (signatures([canonical(a)]) == signatures([canonical(b)])).all()


def test_a_template_sentence_about_two_units_is_two_matters():
    text = "该局办公用房面积超标，主要负责人办公室面积达到42平方米，远超规定标准。"
    assert len(set(group_texts([text, text.replace("42", "45")], ["东城分局", "南湖分局"]))) == 2
    assert len(set(group_texts([text, text.replace("42", "45")], ["东城分局", ""]))) == 1  # unknown unit: may be one


UNIT = "某市生态环境局东城分局"
A, B, C = PAIRS[0][0], PAIRS[1][0], PAIRS[5][0]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "被巡察单位", "线索内容"), *[(i, UNIT, t) for i, t in rows]])
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_groups_across_runs_in_review_and_hand_over(model_home, tmp_path):
    first = triage_file(model_home, _write(tmp_path / "a.csv", [("X1", A), ("X2", B), ("X3", A)]), tmp_path / "a.out.csv",
                        workers=1)
    rows = _read(tmp_path / "a.out.csv")
    assert [r["repeat_of"] for r in rows] == ["", "", "X1"]  # a duplicate row in one file is flagged
    assert rows[0]["group_id"] == rows[2]["group_id"] != rows[1]["group_id"]
    assert first.repeats == 1
    second = triage_file(model_home, _write(tmp_path / "b.csv", [("Y1", PAIRS[0][1]), ("Y2", C)]), tmp_path / "b.out.csv",
                         workers=1)
    rows2 = _read(tmp_path / "b.out.csv")
    assert rows2[0]["repeat_of"] == "X1" and rows2[0]["group_id"] == rows[0]["group_id"]  # across runs
    assert rows2[1]["repeat_of"] == "" and second.repeats == 1

    db = connect(model_home.db_path)
    add_reviewer(db, "li", "李四")
    queue = review_queue(db, "li")
    assert len(queue) == 3 and len({s.group_key for s in queue}) == 3  # X1/X3/Y1 once, X2, Y2
    group = next(s for s in queue if s.clue_id in ("X1", "Y1"))
    record_decision(db, group.clue_key, "li", {"attention": "further", "area": "discipline"}, reason="点名道姓")
    states = {s.clue_id: s for s in clue_states(db)}
    assert states["Y1"].effective() == states["X1"].effective() == {"attention": "further", "area": "discipline"}
    assert {d.reviewer_id for d in states["Y1"].rows} == {"li"} and len(states["Y1"].rows) == 2  # recorded per clue
    members = group_members(db, group.clue_key)  # the clue first, then the others of its group in store order
    same = [s.clue_key for s in states.values() if s.group_key == group.group_key]
    assert len(same) >= 2 and members[0] == group.clue_key and sorted(members) == sorted(same)
    assert group_members(db, states["X2"].clue_key) == [states["X2"].clue_key]
    assert [s.clue_id for s in review_queue(db, "li")] == [s.clue_id for s in queue if s.group_key != group.group_key]

    result = write_handover(db, tmp_path / "h.xlsx")
    book = load_workbook(tmp_path / "h.xlsx")
    handed = [dict(zip([c.value for c in sheet[1]], [c.value for c in row], strict=True))
              for sheet in book.worksheets for row in sheet.iter_rows(min_row=2)]
    assert sum(result.sheets.values()) + result.pending == 3  # one row per matter
    reported = next(r for r in handed if r["编号"] in ("X1", "Y1"))
    assert reported["反映次数"] == 3
    assert set(reported["同一问题其他编号"].split("、")) == {"X1", "X3", "Y1"} - {reported["编号"]}

    sheet_path = tmp_path / "r.xlsx"
    assert export_review_sheet(db, sheet_path, reviewer_id="li") == 3
    sheet = load_workbook(sheet_path).active
    column = {name: i for i, (name, _) in enumerate(REVIEW_COLUMNS, 1)}
    by_id = {sheet.cell(r, column["id"]).value: r for r in range(2, sheet.max_row + 1)}
    decided = by_id.get("X1") or by_id["Y1"]
    assert sheet.cell(decided, column["reports"]).value == 3
    assert sheet.cell(decided, column["reviewed_area"]).value == "从严治党"  # the reviewer's own earlier decision
    other = by_id["X2"]
    book = load_workbook(sheet_path)
    book.active.cell(other, column["reviewed_attention"]).value = "参考类"
    book.save(tmp_path / "filled.xlsx")
    imported = import_review_sheet(db, tmp_path / "filled.xlsx", "li")
    assert imported.recorded == {"attention": 1} and imported.members == 0
    db.close()


def _distinct_corpus_texts(count: int, apart_from: list[str]) -> list[str]:
    """Corpus texts that are neither repeats of each other nor of ``apart_from``."""
    rows = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = apart_from + [r["text"] for r in rows]
    groups = group_texts(texts)
    taken = set(groups[:len(apart_from)])
    out = []
    for text, group in zip(texts[len(apart_from):], groups[len(apart_from):], strict=True):
        if group not in taken:
            taken.add(group)
            out.append(text)
    return out[:count]


def test_a_window_of_the_latest_clues_groups_recent_repeats_as_one_holding_everything():
    """Dropping the older generation of the window renumbers the index, its chains and the
    groups in place: repeats of clues still in the window are placed as before, and the
    index never holds more than the window."""
    from pipeline.intake.repeats import Grouper

    filler = _distinct_corpus_texts(5 * len(PAIRS), [t for pair in PAIRS for t in pair])
    texts = [t for i, (a, b) in enumerate(PAIRS) for t in (a, *filler[5 * i:5 * i + 3], b, *filler[5 * i + 3:5 * i + 5])]
    clues = _clues(texts + texts[:3])  # and exact copies of the first (new clue keys)
    everything, windowed = Grouper(), Grouper(window=30)
    kept, dropped, held = [], [], []
    for lo in range(0, len(clues), 7):
        kept += everything.place(clues[lo:lo + 7])
        dropped += windowed.place(clues[lo:lo + 7])
        held.append(len(windowed.index))
    assert dropped[:len(texts)] == kept[:len(texts)] and sum(bool(p.repeat_of) for p in kept[:len(texts)]) >= 19
    assert max(held) <= 30 and len(everything.index) == len(clues)
    # without a store, an exact copy of a clue the window dropped is a new matter
    assert all(not p.repeat_of for p in dropped[len(texts):]) and all(p.repeat_of for p in kept[len(texts):])


def test_near_repeats_are_found_in_a_window_of_the_latest_clues_exact_repeats_in_the_whole_store(
        model_home, tmp_path, monkeypatch):
    """WINDOW: the index holds the latest clues only (here 50). A near repeat of a clue inside
    the window is grouped with it, of a clue older than the window is not (the documented
    trade-off); an exact repeat of an older clue is found in the store (m025: by text hash),
    in one run and across runs, and a stored clue that comes again keeps its stored group."""
    from pipeline.intake import repeats, triage
    from pipeline.intake.repeats import Grouper

    monkeypatch.setattr(repeats, "WINDOW", 50)
    monkeypatch.setattr(triage, "BATCH_SIZE", 10)
    monkeypatch.setattr(triage, "STORE_EVERY", 1)  # every batch stored (runs store every 5,000 rows)
    old, near_old, recent = PAIRS[0], PAIRS[1], PAIRS[2]
    filler = _distinct_corpus_texts(75, [t for pair in PAIRS for t in pair])
    assert len(filler) == 75
    first = [("X0", old[0]), ("X1", near_old[0]), *[(f"F{i}", t) for i, t in enumerate(filler[:60])],
             ("E1", " ".join(old[0]) + "！"),  # the same canonical text as X0, another clue key
             ("N1", near_old[1]),  # a near repeat of X1, which is older than the window
             ("W0", recent[0]), *[(f"G{i}", t) for i, t in enumerate(filler[60:70])], ("W1", recent[1])]
    triage_file(model_home, _write(tmp_path / "a.csv", first), tmp_path / "a.out.csv", workers=1)
    rows = {r["编号"]: r for r in _read(tmp_path / "a.out.csv")}
    assert rows["E1"]["repeat_of"] == "X0" and rows["E1"]["group_id"] == rows["X0"]["group_id"]
    assert rows["N1"]["repeat_of"] == "" and rows["N1"]["group_id"] != rows["X1"]["group_id"]
    assert rows["W1"]["repeat_of"] == "W0" and rows["W1"]["group_id"] == rows["W0"]["group_id"]
    assert sum(bool(r["repeat_of"]) for r in rows.values()) == 2

    db = connect(model_home.db_path)
    assert "signatures_by_text_hash" in {r[1] for r in db.execute("PRAGMA index_list(clue_signatures)")}
    assert len(Grouper.from_store(db).index) == 50  # the latest 50 of 75 grouped clues
    db.close()
    second = [("E2", old[0] + "。。"), ("H0", filler[70]), ("X0", old[0])]
    triage_file(model_home, _write(tmp_path / "b.csv", second), tmp_path / "b.out.csv", workers=1)
    rows2 = {r["编号"]: r for r in _read(tmp_path / "b.out.csv")}
    assert rows2["E2"]["repeat_of"] == "X0" and rows2["E2"]["group_id"] == rows["X0"]["group_id"]  # across runs
    assert rows2["X0"]["group_id"] == rows["X0"]["group_id"]  # stored before the window: its stored group


def test_several_stored_clues_older_than_the_window_come_again_in_one_batch(model_home, tmp_path, monkeypatch):
    """Re-triaging a file larger than the window into the store that holds it: a batch meets
    several clues stored before the window. Their stored groups are read back (sorted by
    stored order; sqlite3.Row does not compare, so sorting the rows themselves failed as
    soon as a batch held two of them)."""
    from pipeline.intake import repeats, triage

    monkeypatch.setattr(repeats, "WINDOW", 50)
    monkeypatch.setattr(triage, "BATCH_SIZE", 10)
    monkeypatch.setattr(triage, "STORE_EVERY", 1)
    filler = _distinct_corpus_texts(75, [t for pair in PAIRS for t in pair])
    rows = [(f"F{i}", t) for i, t in enumerate(filler)]
    triage_file(model_home, _write(tmp_path / "a.csv", rows), tmp_path / "a.out.csv", workers=1)
    first = {r["编号"]: r for r in _read(tmp_path / "a.out.csv")}
    triage_file(model_home, _write(tmp_path / "b.csv", rows[:5]), tmp_path / "b.out.csv", workers=1)
    again = _read(tmp_path / "b.out.csv")
    assert [r["status"] for r in again] == ["ok"] * 5
    assert all(r["group_id"] == first[r["编号"]]["group_id"] for r in again)


def test_the_grouper_read_back_in_small_chunks_is_the_one_read_at_once(model_home, tmp_path):
    """from_store reads the window a chunk at a time (5,000 rows: linking 50,000 clues' band
    entries at once peaked at 728 MB for a 250,000-clue window, 5,000 at 221 MB); the chunk
    size must not change what it holds."""
    from pipeline.intake.repeats import Grouper

    texts = _distinct_corpus_texts(40, [t for pair in PAIRS for t in pair])
    rows = [(f"F{i}", t) for i, t in enumerate(texts)] + [("R0", PAIRS[0][0]), ("R1", PAIRS[0][1])]
    triage_file(model_home, _write(tmp_path / "a.csv", rows), tmp_path / "a.out.csv", workers=1)
    db = connect(model_home.db_path)
    try:
        small, whole = Grouper.from_store(db, chunk=3), Grouper.from_store(db, chunk=1000)
        n = len(whole.index)
        assert n == len(small.index) == 42
        assert np.array_equal(small.index.groups[:n], whole.index.groups[:n])
        assert np.array_equal(small._key64[:n], whole._key64[:n])
        assert small._names(list(range(n))) == whole._names(list(range(n)))
    finally:
        db.close()


def test_a_clue_twice_in_one_run_is_a_repeat_even_when_the_window_dropped_its_first_copy(
        model_home, tmp_path, monkeypatch):
    """The same row twice in one file is flagged as a repeat of itself (issue 13); that holds
    when the first copy left the window before the second came (it is read back from the
    store then), as it holds inside the window."""
    from pipeline.intake import repeats, triage

    monkeypatch.setattr(repeats, "WINDOW", 50)
    monkeypatch.setattr(triage, "BATCH_SIZE", 10)
    monkeypatch.setattr(triage, "STORE_EVERY", 1)
    filler = _distinct_corpus_texts(75, [t for pair in PAIRS for t in pair])
    rows = [("X0", filler[74]), *[(f"F{i}", t) for i, t in enumerate(filler[:70])], ("X0", filler[74])]
    triage_file(model_home, _write(tmp_path / "a.csv", rows), tmp_path / "a.out.csv", workers=1)
    out = _read(tmp_path / "a.out.csv")
    assert out[0]["repeat_of"] == "" and out[-1]["repeat_of"] == "X0"
    assert out[-1]["group_id"] == out[0]["group_id"]
    # the window may drop only clues already written to the store: a setting that breaks it is refused
    monkeypatch.setattr(triage, "STORE_EVERY", 100)
    with pytest.raises(RuntimeError, match="half the repeat window"):
        triage_file(model_home, _write(tmp_path / "b.csv", rows[:3]), tmp_path / "b.out.csv", workers=1)
    assert not (tmp_path / "b.out.csv").exists()
    db = connect(model_home.db_path)
    try:
        assert [r[0] for r in db.execute("SELECT status FROM runs ORDER BY run_id")][-1] == "failed"
    finally:
        db.close()


def test_history_of_an_id_stored_with_and_without_a_unit(model_home, tmp_path):
    """The same clue in two files, once with its unit and once without: two clues of one
    matter; `history ID` shows both instead of refusing."""
    from typer.testing import CliRunner

    from cli import app

    _write(tmp_path / "a.csv", [("H1", A)])
    no_unit = tmp_path / "b.csv"
    with open(no_unit, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([("编号", "线索内容"), ("H1", A)])
    triage_file(model_home, tmp_path / "a.csv", tmp_path / "a.out.csv", workers=1)
    triage_file(model_home, no_unit, tmp_path / "b.out.csv", workers=1)
    assert _read(tmp_path / "b.out.csv")[0]["repeat_of"] == "H1"
    result = CliRunner().invoke(app, ["history", "H1"])
    assert result.exit_code == 0, result.output
    assert "also names 1 other report(s) of this matter" in result.stdout


def _clues(texts, units=None):
    from pipeline.intake.repeats import Clue

    canon = [canonical(t) for t in texts]
    sigs = signatures(canon)
    return [Clue(text_hash(f"key {t} {i}"), f"ID{i}", (units or [""] * len(texts))[i], text_hash(c), sigs[i], c)
            for i, (t, c) in enumerate(zip(texts, canon, strict=True))]


def test_canonical_forms_of_a_batch_are_each_text_s_own():
    from pipeline.intake.repeats import canonical_of_normalized, canonicals_of_normalized

    every = "".join(map(chr, range(0x110000)))  # surrogates and astral code points included
    texts = ["", A, " 甲，乙。 ", "a_b-c", "😀 ①Ⅻ𠀀", "", "\ud800x", "，", every, "甲"]
    assert canonicals_of_normalized(texts) == [canonical_of_normalized(t) for t in texts]
    assert canonicals_of_normalized([]) == [] and canonicals_of_normalized(["", "。"]) == ["", ""]


def _plain_signature(text):
    """One-permutation MinHash of one text as :func:`signatures` defines it, one bigram at a time."""
    from pipeline.intake.repeats import EMPTY, NUM_PERM

    bins = [EMPTY] * NUM_PERM
    for x, y in zip(text, text[1:], strict=False):
        hashed = (((ord(x) << 21 | ord(y)) * 0x9E3779B97F4A7C15) % 2**64) >> 32
        bins[hashed >> 26] = min(bins[hashed >> 26], hashed & (2**26 - 1))
    if all(v == EMPTY for v in bins):
        return bins
    out = []
    for j in range(NUM_PERM):  # an empty bin: the next filled one to its right, going round
        distance = next(d for d in range(NUM_PERM) if bins[(j + d) % NUM_PERM] != EMPTY)
        out.append(bins[(j + distance) % NUM_PERM] + (distance << 26))
    return out


def test_signatures_of_a_batch_are_each_text_s_own_one_permutation_minhash():
    texts = ["", canonical(A), "甲", "甲乙", "", "甲乙丙甲乙", "😀😁x", "ab" * 40, canonical(PAIRS[2][1]), ""]
    assert signatures(texts).tolist() == [_plain_signature(t) for t in texts]
    assert signatures(["", "x"]).tolist() == [_plain_signature("")] * 2
    assert signatures([]).shape == (0, 64)


def test_bigram_rows_and_batch_intersections_agree_with_the_plain_jaccard():
    import numpy as np

    from pipeline.intake.repeats import RepeatIndex, bigram_rows, bigrams, jaccard

    texts = [canonical(t) for pair in PAIRS[:6] for t in pair] + ["", "甲"]
    values, offsets = bigram_rows(texts)
    for i, text in enumerate(texts):
        assert (values[offsets[i]:offsets[i + 1]] == bigrams(text)).all()
    index = RepeatIndex()
    index.place_batch([text_hash(t) for t in texts], [""] * len(texts), signatures(texts), texts)
    a, b = np.array([0, 0, 2, 12, 5]), np.array([1, 3, 3, 1, 13])
    expected = [jaccard(bigrams(texts[i]), bigrams(texts[j])) for i, j in zip(a, b, strict=True)]
    assert np.allclose(index._jaccards(a, b), expected)


@pytest.mark.parametrize("extra", ["", "😀甲😀乙"])  # BMP only (sorted in 32 bits), or not
def test_bigram_rows_of_texts_of_every_length_are_each_text_s_sorted_distinct_bigrams(extra):
    from pipeline.intake.repeats import bigram_rows, bigrams

    corpus = canonical("".join(t for pair in PAIRS for t in pair))
    texts = ["", corpus[:700], "甲", "甲乙甲乙甲乙", "", corpus[:9], corpus[5:300] + extra, "乙" * 40, corpus, ""]
    values, offsets = bigram_rows(texts)
    assert values.dtype == np.uint64 and len(offsets) == len(texts) + 1
    for i, text in enumerate(texts):
        assert values[offsets[i]:offsets[i + 1]].tolist() == bigrams(text).tolist()


def test_band_table_finds_every_entry_across_rehashes_and_stops_at_crowded_keys():
    import numpy as np

    from pipeline.intake.repeats import _Chains

    keys = np.array([7, 9, 7, 11, 7, 7, 9] * 300, dtype=np.uint64)
    table = _Chains(lambda entries: keys[entries], bits=2)  # starts with 4 slots: rehashes many times
    table.reserve(len(keys))
    for lo in range(0, len(keys), 50):
        table.link(np.arange(lo, min(lo + 50, len(keys))))
    q, entries, counts = table.find(np.array([11, 9, 5], dtype=np.uint64), limit=len(keys))
    assert sorted(entries[q == 0].tolist()) == np.flatnonzero(keys == 11).tolist()
    assert sorted(entries[q == 1].tolist()) == np.flatnonzero(keys == 9).tolist()
    assert counts.tolist() == [300, 600, 0]
    _, _, counts = table.find(np.array([7], dtype=np.uint64), limit=16)
    assert counts.tolist() == [17]  # a crowded key: the search stops after limit + 1


def test_a_rehash_a_chunk_at_a_time_builds_the_chains_of_one_rehash_of_everything(monkeypatch):
    """The band table relinks its entries a chunk at a time when its slots double (no
    temporaries of 8 bytes per entry): the chains are the same as relinking all at once."""
    import numpy as np

    from pipeline.intake.repeats import _Chains

    rng = np.random.default_rng(0)
    keys = rng.integers(0, 500, 20_000).astype(np.uint64)
    linked = (rng.random(len(keys)) < 0.9) | (np.arange(len(keys)) % 300 < 100)  # some entries never linked
    tables = []
    for chunk in (1 << 30, 77):
        monkeypatch.setattr(_Chains, "REHASH_CHUNK", chunk)
        table = _Chains(lambda entries: keys[entries], bits=2)
        table.reserve(len(keys))
        for lo in range(0, len(keys), 100):
            table.link(np.flatnonzero(linked[lo:lo + 100]) + lo)
        tables.append(table)
    assert len(tables[0].head) > 4 and np.array_equal(tables[0].head, tables[1].head)
    assert np.array_equal(tables[0].next, tables[1].next)


def test_a_grouper_reading_older_clues_back_groups_as_one_holding_everything(monkeypatch):
    """Only the latest clues' texts and ids stay in memory; the rest are read back (the store
    in triage) with the same groups and the same first ids."""
    from pipeline.intake import repeats
    from pipeline.intake.repeats import Grouper

    texts = [t for pair in PAIRS for t in pair[:1]] + [pair[1] for pair in PAIRS] + [PAIRS[0][0]]
    clues = _clues(texts)
    everything = Grouper()
    kept = [p for lo in range(0, len(clues), 4) for p in everything.place(clues[lo:lo + 4])]
    monkeypatch.setattr(repeats, "TEXT_WINDOW", 2)
    stored = {c.key: (c.clue_id, t) for c, t in zip(clues, texts, strict=True)}
    asked: list[str] = []
    windowed = Grouper(lambda keys: asked.extend(keys) or {k: stored[k] for k in keys})
    read_back = [p for lo in range(0, len(clues), 4) for p in windowed.place(clues[lo:lo + 4])]
    assert read_back == kept and asked
    assert len(windowed._ids) <= 7 and len(windowed.index._texts) <= 7  # 1.5 windows, or one batch
    assert sum(bool(p.repeat_of) for p in kept) >= 20  # 19 of 20 paraphrases and the exact copy


def test_the_store_keeps_canonical_texts_and_a_run_reads_them_back_without_normalising(model_home, tmp_path,
                                                                                      monkeypatch):
    """m024: triage stores each grouped clue's canonical text next to its signature; a later
    run's exact checks read it back as it is; a clue stored before (NULL) is normalised."""
    from pipeline.intake import repeats
    from pipeline.intake.repeats import Grouper

    firsts = [(f"X{i}", pair[0]) for i, pair in enumerate(PAIRS[:8])]
    triage_file(model_home, _write(tmp_path / "a.csv", firsts), tmp_path / "a.out.csv", workers=1)
    db = connect(model_home.db_path)
    stored = db.execute("SELECT c.text, s.canon FROM clues c JOIN clue_signatures s USING (clue_key)").fetchall()
    assert len(stored) == 8 and all(canon == canonical(text) for text, canon in stored)
    clues = _clues([pair[1] for pair in PAIRS[:8]])
    normalised: list[str] = []
    monkeypatch.setattr(repeats, "canonical", lambda text: normalised.append(text) or canonical(text))

    placed = Grouper.from_store(db).place(clues)
    assert sum(p.repeat_of == f"X{i}" for i, p in enumerate(placed)) >= 7 and normalised == []

    with db:
        db.execute("UPDATE clue_signatures SET canon = NULL")  # a store grouped before m024
    assert Grouper.from_store(db).place(clues) == placed and normalised
    db.close()


def test_group_names_of_a_batch_are_the_keys_of_indexed_first_clues_or_stored_group_keys():
    from pipeline.intake.repeats import Grouper

    grouper = Grouper()
    clues = _clues([A, B, C])
    grouper.place(clues)
    foreign = grouper._group_numbers(["f" * 20, clues[1].key, "e" * 20]).tolist()
    assert foreign[1] == 1 and foreign[0] < 0 and foreign[2] < 0
    groups = [2, foreign[0], 0, foreign[2], 1, 2]
    assert grouper._names(groups) == [
        clues[2].key, "f" * 20, clues[0].key, "e" * 20, clues[1].key, clues[2].key]
    assert grouper._names([]) == []


def test_a_key_twice_in_one_batch_is_one_clue_and_its_second_row_a_repeat():
    from pipeline.intake.repeats import Grouper

    clue = _clues([A])[0]
    placed = Grouper().place([clue, clue])
    assert placed[0].repeat_of == "" and placed[1].repeat_of == clue.clue_id
    assert placed[0].group == placed[1].group == clue.key


def test_the_index_keeps_a_few_hundred_bytes_per_clue():
    from pipeline.intake.repeats import RepeatIndex

    rows = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [canonical(r["text"]) for r in rows][:4000]
    index = RepeatIndex()
    for lo in range(0, len(texts), 500):
        part = texts[lo:lo + 500]
        index.place_batch([text_hash(t) for t in part], [""] * len(part), signatures(part), part)
    # the band table's slots are allocated up front (BAND_SLOT_BITS), so they are not counted per clue
    per_clue = (index.nbytes() - index._bands.head.nbytes) / len(index)
    assert per_clue < 400, per_clue


def test_the_index_grows_by_a_quarter_and_leaves_little_room_empty():
    """Arrays that fill up grow by GROWTH (1.25), not twice: at most a quarter of their rows
    (and of the band table's entries) are empty room."""
    from pipeline.intake.repeats import BANDS, RepeatIndex

    texts = [f"第{i}号线索反映某单位问题" for i in range(6000)]
    index = RepeatIndex()
    for lo in range(0, len(texts), 500):
        part = texts[lo:lo + 500]
        index.place_batch([text_hash(t) for t in part], [""] * len(part), signatures(part), part)
        for rows in (len(index._sigs), len(index.groups), len(index._hashes), len(index._exact.next)):
            assert len(index) <= rows <= max(1024, 1.25 * len(index)), (rows, len(index))  # 1024 to start with
        assert len(index._bands.next) <= 1.25 * BANDS * len(index)


def test_a_crowded_band_key_is_remembered_and_no_longer_linked():
    from pipeline.intake.repeats import BANDS, CROWDED, RepeatIndex

    # the same text in different batches: every band key is shared by all of them
    texts = [canonical(PAIRS[0][0])] * (CROWDED + 5)
    index = RepeatIndex()
    for lo in range(0, len(texts), 3):
        part = texts[lo:lo + 3]
        groups, _ = index.place_batch([text_hash(t) for t in part], [""] * len(part), signatures(part), part)
        assert set(groups.tolist()) == {0}
    assert index._bands.linked == (CROWDED + 1) * BANDS  # linked CROWDED + 1 times, then no more
    assert len(index._crowded) == len(set(index._entry_keys(np.arange(BANDS)).tolist()))


def test_texts_read_back_are_kept_in_a_small_lru_cache(monkeypatch):
    from pipeline.intake import repeats

    monkeypatch.setattr(repeats, "READ_BACK_CACHE", 2)
    asked: list[int] = []

    def fetch(items):
        asked.extend(items)
        return [f"text {i}" for i in items]

    index = repeats.RepeatIndex(fetch)
    assert index._texts_of([1, 2]) == ["text 1", "text 2"]
    assert index._texts_of([1, 3]) == ["text 1", "text 3"]  # 1 from the cache; 2, least recent, leaves
    assert index._texts_of([2, 1]) == ["text 2", "text 1"]
    assert asked == [1, 2, 3, 2]


@pytest.mark.parametrize("a_below, b_below", [(4, 2**20 + 1), (2**12, 2**21 + 1), (2**40, 2**20)])
def test_candidate_pairs_are_packed_deduplicated_and_ordered(a_below, b_below):
    from pipeline.intake.repeats import _distinct_pairs

    a, b = np.array([3, 1, 3, 0, 1]), np.array([5, 7, 5, 2**20 - 1, 2])
    pa, pb = _distinct_pairs(a, b, a_below, b_below)
    assert list(zip(pa.tolist(), pb.tolist(), strict=True)) == [(0, 2**20 - 1), (1, 2), (1, 7), (3, 5)]


def test_the_stable_order_of_32_bit_keys_is_numpy_s():
    from pipeline.intake.repeats import _stable_order

    keys = np.random.default_rng(0).integers(0, 50, 5000).astype(np.uint64) << np.uint64(26)
    keys[::3] = 2**32 - 1
    for part in (keys, keys[:1], keys[:0], keys.astype(np.int64)):
        assert (_stable_order(part) == np.argsort(part, kind="stable")).all()
    wide = keys.copy()
    wide[::5] = 2**40 + 7  # wider than 32 bits: packing would mix key and position bits
    assert (_stable_order(wide) == np.argsort(wide, kind="stable")).all()


def test_a_key_is_found_crowded_through_its_filter_only_when_it_is():
    from pipeline.intake.repeats import BANDS, CROWDED, RepeatIndex

    texts = [canonical(PAIRS[0][0])] * (CROWDED + 1) + [canonical(PAIRS[1][0])]
    index = RepeatIndex()
    index.place_batch([text_hash(t) for t in texts], [""] * len(texts), signatures(texts), texts)
    crowded = index._entry_keys(np.arange(BANDS))
    other = index._entry_keys(np.arange(BANDS) + CROWDED * BANDS + BANDS)
    assert index._crowded_bits.sum() <= BANDS
    assert index._crowded.tolist() == sorted(set(crowded.tolist()))
    assert index._is_crowded(crowded).all()
    assert (index._is_crowded(other) == np.isin(other, crowded)).all()
    assert not index._is_crowded(np.arange(1 << 20, dtype=np.uint64) * 4093).any()


def test_a_chain_of_repeats_in_one_batch_is_one_group():
    # each text repeats the one before (exact copies and a paraphrase), all in one batch
    first, second = PAIRS[0]
    assert group_texts([first, second, second, first, PAIRS[1][0], second]) == [0, 0, 0, 0, 1, 0]
