"""Reading clue files (CSV, Excel, JSONL in UTF-8, GB18030/GBK or Big5) and writing results.

Input is streamed row by row so memory stays flat for large files. Every data row is
yielded with its row number as a spreadsheet user sees it (the header is row 1), empty
rows included (trailing empty rows are not rows). Problems are :class:`InputError` with
the file, row and column. CSV and JSONL files are checked from end to end when they are
opened (:func:`open_clue_file`), so a truncated or broken file is refused before any work
starts, and the exact row count is known for a progress bar. Output is written to a
temporary file and renamed into place, so a failed run leaves no partial file.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from ..errors import InputError
from ..fsutil import atomic_path, temp_prefix
from ..text.normalize import lookup_key

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_COLUMNS = ("text", "content", "线索内容", "问题线索", "内容", "反映内容", "问题线索内容", "线索")
ID_COLUMNS = ("id", "编号", "序号", "线索编号")
UNIT_COLUMNS = ("unit", "被巡察单位", "单位", "被巡察党组织", "单位名称", "被反映单位", "所属单位")
ENCODING_LABELS = {
    "utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16",
    "utf-16-le": "UTF-16LE without BOM", "utf-16-be": "UTF-16BE without BOM",
    "gb18030": "GB18030/GBK", "cp950": "Big5", "big5hkscs": "Big5-HKSCS",
}
SAMPLE_BYTES = 1 << 20
HEADER_SEARCH_ROWS = 10
EXCEL_CELL_LIMIT = 32_767  # characters Excel keeps in one cell
EXCEL_MAX_ROWS = 1_048_576
_CSV_FIELD_LIMIT = 1 << 24
#: a UTF-8 decoding error after this many valid non-ASCII characters means a UTF-8 file
#: with a bad part (reported with its row), not a file in another encoding
_UTF8_EVIDENCE = 8

#: characters XML 1.0 forbids (an .xlsx is XML): C0 controls but tab/LF/CR, surrogates,
#: U+FFFE and U+FFFF. One of them in a cell makes the whole workbook unreadable.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: a CSV cell starting with one of these is a formula to Excel/WPS (OWASP "CSV injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(FORMULA_START)  # all one character: checked as the first one
#: a text file with more NUL characters than this share of its sample is binary
_NUL_SHARE = 0.01

csv.field_size_limit(_CSV_FIELD_LIMIT)


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids: what any workbook cell may hold."""
    return _XML_ILLEGAL.sub("", text)


def clean_surrogates(text: str) -> str:
    """Lone surrogates (a JSON ``"\\ud800"`` escape) become U+FFFD: they cannot be written
    as UTF-8, stored or shown, and one odd text must not sink a run."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def csv_safe(value: Any) -> Any:
    """A cell value for CSV meant for Excel: text that would start a formula gets a leading
    ``'`` (which Excel shows as text and hides); other values are unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def encoding_label(encoding: str | None) -> str:
    """How an encoding is named to a user: ``cp950`` → ``Big5``."""
    return ENCODING_LABELS.get(encoding or "utf-8", encoding or "UTF-8")


def is_utf8(encoding: str | None) -> bool:
    """True for UTF-8 with or without BOM (and for .xlsx, which has no text encoding)."""
    return encoding in (None, "utf-8", "utf-8-sig")


@dataclass
class Row:
    number: int
    values: dict[str, str]
    note: str = ""  # something the reader had to do to this row (e.g. a formula without a value)


@dataclass
class ClueFile:
    """An opened clue file: format, encoding, columns and the chosen text/id/unit columns.

    ``row_count`` is exact for CSV and JSONL (the file was read through when opened) and
    an estimate from the sheet's declared size for Excel (``None`` when it declares none).
    """

    path: Path
    format: str
    encoding: str | None
    columns: list[str]
    text_col: str
    id_col: str | None
    unit_col: str | None
    header_row: int = 1
    row_count: int | None = None

    def rows(self) -> Iterator[Row]:
        """Data rows in file order; trailing empty rows dropped, inner ones kept."""
        pending: list[Row] = []
        for row in _RAW_READERS[self.format](self):
            if any(v.strip() for v in row.values.values()):
                yield from pending
                pending.clear()
                yield row
            else:
                pending.append(row)


# -- encoding -------------------------------------------------------------------------


def detect_encoding(path: Path) -> str:
    """The encoding of a text file: UTF-8 (with or without BOM), UTF-16 with BOM,
    GB18030 (a superset of GBK) or Big5 (cp950)."""
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        utf16 = _utf16_without_bom(sample)
        if utf16:
            return utf16
        if sample.count(b"\x00") > _NUL_SHARE * len(sample):
            raise InputError("binary file (contains NUL bytes), not a text clue file; if it is text, "
                             "save it as UTF-8", path=path)
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4 and len(sample) == SAMPLE_BYTES:
            return "utf-8"  # cut in the middle of a character at the sample's end
        valid = sample[: exc.start].decode("utf-8")
        if sum(ord(ch) > 0x7F for ch in valid) >= _UTF8_EVIDENCE:
            return "utf-8"  # UTF-8 with a bad part: reading reports where
    from charset_normalizer import from_bytes

    candidates = []
    for encoding in ("gb18030", "cp950", "big5hkscs"):
        try:
            text = sample.decode(encoding)
        except UnicodeDecodeError:
            continue
        candidates.append((encoding, text))
    if len(candidates) == 1:
        return candidates[0][0]
    best = from_bytes(sample).best()
    guess = (best.encoding if best else "").lower()
    if guess in ("big5", "cp950", "big5hkscs"):
        return "cp950" if any(c == "cp950" for c, _ in candidates) else "big5hkscs"
    if guess in ("gb2312", "gbk", "gb18030", "hz"):
        return "gb18030"
    if candidates:
        # both decode: prefer the one whose text has more common CJK ideographs
        def score(text: str) -> int:
            return sum("\u4e00" <= ch <= "\u9fff" for ch in text) - 5 * sum(0xE000 <= ord(ch) <= 0xF8FF for ch in text)

        return max(candidates, key=lambda c: score(c[1]))[0]
    raise InputError("cannot tell the text encoding; save it as UTF-8", path=path)


def _utf16_without_bom(sample: bytes) -> str | None:
    """``utf-16-le`` or ``-be`` when the sample reads as UTF-16 text without a BOM (the NUL
    bytes are the high bytes of ASCII characters, all on one side), else None."""
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    for encoding, nuls, other in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if nuls and other * 20 <= nuls:
            cut = len(sample) - len(sample) % 2
            try:
                text = sample[:cut].decode(encoding)
            except UnicodeDecodeError:
                try:  # the sample may end inside a surrogate pair
                    text = sample[: cut - 2].decode(encoding)
                except UnicodeDecodeError:
                    continue
            controls = sum(1 for ch in text if ch < " " and ch not in "\t\r\n")
            if controls <= len(text) // 100:
                return encoding
    return None


def _decode_error(path: Path, encoding: str, fmt: str) -> InputError:
    """An error naming the row of the first bytes that are not valid ``encoding``."""
    message = f"not valid {encoding_label(encoding)} text (mixed encodings?)"
    if encoding.startswith("utf-16"):
        return InputError(message, path=path)
    found = False

    def good_lines() -> Iterator[str]:
        nonlocal found
        with open(path, "rb") as handle:
            for raw in handle:  # b"\n" is never part of a multi-byte character here
                try:
                    yield raw.decode(encoding)
                except UnicodeDecodeError:
                    found = True
                    return

    if fmt == "jsonl":
        line = sum(1 for _ in good_lines()) + 1
        return InputError(message, path=path, row=line) if found else InputError(message, path=path)
    records = 0
    try:
        for _ in csv.reader(good_lines(), strict=True):
            records += 1
    except csv.Error:
        pass  # the bad line is inside a quoted field: it belongs to the next record
    return InputError(message, path=path, row=records + 1) if found else InputError(message, path=path)


# -- opening --------------------------------------------------------------------------


def _pick(columns: Sequence[str], wanted: str | None, names: Sequence[str], role: str, path: Path, required: bool) -> str | None:
    seen = ", ".join(map(str, columns)) or "none"
    option = f"--{role}-col"
    if wanted is not None:
        if wanted in columns:
            return wanted
        matches = [c for c in columns if lookup_key(c) == lookup_key(wanted)]
        if len(matches) == 1:
            return matches[0]
        raise InputError(f"no column {wanted!r} for the {role} column; columns seen: {seen}", path=path)
    keys = {lookup_key(n) for n in names}
    found = [c for c in columns if lookup_key(c) in keys]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(
            f"several columns could be the {role} column ({', '.join(found)}); choose one with {option}; "
            f"columns seen: {seen}",
            path=path,
        )
    if required:
        raise InputError(
            f"no {role} column found (looked for {', '.join(names)}); columns seen: {seen}; name it with {option}",
            path=path,
        )
    return None


def open_clue_file(
    path: str | os.PathLike[str],
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    unit_col: str | None = None,
) -> ClueFile:
    """Open a clue file, detect its encoding and header, and find the columns to use.

    CSV and JSONL files are read through once here, so a truncated or malformed file is an
    :class:`InputError` (with its row) before any row is processed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    if not path.is_file():
        raise InputError("not a file", path=path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported file type {path.suffix!r}; use .csv, .xlsx or .jsonl", path=path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path=path) from None
    if fmt != "xlsx" and head.startswith(b"PK\x03\x04"):
        raise InputError("this is a zip/Excel file, not text; save it as .xlsx or export CSV", path=path)
    if fmt == "xlsx" and not head.startswith(b"PK\x03\x04"):
        raise InputError("not an Excel .xlsx file (old .xls or damaged); re-save it as .xlsx", path=path)
    encoding = None if fmt == "xlsx" else detect_encoding(path)
    count: int | None
    if fmt == "jsonl":
        columns, count = _scan_jsonl(path, encoding or "utf-8")
        header_row = 0
    elif fmt == "csv":
        columns, header_row, count = _scan_csv(path, encoding or "utf-8", text_col)
    else:
        columns, header_row, count = _xlsx_header(path, text_col)
    text = _pick(columns, text_col, TEXT_COLUMNS, "text", path, required=True)
    assert text is not None
    ident = _pick(columns, id_col, ID_COLUMNS, "id", path, required=False)
    unit = _pick(columns, unit_col, UNIT_COLUMNS, "unit", path, required=False)
    return ClueFile(path, fmt, encoding, columns, text, ident, unit, header_row, count)


def _choose_header(records: Iterable[tuple[int, list[str]]], text_col: str | None) -> tuple[list[str], int] | None:
    """The header among the first rows: the first row that names a text column, looking
    past title rows (one filled cell, often merged across the sheet) above it; else the
    first non-empty row."""
    wanted = {lookup_key(n) for n in ((text_col,) if text_col else TEXT_COLUMNS)}
    first: tuple[list[str], int] | None = None
    for number, cells in records:
        names = [c.strip() for c in cells]
        filled = sum(1 for n in names if n)
        if filled:
            if first is None:
                first = (_dedupe(names), number)
            if any(lookup_key(n) in wanted for n in names):
                return _dedupe(names), number
            if filled > 1:
                return _dedupe(names), number  # a real header row that names no text column
        if number >= HEADER_SEARCH_ROWS:
            break
    return first


def _dedupe(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, name in enumerate(names, 1):
        name = name or f"column_{i}"
        while name in out:
            name += "_"
        out.append(name)
    return out


# -- CSV ------------------------------------------------------------------------------


def _open_text(path: Path, encoding: str) -> TextIO:
    return open(path, encoding=encoding, errors="strict", newline="")


def _scan_csv(path: Path, encoding: str, text_col: str | None) -> tuple[list[str], int, int]:
    """(columns, header row, data rows): the whole file is parsed and checked."""
    record = 0
    try:
        with _open_text(path, encoding) as handle:
            reader = csv.reader(handle, strict=True)
            head = []
            for fields in reader:
                record += 1
                head.append((record, fields))
                if record >= HEADER_SEARCH_ROWS:
                    break
            chosen = _choose_header(head, text_col)
            if chosen is None:
                raise InputError("file is empty (no header row)", path=path)
            columns, header_row = chosen
            width, last = len(columns), header_row
            for number, fields in head[header_row:]:
                last = _check_record(path, number, fields, width) or last
            for fields in reader:
                record += 1
                last = _check_record(path, record, fields, width) or last
    except csv.Error as exc:
        raise InputError(f"malformed CSV ({exc}); the file may be truncated", path=path, row=record + 1) from None
    except UnicodeDecodeError:
        raise _decode_error(path, encoding, "csv") from None
    return columns, header_row, last - header_row


def _check_record(path: Path, number: int, fields: list[str], width: int) -> int:
    """``number`` if the record has text, 0 if it is empty; an error if it has the wrong width."""
    if not any(f.strip() for f in fields):
        return 0
    if len(fields) != width:
        raise InputError(
            f"has {len(fields)} fields but the header has {width} (truncated or misquoted file?)",
            path=path, row=number,
        )
    return number


def _read_csv(cf: ClueFile) -> Iterator[Row]:
    assert cf.encoding is not None
    record = 0
    columns, width = cf.columns, len(cf.columns)
    empty = dict.fromkeys(columns, "")
    with _open_text(cf.path, cf.encoding) as handle:
        reader = csv.reader(handle, strict=True)
        try:
            for fields in reader:
                record += 1
                if record <= cf.header_row:
                    continue
                if len(fields) == width:
                    yield Row(record, dict(zip(columns, fields, strict=True)))
                elif not any(f.strip() for f in fields):
                    yield Row(record, dict(empty))
                else:
                    raise InputError(
                        f"has {len(fields)} fields but the header has {width} (truncated or misquoted file?)",
                        path=cf.path, row=record,
                    )
        except csv.Error as exc:
            raise InputError(f"malformed CSV ({exc}); the file may be truncated", path=cf.path, row=record + 1) from None
        except UnicodeDecodeError:
            raise _decode_error(cf.path, cf.encoding, "csv") from None


# -- JSONL ----------------------------------------------------------------------------


def _scan_jsonl(path: Path, encoding: str) -> tuple[list[str], int]:
    """(columns in order of first appearance, rows up to the last non-empty line)."""
    columns: dict[str, None] = {}
    last = 0
    try:
        with open(path, encoding=encoding) as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    obj = _json_object(line, path, number)
                    if not columns.keys() >= obj.keys():
                        columns.update(dict.fromkeys(obj))
                    last = number
    except UnicodeDecodeError:
        raise _decode_error(path, encoding, "jsonl") from None
    if not last:
        raise InputError("file is empty (no JSON lines)", path=path)
    return list(columns), last


def _json_object(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg}); the file may be truncated", path=path, row=number) from None
    except RecursionError:
        raise InputError("JSON nested too deeply to read", path=path, row=number) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise InputError(f"JSON value cannot be read ({exc})", path=path, row=number) from None
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object", path=path, row=number)
    if any(_SURROGATE.search(k) for k in obj):
        obj = {clean_surrogates(k): v for k, v in obj.items()}
    return obj


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return clean_surrogates(value)
    if value is None:
        return ""
    try:
        return clean_surrogates(json.dumps(value, ensure_ascii=False))
    except (ValueError, RecursionError):
        return ""


def _read_jsonl(cf: ClueFile) -> Iterator[Row]:
    assert cf.encoding is not None
    try:
        with open(cf.path, encoding=cf.encoding) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    yield Row(number, dict.fromkeys(cf.columns, ""))
                    continue
                obj = _json_object(line, cf.path, number)
                yield Row(number, {col: _json_text(obj.get(col)) for col in cf.columns})
    except UnicodeDecodeError:
        raise _decode_error(cf.path, cf.encoding, "jsonl") from None


# -- Excel ----------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_workbook_xml(path: Path) -> None:
    """Refuse a workbook whose XML declares a DTD (entities can blow up or reach out of the
    file) before any XML parser sees it; a damaged zip is an :class:`InputError` too."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.lower().endswith((".xml", ".rels", ".vml")):
                    with archive.open(info) as member:
                        head = member.read(2048)
                    if b"<!DOCTYPE" in head.upper() or b"<!ENTITY" in head.upper():
                        raise InputError(f"the workbook's {info.filename} declares a DTD, which is not allowed "
                                         "in .xlsx; re-save the file in Excel", path=path)
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"cannot open the Excel file ({exc.__class__.__name__}: {exc})", path=path) from None


def _excel_error(path: Path, exc: BaseException) -> InputError:
    return InputError(f"cannot read the Excel file; it is damaged ({exc.__class__.__name__}: {exc})", path=path)


@dataclass
class _SheetExtras:
    """What openpyxl's streaming reader does not give: merged ranges (as column, first row,
    last row) and formula cells with no saved value (row, column)."""

    merges: list[tuple[int, int, int]]
    uncached: set[tuple[int, int]]


def _scan_sheet_xml(path: Path, member: str) -> _SheetExtras:
    """The sheet's extras, read once per file version (a file is opened twice: header, rows)."""
    info = path.stat()
    return _scan_sheet_xml_cached(path.resolve(), member, info.st_mtime_ns, info.st_size)


@lru_cache(maxsize=8)
def _scan_sheet_xml_cached(path: Path, member: str, _mtime: int, _size: int) -> _SheetExtras:
    from xml.etree.ElementTree import ParseError, iterparse

    from openpyxl.utils.cell import coordinate_to_tuple, range_boundaries

    merges: list[tuple[int, int, int]] = []
    uncached: set[tuple[int, int]] = set()
    try:
        with zipfile.ZipFile(path) as archive, archive.open(member.lstrip("/")) as handle:
            for _event, elem in iterparse(handle, events=("end",)):
                tag = elem.tag.rsplit("}", 1)[-1]
                if tag == "c":
                    formula = value = False
                    for child in elem:
                        name = child.tag.rsplit("}", 1)[-1]
                        formula = formula or name == "f"
                        value = value or (name in ("v", "is") and bool(child.text or len(child)))
                    if formula and not value and elem.get("r"):
                        row, col = coordinate_to_tuple(elem.get("r"))
                        uncached.add((row, col - 1))
                elif tag == "row":
                    elem.clear()
                elif tag == "mergeCell" and elem.get("ref"):
                    min_col, min_row, _max_col, max_row = range_boundaries(elem.get("ref"))
                    if min_col and min_row and max_row and max_row > min_row:
                        merges.append((min_col - 1, min_row, max_row))
    except (ParseError, KeyError, ValueError, TypeError, zipfile.BadZipFile, OSError) as exc:
        raise _excel_error(path, exc) from None
    return _SheetExtras(merges, uncached)


@contextmanager
def _first_sheet(path: Path, text_col: str | None = None) -> Iterator[tuple[Any, _SheetExtras]]:
    """The workbook's first sheet and its extras; refused when another sheet holds clues
    too (only one sheet is read, so the others would be lost without a word)."""
    from openpyxl import load_workbook

    check_workbook_xml(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot open the Excel file ({exc.__class__.__name__}: {exc})", path=path) from None
    except Exception as exc:  # malformed XML inside the zip
        raise _excel_error(path, exc) from None
    try:
        try:
            others = [ws.title for ws in book.worksheets[1:] if _holds_clues(ws, text_col)]
        except Exception as exc:
            raise _excel_error(path, exc) from None
        if others:
            raise InputError(
                f"clues are on more than one sheet ({book.worksheets[0].title}, {', '.join(others)}) but only one "
                "sheet is read; save each sheet as its own file (or move the clues to the first sheet)", path=path)
        sheet = book.worksheets[0]
        extras = _scan_sheet_xml(path, getattr(sheet, "_worksheet_path", "xl/worksheets/sheet1.xml"))
        yield sheet, extras
    finally:
        book.close()


def _holds_clues(sheet: Any, text_col: str | None) -> bool:
    """True when one of the sheet's first rows names a text column."""
    if not hasattr(sheet, "iter_rows"):
        return False  # a chart sheet
    wanted = {lookup_key(n) for n in ((text_col,) if text_col else TEXT_COLUMNS)}
    for number, cells in enumerate(sheet.iter_rows(values_only=True, max_row=HEADER_SEARCH_ROWS), 1):
        if any(lookup_key(_cell_text(v)) in wanted for v in cells if v is not None):
            return True
        if number >= HEADER_SEARCH_ROWS:
            break
    return False


def _sheet_rows(sheet: Any, extras: _SheetExtras, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Rows of the sheet as text; a value merged over several rows is carried down to
    every row of the merge (each clue keeps its unit)."""
    # the declared size is wrong in files from some tools; rows past it would be lost
    sheet.reset_dimensions()
    carry: dict[int, tuple[int, str]] = {}  # column -> (last row of the merge, value)
    starts: dict[int, list[tuple[int, int]]] = {}
    for column, first, last in extras.merges:
        starts.setdefault(first, []).append((column, last))
    try:
        for number, raw in enumerate(sheet.iter_rows(values_only=True), 1):
            cells = [_cell_text(v) for v in raw]
            for column, (last, value) in list(carry.items()):
                if number > last:
                    del carry[column]
                    continue
                while len(cells) <= column:
                    cells.append("")
                if not cells[column]:
                    cells[column] = value
            for column, last in starts.get(number, ()):
                if column < len(cells) and cells[column]:
                    carry[column] = (last, cells[column])
            yield number, cells
    except InputError:
        raise
    except Exception as exc:  # malformed sheet XML found while streaming
        raise _excel_error(path, exc) from None


def _xlsx_header(path: Path, text_col: str | None) -> tuple[list[str], int, int | None]:
    """(columns, header row, estimated data rows from the sheet's declared size)."""
    with _first_sheet(path, text_col) as (sheet, extras):
        try:
            declared, declared_width = sheet.max_row, sheet.max_column
        except (ValueError, TypeError):
            declared, declared_width = None, None
        chosen = _choose_header(_sheet_rows(sheet, extras, path), text_col)
    if chosen is None:
        raise InputError("the first sheet is empty", path=path)
    columns, header_row = chosen
    if isinstance(declared_width, int) and declared_width > len(columns):
        # data reaches past the last named header cell (e.g. a merged header cell)
        columns = _dedupe(columns + [""] * (declared_width - len(columns)))
    estimate = declared - header_row if isinstance(declared, int) and declared > header_row else None
    return columns, header_row, estimate


def _read_xlsx(cf: ClueFile) -> Iterator[Row]:
    from openpyxl.utils import get_column_letter

    width = len(cf.columns)
    with _first_sheet(cf.path, cf.text_col) as (sheet, extras):
        for number, cells in _sheet_rows(sheet, extras, cf.path):
            if number <= cf.header_row:
                continue
            if len(cells) != width:
                cells = (cells + [""] * width)[:width]
            row = Row(number, dict(zip(cf.columns, cells, strict=True)))
            blanks = [c for c in range(width) if (number, c) in extras.uncached and not cells[c]]
            if blanks:
                row.note = (f"cell {', '.join(f'{get_column_letter(c + 1)}{number}' for c in blanks)}: a formula "
                            "with no saved value, read as blank (open and save the file in Excel)")
            yield row


_RAW_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "xlsx": _read_xlsx}


# -- writing --------------------------------------------------------------------------


def output_format(path: str | os.PathLike[str]) -> str:
    """The format of an output path from its extension; :class:`InputError` if unsupported."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported output type {Path(path).suffix!r}; use .csv, .xlsx or .jsonl", path=path)
    return fmt


class TableWriter(AbstractContextManager["TableWriter"]):
    """Write rows to .csv (UTF-8 with BOM, for Excel/WPS), .xlsx or .jsonl, atomically.

    Rows go to a temporary file beside ``path`` that replaces ``path`` only when the block
    ends without an exception. Any OS error (full disk, no permission, a folder in the way)
    is an :class:`InputError` naming ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str],
                 before_replace: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.columns = list(columns)
        self.rows = 0
        self.before_replace = before_replace
        self._stack = ExitStack()

    def _cannot_write(self, exc: OSError) -> InputError:
        return InputError(f"cannot write ({exc.strerror or exc})", path=self.path)

    def __enter__(self) -> TableWriter:
        check_output_folder(self.path)
        try:
            self._tmp = self._stack.enter_context(atomic_path(self.path, self.before_replace))
            if self.format == "xlsx":
                from openpyxl import Workbook

                self._book = Workbook(write_only=True)
                self._sheet = self._book.create_sheet("triage")
                _fit_columns(self._sheet, self.columns)  # before the writer starts: it writes these first
                _stream_rows_beside(self._sheet, self.path)
                self._sheet.append(_header_cells(self._sheet, self.columns))
            else:
                encoding = "utf-8-sig" if self.format == "csv" else "utf-8"
                self._handle = open(self._tmp, "w", encoding=encoding, newline="")
                self._stack.callback(self._handle.close)
                if self.format == "csv":
                    self._csv = csv.writer(self._handle)
                    self._csv.writerow([csv_safe(c) for c in self.columns])
        except BaseException as exc:
            with contextlib.suppress(OSError):  # closing fails too on a full disk: report the first error
                self._stack.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, OSError):
                raise self._cannot_write(exc) from None
            raise
        return self

    def write(self, row: dict[str, Any]) -> None:
        """Write one row given as a mapping of column to value (missing columns are empty)."""
        self.write_values([row.get(c, "") for c in self.columns])

    def write_values(self, values: Sequence[Any]) -> None:
        """Write one row given as values in the order of ``columns``."""
        try:
            if self.format == "csv":
                # csv_safe inlined (a function call per cell cost more than the rest of the row)
                first = _FORMULA_FIRST
                self._csv.writerow([("'" + v) if isinstance(v, str) and v[:1] in first else v
                                    for v in values])  # None is written as an empty field
            elif self.format == "jsonl":
                self._handle.write(json.dumps(dict(zip(self.columns, values, strict=True)), ensure_ascii=False) + "\n")
            else:
                if self.rows + 2 > EXCEL_MAX_ROWS:
                    raise InputError(f"more than {EXCEL_MAX_ROWS - 1:,} rows do not fit in .xlsx; write .csv or .jsonl",
                                     path=self.path)
                self._sheet.append([_excel_cell(self._sheet, v) for v in values])
        except OSError as exc:
            raise self._cannot_write(exc) from None
        self.rows += 1

    def _discard_workbook(self) -> None:
        """Drop a half-written workbook and the temporary file openpyxl streams rows to."""
        sheet = getattr(self, "_sheet", None)
        if sheet is None:
            return
        with contextlib.suppress(Exception):
            sheet.close()
        if getattr(sheet, "_writer", None) is not None:
            with contextlib.suppress(Exception):
                sheet._writer.cleanup()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is not None:
            self._discard_workbook()
        else:
            try:
                if self.format == "xlsx":
                    from openpyxl.utils import get_column_letter

                    self._sheet.auto_filter.ref = f"A1:{get_column_letter(len(self.columns))}{self.rows + 1}"
                    self._book.save(self._tmp)
                else:
                    self._handle.close()  # flushes: a full disk shows here
            except BaseException as err:
                self._discard_workbook()
                self._stack.__exit__(type(err), err, err.__traceback__)
                if isinstance(err, OSError):
                    raise self._cannot_write(err) from None
                raise
        try:
            return self._stack.__exit__(exc_type, exc, tb)
        except OSError as err:
            if exc_type is not None:
                # closing failed too (a full disk fails the final flush as well): the first
                # error is the one to report; the temporary file was removed all the same
                return None
            raise self._cannot_write(err) from None


#: header styles of the tables the tool writes: Chinese headers, or the column codes
HEADER_STYLES = ("zh", "en")


def check_header_style(headers: str) -> None:
    """Refuse a header style other than :data:`HEADER_STYLES` (``--headers``)."""
    if headers not in HEADER_STYLES:
        raise InputError(f"unknown header style {headers!r}; use zh (Chinese) or en (column codes)")


def check_output_folder(path: Path) -> None:
    """An output goes into a folder that exists: a mistyped folder is named, not created."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write ({folder} is a file, not a folder)", path=path)
    if not folder.is_dir():
        raise InputError(f"the folder {folder} does not exist; create it first or choose another -o", path=path)


def _stream_rows_beside(sheet: Any, target: Path) -> None:
    """Make openpyxl stream a write-only sheet's rows to a temporary file beside the output
    (owner-only, named like our other temporary files) instead of /tmp: a killed run's rows
    stay out of a shared folder and are cleaned at the next start (store.reap_dead_runs)."""
    import tempfile

    from openpyxl.worksheet import _writer

    fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".sheet.tmp", dir=target.parent)
    os.close(fd)
    _writer.ALL_TEMP_FILES.append(name)
    sheet._writer = _writer.WorksheetWriter(sheet, out=name)
    sheet._writer.write_top()


#: column width (characters) for the long columns of an output sheet; others fit their header
WIDE_COLUMNS = {**dict.fromkeys(TEXT_COLUMNS, 60), "key_terms": 24, "handover": 16, "status_detail": 30,
                "group_id": 22}


def _fit_columns(sheet: Any, columns: Sequence[str]) -> None:
    """A write-only sheet's fitted column widths and frozen header row (set before the sheet's
    writer starts, as write-only sheets require); the filter is set on save."""
    from openpyxl.utils import get_column_letter

    for i, name in enumerate(columns, 1):
        wide = WIDE_COLUMNS.get(name) or WIDE_COLUMNS.get(lookup_key(name))
        width = wide or max(8, min(30, sum(2 if ord(ch) > 0x2E80 else 1 for ch in name) + 2))
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.freeze_panes = "A2"


def _header_cells(sheet: Any, columns: Sequence[str]) -> list[Any]:
    """The header row of a write-only sheet: bold on a pale fill, sanitised like every cell."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import Cell
    from openpyxl.styles import Font, PatternFill

    cells = []
    for name in columns:
        value = _excel_cell(sheet, name)
        cell = value if isinstance(value, Cell) else WriteOnlyCell(sheet, value=value)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
        cells.append(cell)
    return cells


def _excel_cell(sheet: Any, value: Any) -> Any:
    """A cell value for openpyxl: text that starts with '=' stays text, never a formula;
    characters XML 1.0 forbids (C0 controls, U+FFFE/U+FFFF, surrogates) are dropped; text is
    cut at Excel's 32,767-character cell limit."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell import WriteOnlyCell

    value = xml_text(value)[:EXCEL_CELL_LIMIT]
    if value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"
        return cell
    return value
