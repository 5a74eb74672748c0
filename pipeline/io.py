"""Reading clue files (CSV, Excel, JSONL in UTF-8, GB18030/GBK or Big5) and writing results.

Input is streamed row by row so memory stays flat for large files. Every data row is
yielded with its row number as a spreadsheet user sees it (the header is row 1), empty
rows included (trailing empty rows are not rows). Problems are :class:`InputError` with
the file, row and column. Output is written to a temporary file and renamed into place,
so a failed run leaves no partial file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import InputError
from .fsutil import atomic_path
from .normalize import to_simplified

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_COLUMNS = ("text", "content", "线索内容", "问题线索", "内容", "反映内容", "问题线索内容", "线索")
ID_COLUMNS = ("id", "编号", "序号", "线索编号")
UNIT_COLUMNS = ("unit", "被巡察单位", "单位", "被巡察党组织")
SAMPLE_BYTES = 1 << 20
_CSV_FIELD_LIMIT = 1 << 24

csv.field_size_limit(_CSV_FIELD_LIMIT)


def _column_key(name: str) -> str:
    return to_simplified(unicodedata.normalize("NFKC", str(name))).strip().lower()


@dataclass
class Row:
    number: int
    values: dict[str, str]


@dataclass
class ClueFile:
    """An opened clue file: format, encoding, columns and the chosen text/id/unit columns."""

    path: Path
    format: str
    encoding: str | None
    columns: list[str]
    text_col: str
    id_col: str | None
    unit_col: str | None
    header_row: int = 1
    _opened: list[Any] = field(default_factory=list, repr=False)

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
    """The encoding of a text file: UTF-8 (with or without BOM), GB18030 (GBK) or Big5 (cp950)."""
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    if b"\x00" in sample:
        raise InputError("binary file (contains NUL bytes), not a text clue file", path=path)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(sample) - 4 and len(sample) == SAMPLE_BYTES:
            return "utf-8"  # cut in the middle of a character at the sample's end
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


# -- opening --------------------------------------------------------------------------


def _pick(columns: Sequence[str], wanted: str | None, names: Sequence[str], role: str, path: Path, required: bool) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        matches = [c for c in columns if _column_key(c) == _column_key(wanted)]
        if len(matches) == 1:
            return matches[0]
        raise InputError(f"no column {wanted!r} for the {role}; columns seen: {', '.join(map(str, columns))}", path=path)
    keys = [_column_key(n) for n in names]
    found = [c for c in columns if _column_key(c) in keys]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(
            f"several columns could be the {role} ({', '.join(found)}); choose one with --{role.split()[0]}-col",
            path=path,
        )
    if required:
        raise InputError(
            f"no {role} column found (looked for {', '.join(names)}); columns seen: "
            f"{', '.join(map(str, columns)) or 'none'}; name it with --text-col",
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
    """Open a clue file, detect its encoding and header, and find the columns to use."""
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
    if fmt == "jsonl":
        columns, header_row = _jsonl_columns(path, encoding or "utf-8"), 0
    elif fmt == "csv":
        columns, header_row = _csv_header(path, encoding or "utf-8"), 1
    else:
        columns, header_row = _xlsx_header(path, text_col)
    text = _pick(columns, text_col, TEXT_COLUMNS, "text column", path, required=True)
    assert text is not None
    ident = _pick(columns, id_col, ID_COLUMNS, "id column", path, required=False)
    unit = _pick(columns, unit_col, UNIT_COLUMNS, "unit column", path, required=False)
    return ClueFile(path, fmt, encoding, columns, text, ident, unit, header_row)


# -- CSV ------------------------------------------------------------------------------


def _open_text(path: Path, encoding: str) -> TextIO:
    return open(path, encoding=encoding, errors="strict", newline="")


def _csv_header(path: Path, encoding: str) -> list[str]:
    try:
        with _open_text(path, encoding) as handle:
            for fields in csv.reader(handle, strict=True):
                if any(f.strip() for f in fields):
                    return _dedupe([f.strip() for f in fields])
    except UnicodeDecodeError:
        raise InputError(f"not valid {encoding} text near the start", path=path, row=1) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV header ({exc})", path=path, row=1) from None
    raise InputError("file is empty (no header row)", path=path)


def _dedupe(names: list[str]) -> list[str]:
    out: list[str] = []
    for i, name in enumerate(names, 1):
        name = name or f"column_{i}"
        while name in out:
            name += "_"
        out.append(name)
    return out


def _read_csv(cf: ClueFile) -> Iterator[Row]:
    assert cf.encoding is not None
    record = 0
    with _open_text(cf.path, cf.encoding) as handle:
        reader = csv.reader(handle, strict=True)
        try:
            header_seen = False
            for fields in reader:
                record += 1
                if not header_seen:
                    if any(f.strip() for f in fields):
                        header_seen = True
                    continue
                if not any(f.strip() for f in fields):
                    yield Row(record, dict.fromkeys(cf.columns, ""))
                    continue
                if len(fields) != len(cf.columns):
                    raise InputError(
                        f"has {len(fields)} fields but the header has {len(cf.columns)} (truncated or misquoted file?)",
                        path=cf.path, row=record,
                    )
                yield Row(record, dict(zip(cf.columns, fields, strict=True)))
        except csv.Error as exc:
            raise InputError(f"malformed CSV ({exc}); the file may be truncated", path=cf.path, row=record + 1) from None
        except UnicodeDecodeError:
            raise InputError(f"not valid {cf.encoding} text (mixed encodings?)", path=cf.path, row=record + 1) from None


# -- JSONL ----------------------------------------------------------------------------


def _jsonl_columns(path: Path, encoding: str) -> list[str]:
    columns: dict[str, None] = {}
    try:
        with open(path, encoding=encoding) as handle:
            for number, line in enumerate(handle, 1):
                if number > 1000:
                    break
                if line.strip():
                    obj = _json_object(line, path, number)
                    columns.update(dict.fromkeys(obj))
    except UnicodeDecodeError:
        raise InputError(f"not valid {encoding} text", path=path) from None
    return list(columns)


def _json_object(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg})", path=path, row=number) from None
    if not isinstance(obj, dict):
        raise InputError("each line must be a JSON object", path=path, row=number)
    return obj


def _read_jsonl(cf: ClueFile) -> Iterator[Row]:
    assert cf.encoding is not None
    try:
        with open(cf.path, encoding=cf.encoding) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    yield Row(number, dict.fromkeys(cf.columns, ""))
                    continue
                obj = _json_object(line, cf.path, number)
                values = {k: "" if v is None else v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                          for k, v in obj.items()}
                for col in cf.columns:
                    values.setdefault(col, "")
                yield Row(number, values)
    except UnicodeDecodeError:
        raise InputError(f"not valid {cf.encoding} text", path=cf.path) from None


# -- Excel ----------------------------------------------------------------------------


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(f"cannot open the Excel file ({exc.__class__.__name__}: {exc})", path=path) from None
    try:
        sheet = book.worksheets[0]
        for number, cells in enumerate(sheet.iter_rows(values_only=True), 1):
            yield number, [_cell_text(v) for v in cells]
    finally:
        book.close()


def _xlsx_header(path: Path, text_col: str | None) -> tuple[list[str], int]:
    """The header row: the first of the top rows naming a text column (title rows above it,
    often merged across the sheet, are skipped); else the first non-empty row."""
    wanted = {_column_key(n) for n in ((text_col,) if text_col else TEXT_COLUMNS)}
    first: tuple[list[str], int] | None = None
    for number, cells in _xlsx_rows(path):
        names = [c.strip() for c in cells]
        if any(names):
            if first is None:
                first = (_dedupe(names), number)
            if any(_column_key(n) in wanted for n in names):
                return _dedupe(names), number
        if number >= 10:
            break
    if first is None:
        raise InputError("the first sheet is empty", path=path)
    return first


def _read_xlsx(cf: ClueFile) -> Iterator[Row]:
    width = len(cf.columns)
    for number, cells in _xlsx_rows(cf.path):
        if number <= cf.header_row:
            continue
        cells = (cells + [""] * width)[:width] if len(cells) != width else cells
        yield Row(number, dict(zip(cf.columns, cells, strict=True)))


_RAW_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "xlsx": _read_xlsx}


# -- writing --------------------------------------------------------------------------


class TableWriter(AbstractContextManager["TableWriter"]):
    """Write rows to .csv (UTF-8 with BOM, for Excel/WPS), .xlsx or .jsonl, atomically."""

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(f"unsupported output type {self.path.suffix!r}; use .csv, .xlsx or .jsonl", path=self.path)
        self.columns = list(columns)
        self._stack = ExitStack()

    def __enter__(self) -> TableWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        if self.format == "xlsx":
            from openpyxl import Workbook

            self._book = Workbook(write_only=True)
            self._sheet = self._book.create_sheet("triage")
            self._sheet.append(self.columns)
        else:
            encoding = "utf-8-sig" if self.format == "csv" else "utf-8"
            self._handle: io.TextIOWrapper = open(self._tmp, "w", encoding=encoding, newline="")
            self._stack.callback(self._handle.close)
            if self.format == "csv":
                self._csv = csv.writer(self._handle)
                self._csv.writerow(self.columns)
        return self

    def write(self, row: dict[str, Any]) -> None:
        values = [row.get(c, "") for c in self.columns]
        if self.format == "csv":
            self._csv.writerow(["" if v is None else v for v in values])
        elif self.format == "jsonl":
            self._handle.write(json.dumps(dict(zip(self.columns, values, strict=True)), ensure_ascii=False) + "\n")
        else:
            self._sheet.append([_excel_cell(self._sheet, v) for v in values])

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is None and self.format == "xlsx":
            self._book.save(self._tmp)
        return self._stack.__exit__(exc_type, exc, tb)


def _excel_cell(sheet: Any, value: Any) -> Any:
    """A cell value for openpyxl: text that starts with '=' stays text, never a formula;
    characters Excel cannot store (C0 controls) are dropped."""
    if not isinstance(value, str):
        return value
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"
        return cell
    return value
