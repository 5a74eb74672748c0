"""`clue-triage rounds …`: rounds of inspection (第X轮巡察) and the units each covers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, out, print_json, store, sub_app, table

rounds_app = sub_app("Rounds of inspection: start one for its units, triage its files into it, close it.\n\n"
                     "Example: clue-triage rounds start 2026年第一轮 --units units.csv")


@rounds_app.command("start")
def rounds_start(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The round's name, e.g. 2026年第一轮.")],
    unit: Annotated[list[str] | None, typer.Option("--unit", help="A unit the round covers, as in the directory (repeatable).")] = None,
    units: Annotated[Path | None, typer.Option("--units", help="A file of units (as for `units import`); added to the directory.")] = None,
) -> None:
    """Open a round; triage, review, hand-over and the report then default to it.

    Example: clue-triage rounds start 2026年第一轮 --unit 某市生态环境局东城分局 --unit 某市生态环境局南湖县分局
    """
    from pipeline.intake.rounds import start_round

    with store(ctx, create=True) as db:
        started = start_round(db, name, unit or [], units)
    out.print(f"round {started.name} is open; units: {'、'.join(started.units)}", markup=False)


@rounds_app.command("list")
def rounds_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List rounds with their units, status and triage runs.

    Example: clue-triage rounds list --json
    """
    from pipeline.intake.rounds import list_rounds

    with store(ctx) as db:
        rounds = list_rounds(db)
    if as_json:
        print_json([{"name": r.name, "status": r.status, "started": r.started, "closed": r.closed,
                     "units": list(r.units), "runs": list(r.runs)} for r in rounds])
        return
    out.print(table(f"{len(rounds)} round(s)", ["round", "status", "started", "units", "runs"],
                    [[r.name, r.status, r.started[:16].replace("T", " "), "、".join(r.units),
                      ", ".join(map(str, r.runs)) or "-"] for r in rounds]), markup=False)


@rounds_app.command("close")
def rounds_close(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="The round to close (default: the open one).")] = None,
) -> None:
    """Close the open round; its clues stay reachable with --round NAME.

    Example: clue-triage rounds close
    """
    from pipeline.intake.rounds import close_round

    with store(ctx) as db:
        closed = close_round(db, name)
    out.print(f"round {closed.name} closed ({len(closed.runs)} triage run(s))", markup=False)
