"""`clue-triage report`: the round's summary per unit (巡察线索汇总), .xlsx or .html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import AllOption, RoundOption, RunOption, out, scope_of, store, table


def report(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="巡察线索汇总.xlsx, or .html (self-contained, with charts).")],
    round_name: RoundOption = None,
    run: RunOption = None,
    every: AllOption = False,
) -> None:
    """Write the report per unit: matters by attention × area, review state, hand-over; the round's totals.

    Example: clue-triage report --round 2026年第一轮 -o 巡察线索汇总.xlsx
    """
    from pipeline.review.unit_report import build_report, write_report

    with store(ctx) as db:
        result = build_report(db, scope_of(db, round_name, run, every))
    write_report(result, output)
    t = result.total
    out.print(table(f"{result.scope}: {t.matters} matter(s) from {t.reports} report(s)",
                    ["unit", "matters", "reports", "needs review", "reviewed", "disputed"],
                    [[u.unit, str(u.matters), str(u.reports), str(u.needs_review), str(u.reviewed), str(u.disputed)]
                     for u in [*result.units, t]]), markup=False)
    out.print(f"written: {output} (owner-only)", markup=False)
