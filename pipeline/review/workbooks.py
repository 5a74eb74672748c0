"""Excel workbooks of the review: the review sheet (export and import) and the hand-over lists.

The review sheet has one row per clue with the model's labels and empty ``reviewed_*``
columns with drop-down lists; reviewers fill in what they change and the file comes back
through :func:`import_review_sheet`, which is all or nothing: every row is checked first and
any bad row stops the whole import with a list of every problem. Re-importing the same
decisions (even from a re-saved file) records nothing new.

The hand-over workbook (分类移交) has one sheet per receiving body of the routing table,
holding the clues whose effective labels route there; disputed clues and clues still
needing review go to a separate sheet and never into a hand-over list.
"""

from __future__ import annotations

import os
import sqlite3
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ValidationError
from ..fsutil import atomic_path, sha256_file
from ..intake.io import check_header_style, check_output_folder, check_workbook_xml, xml_text
from ..intake.routing import Routing, load_routing
from ..labels import AREA, ATTENTION, SHORT_NAMES, parse_label
from ..store.store import chain_overrides, insert_chained, transaction, unit_key
from ..text.normalize import lookup_key
from .review import (
    ClueState,
    RunScope,
    clue_state,
    clue_states,
    get_reviewer,
    group_members,
    member_rows,
    one_per_group,
    override_row,
    recused_units,
    reports,
)

#: (header, width in characters); ``clue_key`` and ``run`` are hidden and read back on import.
REVIEW_COLUMNS: tuple[tuple[str, int], ...] = (
    ("id", 14), ("unit", 22), ("text", 60), ("predicted_attention", 16), ("attention_confidence", 11),
    ("predicted_area", 12), ("area_confidence", 11), ("key_terms", 24), ("needs_review", 9),
    ("reviewed_attention", 18), ("reviewed_area", 16), ("reason", 30), ("reports", 8), ("same_matter", 18),
    ("run", 6), ("clue_key", 22),
)
REVIEWED = {"attention": "reviewed_attention", "area": "reviewed_area"}
#: the Chinese header of each column (the default; ``headers="en"`` keeps the codes); an
#: import reads either
HEADERS_ZH = {
    "id": "编号", "unit": "被巡察单位", "text": "线索内容", "predicted_attention": "模型关注类别",
    "attention_confidence": "关注类别置信度", "predicted_area": "模型领域", "area_confidence": "领域置信度",
    "key_terms": "关键词", "needs_review": "需复核", "reviewed_attention": "复核关注类别", "reviewed_area": "复核领域",
    "reason": "理由", "reports": "反映次数", "same_matter": "同一问题其他编号", "run": "批次", "clue_key": "clue_key",
    "origin": "来源", "head": "维度", "given": "现有标注", "suggested": "建议标注", "p_given": "现有标注概率",
    "p_suggested": "建议标注概率", "second_look": "复查结论",
}
PENDING_SHEET = "待复核或有争议"
HEAD_NAMES = {"attention": "关注类别", "area": "领域"}
SOURCE_NAMES = {"predicted": "模型预测", "reviewed": "复核确认", "adjudicated": "争议裁决", "disputed": "有争议"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _put(sheet: Any, row: int, column: int, value: Any) -> Any:
    """Write a cell; text is kept as text (never a formula) and characters XML 1.0 forbids
    (controls, U+FFFE/U+FFFF, lone surrogates) dropped: one of them would make the whole
    workbook unreadable."""
    from ..intake.io import EXCEL_CELL_LIMIT

    cell = sheet.cell(row=row, column=column)
    if isinstance(value, str):
        cell.value = xml_text(value)[:EXCEL_CELL_LIMIT]
        cell.data_type = "s"
    else:
        cell.value = value
    return cell


def _header_names(headers: str) -> dict[str, str]:
    check_header_style(headers)
    return HEADERS_ZH if headers == "zh" else {}


def _table_sheet(sheet: Any, columns: tuple[tuple[str, int], ...], rows: list[list[Any]], wrap: set[str],
                 names: dict[str, str] | None = None) -> None:
    """Header, rows, widths, wrapping, frozen header row and a filter: readable by a person.
    ``names`` shows a column under another header (Chinese for the codes)."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    for c, (name, width) in enumerate(columns, 1):
        cell = _put(sheet, 1, c, (names or {}).get(name, name))
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
        sheet.column_dimensions[get_column_letter(c)].width = width
    top = Alignment(vertical="top")
    wrapped = Alignment(vertical="top", wrap_text=True)
    for r, values in enumerate(rows, 2):
        for c, value in enumerate(values, 1):
            _put(sheet, r, c, value).alignment = wrapped if columns[c - 1][0] in wrap else top
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(1, len(rows) + 1)}"


def _save(book: Any, path: Path) -> None:
    check_output_folder(path)
    try:
        with atomic_path(path) as tmp:
            book.save(tmp)
    except OSError as exc:
        raise InputError(f"cannot write ({exc.strerror or exc})", path=path) from None


def _xlsx_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise InputError("the workbook must be an .xlsx file", path=path)
    return path


# -- review sheet: export -------------------------------------------------------------


def export_review_sheet(
    db: sqlite3.Connection, path: str | os.PathLike[str], run: RunScope = None, reviewer_id: str | None = None,
    *, include_unknown_units: bool = False, needs_review: bool = False, unit: str | None = None,
    limit: int | None = None, headers: str = "zh",
) -> int:
    """Write the review sheet for every clue (of ``run``, else every clue with its latest
    prediction); return the number of clue rows. The file is owner-only and written atomically.

    With ``reviewer_id`` the sheet is that reviewer's: clues of units they recused from are
    left out, so a recused reviewer never even sees them (import refuses them anyway), and
    so are clues of unknown units unless ``include_unknown_units``
    (:class:`pipeline.review.review.Eligibility`); when clues were assigned to them
    (``review assign``), only their share. One row per repeat group. ``needs_review``,
    ``unit`` and ``limit`` narrow the sheet (:func:`pipeline.review.assignments.share`)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    from .assignments import share

    path = _xlsx_path(path)
    check_output_folder(path)
    names = _header_names(headers)
    if reviewer_id is not None:
        reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
    states = share(db, reviewer_id, run, needs_review=needs_review, unit=unit, limit=limit,
                   include_unknown_units=include_unknown_units)
    counts = reports(db, run)
    rows = []
    for s in states:
        p = s.prediction
        assert p is not None
        mine = {h: [d.new_label for d in s.rows if d.head == h and d.kind == "review" and d.reviewer_id == reviewer_id]
                for h in REVIEWED}  # the reviewer's own earlier decisions, shown filled in
        ids = counts.get(s.group_key, [s.clue_id])
        rows.append([s.clue_id, s.unit, s.text, SHORT_NAMES[p.labels["attention"]], round(p.confidence["attention"], 3),
                     SHORT_NAMES[p.labels["area"]], round(p.confidence["area"], 3), p.key_terms,
                     "是" if p.needs_review else "否",
                     SHORT_NAMES[mine["attention"][-1]] if mine["attention"] else None,
                     SHORT_NAMES[mine["area"][-1]] if mine["area"] else None, None,
                     len(ids), "、".join(i for i in dict.fromkeys(ids) if i != s.clue_id), p.run_id, s.clue_key])
    book = Workbook()
    sheet = book.active
    sheet.title = "复核"
    _table_sheet(sheet, REVIEW_COLUMNS, rows, wrap={"text", "unit", "key_terms", "reason"}, names=names)
    index = {name: i for i, (name, _) in enumerate(REVIEW_COLUMNS, 1)}
    last = max(2, len(rows) + 1)
    for head, codes in (("attention", ATTENTION), ("area", AREA)):
        letter = get_column_letter(index[REVIEWED[head]])
        dv = DataValidation(type="list", formula1='"' + ",".join(SHORT_NAMES[c] for c in codes) + '"', allow_blank=True,
                            showErrorMessage=True, errorTitle="不在可选范围内",
                            error="请从下拉列表选择；留空表示不修改 / choose from the list; blank = no change")
        dv.add(f"{letter}2:{letter}{last}")
        sheet.add_data_validation(dv)
        for r in range(2, len(rows) + 2):
            sheet[f"{get_column_letter(index[head + '_confidence'])}{r}"].number_format = "0.00"
    for hidden in ("run", "clue_key"):
        sheet.column_dimensions[get_column_letter(index[hidden])].hidden = True
    _save(book, path)
    return len(rows)


SUSPECT_COLUMNS: tuple[tuple[str, int], ...] = (
    ("origin", 9), ("id", 22), ("head", 10), ("given", 12), ("suggested", 12), ("p_given", 9), ("p_suggested", 11),
    ("text", 70), ("second_look", 16), ("reason", 30),
)


def export_suspect_sheet(suspects: Sequence[Any], path: str | os.PathLike[str], headers: str = "zh") -> int:
    """Write labels that out-of-fold predictions disagree with (``retrain --audit``) for a
    second look; return the number of rows. ``origin`` says where a label lives: a corpus
    clue (fixed in data/clues.jsonl by the corpus maintainer) or a reviewed clue (decided
    again with ``review next`` / ``review resolve``). Nothing is changed by this sheet."""
    from openpyxl import Workbook

    path = _xlsx_path(path)
    rows = [[s.origin, s.ref, s.head, SHORT_NAMES[s.given], SHORT_NAMES[s.suggested], round(s.p_given, 3),
             round(s.p_suggested, 3), s.text, None, None] for s in suspects]
    book = Workbook()
    sheet = book.active
    sheet.title = "疑似标注错误"
    _table_sheet(sheet, SUSPECT_COLUMNS, rows, wrap={"text", "reason"}, names=_header_names(headers))
    _save(book, path)
    return len(rows)


# -- review sheet: import -------------------------------------------------------------


@dataclass
class ImportResult:
    rows: int = 0
    recorded: Counter[str] = field(default_factory=Counter)  # head -> override rows written
    unchanged: int = 0  # head decisions already on record for this reviewer
    members: int = 0  # override rows written for other clues of the same repeat groups
    lock_seconds: float = 0.0  # how long the store's write lock was held


def _read_sheet(path: Path) -> tuple[dict[str, int], list[tuple[int, list[Any]]]]:
    from openpyxl import load_workbook

    check_workbook_xml(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(f"cannot open the Excel file ({exc.__class__.__name__}: {exc})", path=path) from None
    except Exception as exc:  # malformed XML inside the zip
        raise InputError(f"cannot read the Excel file; it is damaged ({exc.__class__.__name__}: {exc})",
                         path=path) from None
    try:
        lines = list(book.worksheets[0].iter_rows(values_only=True))
    except Exception as exc:
        raise InputError(f"cannot read the Excel file; it is damaged ({exc.__class__.__name__}: {exc})",
                         path=path) from None
    finally:
        book.close()
    if not lines:
        raise InputError("the first sheet is empty", path=path)
    codes = {lookup_key(zh): code for code, zh in HEADERS_ZH.items()}
    header = {codes.get(lookup_key(_text(v)), _text(v).lower()): i for i, v in enumerate(lines[0]) if _text(v)}
    missing = [c for c in REVIEWED.values() if c not in header]
    if missing or not ({"clue_key", "id"} & set(header)):
        raise InputError(f"not a review sheet: no column {', '.join(missing) or 'clue_key or id'} in row 1 "
                         "(export one with clue-triage review export)", path=path)
    return header, [(n, list(v)) for n, v in enumerate(lines[1:], 2)]


#: how often an import re-validates when other decisions arrive between its check and its write
IMPORT_ATTEMPTS = 3


def import_review_sheet(db: sqlite3.Connection, path: str | os.PathLike[str], reviewer_id: str) -> ImportResult:
    """Record a reviewer's decisions from a filled-in review sheet, all or nothing.

    Codes or Chinese names (full or short, Simplified or Traditional) are accepted in the
    ``reviewed_*`` columns; blank means no change. Any unknown label, unknown clue or row of
    a unit the reviewer recused from raises :class:`ValidationError` listing every bad row,
    and nothing is written. A head whose label equals this reviewer's latest decision for
    the clue is skipped, so importing the same decisions again records nothing.

    Every row is checked *before* the write lock is taken, against a snapshot of the store;
    the rows are then written in one ``executemany``. If other decisions or recusals arrived
    in between, the import checks again (the lock is held for the write only: under 2 s for
    20,000 rows).
    """
    path = _xlsx_path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    header, lines = _read_sheet(path)
    digest = sha256_file(path)
    reviewer_id = get_reviewer(db, reviewer_id).reviewer_id
    for _attempt in range(IMPORT_ATTEMPTS):
        marker = _store_marker(db, reviewer_id)
        result, rows = _plan_import(db, path, header, lines, reviewer_id, digest)
        values = chain_overrides(db, rows)  # ids and hash links, before the lock
        started = time.perf_counter()
        with transaction(db, f"a review import by {reviewer_id} ({len(rows):,} decisions)"):
            if _store_marker(db, reviewer_id) != marker:
                continue  # the store changed since the check: check again
            insert_chained(db, values)
        result.lock_seconds = time.perf_counter() - started
        return result
    raise InputError("the store kept changing while this import was checked; try again", path=path)


def _store_marker(db: sqlite3.Connection, reviewer_id: str) -> tuple[Any, ...]:
    """What an import's check depends on: the last override, the reviewer's recusals, the last run."""
    return (
        db.execute("SELECT MAX(override_id) FROM overrides").fetchone()[0],
        db.execute("SELECT COUNT(*) FROM recusals WHERE reviewer_id = ?", (reviewer_id,)).fetchone()[0],
        db.execute("SELECT MAX(run_id), COUNT(*) FROM runs WHERE status = 'complete'").fetchone()[:],
    )


def _plan_import(db: sqlite3.Connection, path: Path, header: dict[str, int], lines: list[tuple[int, list[Any]]],
                 reviewer_id: str, digest: str) -> tuple[ImportResult, list[dict[str, object]]]:
    """Check every row (reads only) and return the override rows to write."""

    def cell(values: list[Any], column: str) -> str:
        i = header.get(column)
        return _text(values[i]) if i is not None and i < len(values) else ""

    result = ImportResult()
    recused = recused_units(db, reviewer_id)
    states = {s.clue_key: s for s in clue_states(db)}
    by_id: dict[str, set[str]] = {}
    for key, clue_id in db.execute("SELECT clue_key, clue_id FROM clues UNION "
                                   "SELECT clue_key, clue_id FROM predictions WHERE clue_key IS NOT NULL"):
        by_id.setdefault(clue_id, set()).add(key)
    problems: list[str] = []
    planned: dict[str, tuple[int, ClueState, dict[str, str], str]] = {}
    for number, values in lines:
        labels, reason = {h: cell(values, c) for h, c in REVIEWED.items()}, cell(values, "reason")
        if not any(labels.values()):
            if reason:
                problems.append(f"row {number}: a reason but no reviewed label (fill reviewed_attention or reviewed_area)")
            continue
        result.rows += 1
        where = f"row {number}"
        ref = cell(values, "clue_key") or cell(values, "id")
        keys = sorted({ref} if ref in states else by_id.get(ref, set())) if ref else []
        if len(keys) != 1:
            problems.append(f"{where}: " + ("no clue id" if not ref else f"unknown clue id {ref!r}" if not keys
                                            else f"clue id {ref!r} names several clues; keep the clue_key column"))
            continue
        run = cell(values, "run")
        state = states.get(keys[0])
        if state is None or (run.isdigit() and state.prediction is not None and state.prediction.run_id != int(run)):
            try:
                state = clue_state(db, keys[0], int(run) if run.isdigit() else None)
            except InputError as exc:
                problems.append(f"{where}, column 'run': {exc}")
                continue
        where = f"row {number} (clue {state.clue_id})"
        if state.unit_key in recused or unit_key(state.unit) in recused:
            problems.append(f"{where}: unit {state.unit!r} is one reviewer {reviewer_id} recused from")
        if state.prediction is None:
            problems.append(f"{where}: the clue has no prediction from a complete triage run")
        codes = {}
        for head, value in labels.items():
            if value:
                try:
                    codes[head] = parse_label(head, value)
                except InputError as exc:
                    problems.append(f"{where}, column {REVIEWED[head]!r}: {exc}")
        earlier = planned.get(state.clue_key)
        if earlier is None:
            planned[state.clue_key] = (number, state, codes, reason)
        elif any(earlier[2].get(h, c) != c for h, c in codes.items()):
            problems.append(f"{where}: contradicts row {earlier[0]} about the same clue")
        else:  # two rows about one clue that agree: keep both heads and both reasons
            merged = {**earlier[2], **codes}
            reasons = "; ".join(dict.fromkeys(r for r in (earlier[3], reason) if r))
            planned[state.clue_key] = (earlier[0], earlier[1], merged, reasons)
    if problems:
        raise ValidationError(f"{path}: {len(problems)} problem(s); nothing was recorded", problems)
    rows: list[dict[str, object]] = []
    for _number, state, codes, reason in planned.values():
        for head, code in codes.items():
            mine = [d for d in state.rows if d.head == head and d.kind == "review" and d.reviewer_id == reviewer_id]
            if mine and mine[-1].new_label == code:
                result.unchanged += 1
                continue
            rows.append(override_row(state, head, code, reviewer_id, reason=reason, channel="excel",
                                     import_sha256=digest))
            result.recorded[head] += 1
    done: set[str] = set()
    for _number, state, codes, reason in planned.values():
        for member in group_members(db, state.clue_key)[1:]:
            if member in planned or member in done:
                continue
            done.add(member)  # a decision on a repeat group applies to its other clues
            member_state = states.get(member) or clue_state(db, member)
            extra = member_rows(db, member_state, codes, reviewer_id, reason=reason, channel="excel",
                                import_sha256=digest)
            rows.extend(extra)
            result.members += len(extra)
    return result, rows


# -- hand-over lists ------------------------------------------------------------------

HANDOVER_COLUMNS: tuple[tuple[str, int], ...] = (
    ("编号", 14), ("被巡察单位", 22), ("线索内容", 60), ("关注类别", 16), ("领域", 12), ("定性依据", 10),
    ("关键词", 24), ("复核人", 14), ("反映次数", 8), ("同一问题其他编号", 20), ("批次", 6),
)
PENDING_COLUMNS = (*HANDOVER_COLUMNS, ("待办原因", 40))


@dataclass
class HandoverResult:
    sheets: dict[str, int]  # receiving body -> clues handed over
    pending: int  # clues on the separate sheet


def _sheet_name(name: str, taken: set[str]) -> str:
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in xml_text(name))[:31].strip("'") or "sheet"
    base, n = clean, 2
    while clean in taken:
        clean = f"{base[:28]}_{n}"
        n += 1
    taken.add(clean)
    return clean


def _pending_reason(state: ClueState) -> str:
    reasons = [f"{HEAD_NAMES[h]}有争议: " + ", ".join(f"{r}={SHORT_NAMES[label]}" for r, label in sorted(s.decisions.items()))
               for h, s in state.heads.items() if s.status == "disputed"]
    if state.needs_review:
        reasons.append("模型置信度低，尚未复核 / needs review")
    return "; ".join(reasons)


@dataclass
class HandoverRows:
    """The hand-over lists in memory: one row per repeat group (its first clue's state)."""

    bodies: dict[str, list[tuple[ClueState, list[Any]]]]  # receiving body -> (state, sheet row)
    pending: list[tuple[ClueState, list[Any]]]  # not ready: disputed or still needing review


def handover_rows(db: sqlite3.Connection, run: RunScope = None, routing: Routing | None = None) -> HandoverRows:
    """Which receiving body each matter goes to (the effective labels of the group's first
    clue), and which are not ready (a clue of the group disputed or needing review). The
    hand-over workbook and the round report both count from this."""
    routing = routing or load_routing()
    bodies: dict[str, list[tuple[ClueState, list[Any]]]] = {body: [] for body in routing.bodies()}
    pending: list[tuple[ClueState, list[Any]]] = []
    states = clue_states(db, run)
    counts = reports(db, run)
    not_ready = {s.group_key for s in states if s.disputed or s.needs_review}
    for s in one_per_group(states):  # one row per matter, with the number of reports
        labels = s.effective()
        status = "adjudicated" if any(h.status == "adjudicated" for h in s.heads.values()) else \
            "reviewed" if any(h.status == "reviewed" for h in s.heads.values()) else "predicted"
        reviewers = sorted({d.reviewer_id for d in s.rows})
        assert s.prediction is not None and labels["attention"] and labels["area"]
        ids = counts.get(s.group_key, [s.clue_id])
        row = [s.clue_id, s.unit, s.text, SHORT_NAMES[labels["attention"]], SHORT_NAMES[labels["area"]],
               SOURCE_NAMES["disputed" if s.disputed else status], s.prediction.key_terms, "、".join(reviewers),
               len(ids), "、".join(i for i in dict.fromkeys(ids) if i != s.clue_id), s.prediction.run_id]
        if s.group_key in not_ready:
            pending.append((s, [*row, _pending_reason(s)]))
        else:
            bodies.setdefault(routing.handover(labels["attention"], labels["area"]), []).append((s, row))
    return HandoverRows(bodies, pending)


def write_handover(db: sqlite3.Connection, path: str | os.PathLike[str], run: RunScope = None,
                   routing: Routing | None = None) -> HandoverResult:
    """Write the hand-over workbook: one sheet per receiving body, effective labels, one row
    per matter (repeat group) with its number of reports, plus the sheet of clues not ready
    to hand over. Returns the counts per sheet."""
    from openpyxl import Workbook

    path = _xlsx_path(path)
    check_output_folder(path)
    lists = handover_rows(db, run, routing)
    book = Workbook()
    book.remove(book.active)
    taken: set[str] = set()
    for body, rows in lists.bodies.items():
        _table_sheet(book.create_sheet(_sheet_name(body, taken)), HANDOVER_COLUMNS, [r for _, r in rows],
                     wrap={"线索内容", "被巡察单位"})
    _table_sheet(book.create_sheet(_sheet_name(PENDING_SHEET, taken)), PENDING_COLUMNS, [r for _, r in lists.pending],
                 wrap={"线索内容", "被巡察单位", "待办原因"})
    _save(book, path)
    return HandoverResult({body: len(rows) for body, rows in lists.bodies.items()}, len(lists.pending))
