"""Reading clue files (encodings, columns, formats, bad input) and writing results."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from pipeline.errors import InputError
from pipeline.intake.io import (
    EXCEL_CELL_LIMIT,
    TableWriter,
    detect_encoding,
    encoding_label,
    open_clue_file,
)

SIMPLIFIED = [
    ("XC-001", "某市生态环境局东城分局", "东城分局执法一中队的覃某某去年到我场里检查，说要罚五万，后来收了一万二现金就没下文了。"),
    ("XC-002", "某市生态环境监测中心", "建议监测中心把每月的空气质量排名在公众号上按街道公布。"),
    ("XC-003", "某市生态环境局", "选人用人检查发现，法规科副科长晋升时任职年限按企业工作经历折算，档案疑似后补。"),
]
TRADITIONAL = [
    ("XC-101", "某市生態環境局南湖縣分局", "談話中，南湖縣分局兩名執法人員反映，縣裡對工業園區企業的檢查「提前打招呼」已成慣例。"),
    ("XC-102", "某市生態環境局", "選人用人檢查發現，市局法規科副科長晉升為科長時，任職年限按其在企業的工作經歷折算。"),
    ("XC-103", "某市生態環境局北區分局", "該局去年巡察整改方案中承諾的三項制度至今沒有出台，整改報告卻寫已全部完成。"),
]
HEADER_SIMPLIFIED = ("编号", "被巡察单位", "线索内容")
HEADER_TRADITIONAL = ("編號", "被巡察單位", "線索內容")


def write_csv(path: Path, header, rows, encoding: str = "utf-8", newline: str = "\r\n") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def read_all(path: Path, **kwargs):
    cf = open_clue_file(path, **kwargs)
    return cf, list(cf.rows())


# -- encodings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "header", "rows", "detected", "label"),
    [
        ("utf-8", HEADER_SIMPLIFIED, SIMPLIFIED, "utf-8", "UTF-8"),
        ("utf-8-sig", HEADER_SIMPLIFIED, SIMPLIFIED, "utf-8-sig", "UTF-8 with BOM"),
        ("utf-8", HEADER_TRADITIONAL, TRADITIONAL, "utf-8", "UTF-8"),
        ("gbk", HEADER_SIMPLIFIED, SIMPLIFIED, "gb18030", "GB18030/GBK"),
        ("gb18030", HEADER_SIMPLIFIED, SIMPLIFIED, "gb18030", "GB18030/GBK"),
        ("gb18030", HEADER_TRADITIONAL, TRADITIONAL, "gb18030", "GB18030/GBK"),
        ("big5", HEADER_TRADITIONAL, TRADITIONAL, "cp950", "Big5"),
        ("cp950", HEADER_TRADITIONAL, TRADITIONAL, "cp950", "Big5"),
        ("utf-16", HEADER_SIMPLIFIED, SIMPLIFIED, "utf-16", "UTF-16"),
    ],
)
def test_csv_in_each_encoding_reads_back_exactly(tmp_path, encoding, header, rows, detected, label):
    path = write_csv(tmp_path / "clues.csv", header, rows, encoding)
    cf, got = read_all(path)
    assert cf.encoding == detected
    assert encoding_label(cf.encoding) == label
    assert (cf.text_col, cf.id_col, cf.unit_col) == (header[2], header[0], header[1])
    assert [tuple(r.values[c] for c in header) for r in got] == list(rows)
    assert [r.number for r in got] == [2, 3, 4]
    assert cf.row_count == 3


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("內容\n禮金\n", "cp950"),
        ("内容\n礼金\n", "gbk"),
        ("編號,線索內容\n1,某局長收受禮金\n", "cp950"),
        ("编号,线索内容\n1,某局长收受礼金\n", "gbk"),
        ("编号,线索内容\n1,某局長收受禮金\n", "gb18030"),  # Traditional text saved as GBK
    ],
)
def test_short_files_are_detected(tmp_path, text, encoding):
    path = tmp_path / "short.csv"
    path.write_bytes(text.encode(encoding))
    assert path.read_bytes().decode(detect_encoding(path)) == text


def test_utf8_multibyte_character_cut_at_the_sample_boundary(tmp_path, monkeypatch):
    import pipeline.intake.io as pio

    monkeypatch.setattr(pio, "SAMPLE_BYTES", 64)
    text = "线索内容\n" + "收受礼金" * 40 + "\n"
    path = tmp_path / "long.csv"
    path.write_bytes(text.encode("utf-8"))
    assert detect_encoding(path) == "utf-8"


def test_mixed_encodings_name_the_bad_line(tmp_path):
    good = "编号,线索内容\r\n" + "".join(f"{i},收受礼金{i}\r\n" for i in range(1, 3000))
    path = tmp_path / "mixed.csv"
    path.write_bytes(good.encode("utf-8") + "3000,收受禮金\r\n".encode("big5"))
    with pytest.raises(InputError, match=r"mixed\.csv, row 3001: not valid UTF-8"):
        read_all(path)


# -- columns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["text"], ("text", None, None)),
        (["id", "unit", "content"], ("content", "id", "unit")),
        (["ID", "Unit", "Text"], ("Text", "ID", "Unit")),
        (["序号", "单位", "问题线索"], ("问题线索", "序号", "单位")),
        (["序號", "單位", "問題線索"], ("問題線索", "序號", "單位")),
        (["编号", "被巡察单位", "反映内容"], ("反映内容", "编号", "被巡察单位")),
        (["編號", "被巡察單位", "內容"], ("內容", "編號", "被巡察單位")),
        ([" 编号 ", "线索内容 "], ("线索内容", "编号", None)),
        (["日期", "线索内容", "备注"], ("线索内容", None, None)),
    ],
)
def test_columns_are_found_by_name(tmp_path, header, expected):
    path = write_csv(tmp_path / "c.csv", header, [["x"] * len(header)])
    cf = open_clue_file(path)
    assert (cf.text_col, cf.id_col, cf.unit_col) == expected


def test_columns_given_by_the_user_win(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["摘要", "正文", "No."], [["a", "b", "1"]])
    cf = open_clue_file(path, text_col="正文", id_col="no.")
    assert (cf.text_col, cf.id_col) == ("正文", "No.")


@pytest.mark.parametrize(
    ("header", "kwargs", "message"),
    [
        (["日期", "备注"], {}, r"no text column found.*columns seen: 日期, 备注"),
        (["线索内容", "内容", "备注"], {}, r"several columns could be the text column.*columns seen: 线索内容, 内容, 备注"),
        (["id", "编号", "线索内容"], {}, r"several columns could be the id column.*--id-col.*columns seen: id, 编号, 线索内容"),
        (["编号", "线索内容"], {"text_col": "正文"}, r"no column '正文' for the text column; columns seen: 编号, 线索内容"),
        (["编号", "线索内容"], {"unit_col": "单位"}, r"no column '单位' for the unit column"),
    ],
)
def test_missing_or_ambiguous_columns_list_what_was_seen(tmp_path, header, kwargs, message):
    path = write_csv(tmp_path / "c.csv", header, [["x"] * len(header)])
    with pytest.raises(InputError, match=message) as info:
        open_clue_file(path, **kwargs)
    assert str(path) in str(info.value)


def test_csv_title_row_above_the_header_is_skipped(tmp_path):
    path = tmp_path / "titled.csv"
    path.write_text("某市巡察组问题线索汇总表,,\n编号,被巡察单位,线索内容\n1,某局,收受礼金\n", encoding="utf-8")
    cf, rows = read_all(path)
    assert cf.header_row == 2
    assert cf.columns == ["编号", "被巡察单位", "线索内容"]
    assert [(r.number, r.values["线索内容"]) for r in rows] == [(3, "收受礼金")]


def test_duplicate_and_blank_header_names_are_made_unique(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["线索内容", "备注", "备注", ""], [["a", "b", "c", "d"]])
    cf, rows = read_all(path)
    assert cf.columns == ["线索内容", "备注", "备注_", "column_4"]
    assert rows[0].values == {"线索内容": "a", "备注": "b", "备注_": "c", "column_4": "d"}


# -- CSV rows ----------------------------------------------------------------------------


def test_csv_rows_keep_inner_empty_rows_and_drop_trailing_ones(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text('编号,线索内容\n1,甲\n,\n\n2,"乙\n跨行"\n3,丙\n,\n\n\n', encoding="utf-8")
    cf, rows = read_all(path)
    assert [(r.number, r.values["编号"], r.values["线索内容"]) for r in rows] == [
        (2, "1", "甲"), (3, "", ""), (4, "", ""), (5, "2", "乙\n跨行"), (6, "3", "丙"),
    ]
    assert cf.row_count == 5


def test_very_long_field_is_read(tmp_path):
    text = "收受礼金" * 12_500
    path = write_csv(tmp_path / "long.csv", ["线索内容"], [[text]])
    _, rows = read_all(path)
    assert rows[0].values["线索内容"] == text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('编号,线索内容\n1,甲\n2,"乙还没写完', r"t\.csv, row 3: .*truncated"),
        ("编号,被巡察单位,线索内容\n1,某局,甲\n2,某局", r"t\.csv, row 3: has 2 fields but the header has 3"),
        ("编号,线索内容\n1,甲,多余\n", r"t\.csv, row 2: has 3 fields but the header has 2"),
        ("", r"t\.csv: file is empty"),
        ("\n\n\n", r"t\.csv: file is empty"),
    ],
)
def test_broken_csv_is_an_input_error_with_row(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_all(path)


def test_truncated_csv_is_found_when_opening(tmp_path):
    """The whole file is checked before any row is handed out (no work wasted, no partial run)."""
    path = tmp_path / "t.csv"
    path.write_text("编号,线索内容\n" + "".join(f"{i},甲{i}\n" for i in range(1, 5000)) + '5000,"乙', encoding="utf-8")
    with pytest.raises(InputError, match=r"row 5001"):
        open_clue_file(path)


# -- bad files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, r"missing\.csv: file not found"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", r"image\.csv: binary file"),
        ("random.csv", bytes(range(128, 256)) * 40, r"random\.csv: cannot tell the text encoding"),
        ("book.csv", b"PK\x03\x04" + b"\x14" * 100, r"book\.csv: this is a zip/Excel file"),
        ("old.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, r"old\.xlsx: not an Excel \.xlsx file"),
        ("broken.xlsx", b"PK\x03\x04" + b"\x00" * 100, r"broken\.xlsx: cannot open the Excel file"),
        ("notes.txt", b"hello", r"notes\.txt: unsupported file type '\.txt'"),
        ("empty.jsonl", b"", r"empty\.jsonl: file is empty"),
    ],
)
def test_unreadable_files_are_input_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_all(path)


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputError, match=r"dir\.csv: not a file"):
        open_clue_file(tmp_path / "dir.csv")


# -- Excel ----------------------------------------------------------------------------


def make_xlsx(path: Path) -> Path:
    book = Workbook()
    sheet = book.active
    sheet["A1"] = "某市第三巡察组 問題線索匯總表"
    sheet.merge_cells("A1:D1")
    sheet.append(["編號", "被巡察單位", "線索內容", "備註"])
    sheet.merge_cells("D2:E2")  # a header cell merged across two columns
    sheet.append([101, TRADITIONAL[0][1], TRADITIONAL[0][2], "已登記"])
    sheet.append([102.0, TRADITIONAL[1][1], TRADITIONAL[1][2], None])
    sheet.append([])  # an empty row in the middle
    sheet.append(["XC-104", SIMPLIFIED[0][1], SIMPLIFIED[0][2], None, "附件"])
    sheet["B12"].number_format = "@"  # formatted but empty: a trailing row that is not a row
    book.save(path)
    return path


def test_xlsx_with_merged_title_and_empty_row(tmp_path):
    cf, rows = read_all(make_xlsx(tmp_path / "clues.xlsx"))
    assert cf.format == "xlsx" and cf.encoding is None
    assert cf.header_row == 2
    assert cf.columns == ["編號", "被巡察單位", "線索內容", "備註", "column_5"]
    assert (cf.text_col, cf.id_col, cf.unit_col) == ("線索內容", "編號", "被巡察單位")
    assert [r.number for r in rows] == [3, 4, 5, 6]
    assert [r.values["編號"] for r in rows] == ["101", "102", "", "XC-104"]
    assert rows[0].values["線索內容"] == TRADITIONAL[0][2]
    assert all(v == "" for v in rows[2].values.values())
    assert rows[3].values["column_5"] == "附件"


def test_xlsx_without_a_text_column_lists_its_columns(tmp_path):
    book = Workbook()
    book.active.append(["日期", "摘要"])
    book.active.append(["2024-01-01", "收受礼金"])
    book.save(tmp_path / "no_text.xlsx")
    with pytest.raises(InputError, match=r"no_text\.xlsx: no text column found.*columns seen: 日期, 摘要"):
        open_clue_file(tmp_path / "no_text.xlsx")


def test_xlsx_row_count_is_an_estimate_at_least_the_rows(tmp_path):
    cf, rows = read_all(make_xlsx(tmp_path / "clues.xlsx"))
    assert cf.row_count is None or cf.row_count >= len(rows)


# -- JSONL ----------------------------------------------------------------------------


def test_jsonl_rows_with_blank_lines_and_other_value_types(tmp_path):
    lines = [
        {"id": 1, "text": SIMPLIFIED[0][2], "unit": SIMPLIFIED[0][1]},
        {"id": "x2", "text": TRADITIONAL[0][2], "tags": ["环保", "执法"]},
        None,
        {"id": 3, "text": None, "unit": "某局"},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join("" if o is None else json.dumps(o, ensure_ascii=False) for o in lines) + "\n\n",
                    encoding="utf-8")
    cf, rows = read_all(path)
    assert cf.columns == ["id", "text", "unit", "tags"]
    assert (cf.text_col, cf.id_col, cf.unit_col) == ("text", "id", "unit")
    assert [r.number for r in rows] == [1, 2, 3, 4]
    assert rows[0].values["id"] == "1"
    assert rows[1].values["tags"] == '["环保", "执法"]'
    assert rows[1].values["unit"] == ""
    assert rows[2].values == {"id": "", "text": "", "unit": "", "tags": ""}
    assert rows[3].values["text"] == ""
    assert cf.row_count == 4


def test_jsonl_columns_come_from_the_whole_file(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"text": f"收受礼金{i}"} for i in range(1500)] + [{"text": "最后一条", "unit": "某局"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cf, got = read_all(path)
    assert cf.unit_col == "unit"
    assert got[-1].values["unit"] == "某局"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "甲"}\n{"text": "乙"', r"c\.jsonl, row 2: invalid JSON"),
        ('{"text": "甲"}\n["乙"]\n', r"c\.jsonl, row 2: each line must be a JSON object"),
        ('{"text": "甲"}\n\n{"text": "乙", }\n', r"c\.jsonl, row 3: invalid JSON"),
    ],
)
def test_broken_jsonl_names_the_row(tmp_path, content, message):
    path = tmp_path / "c.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        read_all(path)


def test_jsonl_in_gbk(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(json.dumps({"线索内容": SIMPLIFIED[0][2]}, ensure_ascii=False).encode("gbk") + b"\n")
    cf, rows = read_all(path)
    assert cf.encoding == "gb18030"
    assert rows[0].values["线索内容"] == SIMPLIFIED[0][2]


# -- writing --------------------------------------------------------------------------

OUT_ROWS = [
    {"编号": "1", "线索内容": "收受礼金", "attention_confidence": 0.9123, "needs_review": "no"},
    {"编号": "2", "线索内容": '=HYPERLINK("http://x")', "attention_confidence": "", "needs_review": "yes"},
    {"编号": "3", "线索内容": "控制字符\x01在此\n换行", "attention_confidence": None, "needs_review": "no"},
]
OUT_COLUMNS = ["编号", "线索内容", "attention_confidence", "needs_review"]


def test_csv_output_is_utf8_with_bom_and_round_trips(tmp_path):
    path = tmp_path / "out.csv"
    with TableWriter(path, OUT_COLUMNS) as writer:
        for row in OUT_ROWS:
            writer.write(row)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    got = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert [r["编号"] for r in got] == ["1", "2", "3"]
    assert got[2]["线索内容"] == "控制字符\x01在此\n换行"
    assert got[0]["attention_confidence"] == "0.9123" and got[2]["attention_confidence"] == ""


def test_xlsx_output_keeps_formulas_as_text_and_fits_excel_limits(tmp_path):
    path = tmp_path / "out.xlsx"
    rows = [*OUT_ROWS, {"编号": "4", "线索内容": "长" * (EXCEL_CELL_LIMIT + 100)}]
    with TableWriter(path, OUT_COLUMNS) as writer:
        for row in rows:
            writer.write(row)
    sheet = load_workbook(path).active
    values = list(sheet.iter_rows(values_only=True))
    assert list(values[0]) == OUT_COLUMNS
    assert values[2][1] == '=HYPERLINK("http://x")' and sheet["B3"].data_type == "s"
    assert values[3][1] == "控制字符在此\n换行"
    assert values[1][2] == pytest.approx(0.9123)
    assert len(values[4][1]) == EXCEL_CELL_LIMIT


def test_jsonl_output(tmp_path):
    path = tmp_path / "out.jsonl"
    with TableWriter(path, OUT_COLUMNS) as writer:
        for row in OUT_ROWS:
            writer.write(row)
    got = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [list(r) for r in got] == [OUT_COLUMNS] * 3
    assert got[0]["attention_confidence"] == 0.9123
    assert got[2]["attention_confidence"] is None


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), TableWriter(path, OUT_COLUMNS) as writer:
        writer.write(OUT_ROWS[0])
        raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == [f"out{suffix}"]
    from openpyxl.worksheet._writer import ALL_TEMP_FILES

    assert ALL_TEMP_FILES == [], "openpyxl's own temporary copy of the rows must be removed too"


def test_unsupported_output_type(tmp_path):
    with pytest.raises(InputError, match=r"out\.txt: unsupported output type"):
        TableWriter(tmp_path / "out.txt", OUT_COLUMNS)


def test_unwritable_output_is_an_input_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"cannot write"), TableWriter(blocker / "out.csv", OUT_COLUMNS):
        pass
