"""The report of a round per unit (巡察线索汇总): counts, hand-over, charts; .xlsx or .html.

Everything is counted per *matter* (a repeat group, shown once with its number of reports)
from the same functions the hand-over workbook and ``review stats`` use, so the numbers
agree: the hand-over counts come from :func:`pipeline.review.workbooks.handover_rows`, the
disputed heads from :func:`pipeline.review.review.disputes`. A matter belongs to the unit of its
first clue: the directory name when the unit resolved, else the name as written, else
"(未填单位)". Units the round covers appear even with no clue.

Call :func:`build_report`, then :func:`write_report` (the format follows the extension).
The HTML file is self-contained: inline CSS and SVG charts whose Chinese labels are drawn
as paths, so it shows the same on any machine.
"""

from __future__ import annotations

import html
import io
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fsutil import atomic_path
from ..intake.rounds import Scope
from ..intake.routing import Routing
from ..labels import AREA, ATTENTION, SHORT_NAMES
from .review import RunScope, disputes, reports
from .workbooks import _save, _table_sheet, handover_rows

NO_UNIT = "(未填单位)"


@dataclass
class UnitCounts:
    unit: str
    in_directory: bool = True
    matters: int = 0  # repeat groups
    reports: int = 0  # rows of input files
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)  # (attention, area) -> matters
    needs_review: int = 0  # matters flagged by the model that nobody decided
    reviewed: int = 0  # matters with at least one decision
    disputed: int = 0  # matters with a disputed head
    handover: Counter[str] = field(default_factory=Counter)  # receiving body -> matters

    def add(self, other: UnitCounts) -> None:
        self.matters += other.matters
        self.reports += other.reports
        self.cells.update(other.cells)
        self.needs_review += other.needs_review
        self.reviewed += other.reviewed
        self.disputed += other.disputed
        self.handover.update(other.handover)


@dataclass
class Report:
    scope: str
    units: list[UnitCounts]
    total: UnitCounts
    handover: dict[str, int]  # receiving body -> matters (as in the hand-over workbook)
    pending: int  # matters not ready to hand over (the workbook's separate sheet)
    disputed_heads: int  # as `review stats` counts them


def build_report(db: sqlite3.Connection, scope: RunScope = None, routing: Routing | None = None) -> Report:
    from ..intake.units import load_directory

    directory = load_directory(db)
    lists = handover_rows(db, scope, routing)
    counts = reports(db, scope)
    units: dict[str, UnitCounts] = {}
    if isinstance(scope, Scope) and scope.round is not None:
        for name in scope.round.units:
            units[name] = UnitCounts(name)
    placed = [(s, body) for body, rows in lists.bodies.items() for s, _ in rows] + [(s, "") for s, _ in lists.pending]
    for state, body in sorted(placed, key=lambda p: (p[0].prediction.run_id if p[0].prediction else 0,
                                                      p[0].prediction.row_number if p[0].prediction else 0)):
        entry = directory.units.get(state.unit_key)
        name = entry.name if entry else (state.unit or NO_UNIT)
        unit = units.setdefault(name, UnitCounts(name, in_directory=entry is not None))
        labels = state.effective()
        unit.matters += 1
        unit.reports += len(counts.get(state.group_key, [state.clue_id]))
        unit.cells[(str(labels["attention"]), str(labels["area"]))] += 1
        unit.needs_review += state.needs_review
        unit.reviewed += bool(state.rows)
        unit.disputed += state.disputed
        if body:
            unit.handover[body] += 1
    total = UnitCounts("合计")
    for unit in units.values():
        total.add(unit)
    label = scope.label if isinstance(scope, Scope) else ("all clues" if scope is None else f"run {scope}")
    return Report(label, list(units.values()), total, {b: len(rows) for b, rows in lists.bodies.items()},
                  len(lists.pending), len(disputes(db, scope)))


SUMMARY_COLUMNS: tuple[tuple[str, int], ...] = (
    ("被巡察单位", 28), ("线索(件)", 9), ("反映(次)", 9), *((SHORT_NAMES[a], 12) for a in ATTENTION),
    *((SHORT_NAMES[b], 10) for b in AREA), ("待复核", 8), ("已复核", 8), ("有争议", 8), ("是否在名录", 10),
)


def _summary_row(u: UnitCounts) -> list[Any]:
    return [u.unit, u.matters, u.reports, *(sum(u.cells[(a, b)] for b in AREA) for a in ATTENTION),
            *(sum(u.cells[(a, b)] for a in ATTENTION) for b in AREA), u.needs_review, u.reviewed, u.disputed,
            "是" if u.in_directory else "否"]


def _cross_columns() -> tuple[tuple[str, int], ...]:
    return (("被巡察单位", 28), *((f"{SHORT_NAMES[a]}·{SHORT_NAMES[b]}", 14) for a in ATTENTION for b in AREA))


def _cross_row(u: UnitCounts) -> list[Any]:
    return [u.unit, *(u.cells[(a, b)] for a in ATTENTION for b in AREA)]


def write_report(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the report as .xlsx or .html (by extension), owner-only and atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        _write_xlsx(report, path)
    elif suffix in (".html", ".htm"):
        with atomic_path(path) as tmp:
            Path(tmp).write_text(render_html(report), encoding="utf-8")
    else:
        raise InputError("the report must be .xlsx or .html", path=path)
    return path


def _write_xlsx(report: Report, path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    summary = book.active
    summary.title = "汇总"
    rows = [_summary_row(u) for u in report.units] + [_summary_row(report.total)]
    _table_sheet(summary, SUMMARY_COLUMNS, rows, wrap={"被巡察单位"})
    _table_sheet(book.create_sheet("关注类别×领域"), _cross_columns(),
                 [_cross_row(u) for u in report.units] + [_cross_row(report.total)], wrap={"被巡察单位"})
    bodies = list(report.handover)
    _table_sheet(book.create_sheet("移交去向"), (("被巡察单位", 28), *((b, 16) for b in bodies), ("暂不移交(待复核或有争议)", 22)),
                 [[u.unit, *(u.handover[b] for b in bodies), u.matters - sum(u.handover.values())]
                  for u in [*report.units, report.total]], wrap={"被巡察单位"})
    notes = book.create_sheet("说明")
    for r, (k, v) in enumerate([("范围", report.scope), ("线索(件)", "同一问题多次反映计为一件；反映(次)为原始记录条数"),
                                ("有争议的复核项", report.disputed_heads), ("暂不移交", report.pending)], 1):
        notes.cell(r, 1, k)
        notes.cell(r, 2, v)
    _save(book, path)


def _chart_svg(title: str, cells: Counter[tuple[str, str]]) -> str:
    """A grouped bar chart (areas × attention) as inline SVG, Chinese labels drawn as paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from ..model.report import cjk_font

    family = cjk_font()
    with plt.rc_context({"svg.fonttype": "path", "axes.unicode_minus": False,
                         **({"font.sans-serif": [family, "DejaVu Sans"]} if family else {})}):
        fig, ax = plt.subplots(figsize=(6.0, 2.8), dpi=100)
        try:
            width = 0.8 / len(ATTENTION)
            for i, a in enumerate(ATTENTION):
                xs = [j + (i - 1) * width for j in range(len(AREA))]
                ax.bar(xs, [cells[(a, b)] for b in AREA], width, label=SHORT_NAMES[a])
            ax.set_xticks(range(len(AREA)), [SHORT_NAMES[b] for b in AREA])
            ax.set_ylabel("线索(件)")
            ax.set_title(title)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8, frameon=False)
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
        finally:
            plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    summary = _html_table([c for c, _ in SUMMARY_COLUMNS], [_summary_row(u) for u in report.units] + [_summary_row(report.total)])
    bodies = list(report.handover)
    handover = _html_table(["被巡察单位", *bodies, "暂不移交"],
                           [[u.unit, *(u.handover[b] for b in bodies), u.matters - sum(u.handover.values())]
                            for u in [*report.units, report.total]])
    charts = "".join(f"<figure>{_chart_svg(u.unit, u.cells)}</figure>" for u in report.units if u.matters)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>巡察线索汇总</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#ddebf7}}td:first-child{{text-align:left}}
tbody tr:last-child{{font-weight:bold}}figure{{display:inline-block;margin:0.5em}}</style></head><body>
<h1>巡察线索汇总</h1><p>范围：{html.escape(report.scope)}。线索(件)：同一问题多次反映计为一件；反映(次)：原始记录条数。</p>
<h2>合计</h2><figure>{_chart_svg("合计", report.total.cells)}</figure>
<h2>各单位</h2>{summary}
<h2>移交去向</h2>{handover}<p>有争议的复核项：{report.disputed_heads}；暂不移交(待复核或有争议)：{report.pending} 件。</p>
<h2>各单位图表</h2>{charts}
</body></html>
"""
