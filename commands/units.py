"""`clue-triage units …`: the unit directory (被巡察单位名录) that triage and recusal resolve to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, out, print_json, store, sub_app, table

units_app = sub_app("The unit directory: names, aliases, kind and parent of inspected units.\n\n"
                    "Example: clue-triage units add 某市生态环境局东城分局 --alias 东城分局")


@units_app.command("add")
def units_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The unit's full name.")],
    alias: Annotated[list[str] | None, typer.Option("--alias", help="Another name clue files use (repeatable).")] = None,
    kind: Annotated[str, typer.Option("--kind", help="e.g. 分局, 事业单位, 乡镇.")] = "",
    parent: Annotated[str, typer.Option("--parent", help="The unit it belongs to.")] = "",
) -> None:
    """Add a unit to the directory (or aliases to one already there); stored clues are re-resolved.

    Example: clue-triage units add 某市生态环境局东城分局 --alias 东城分局 --kind 分局 --parent 某市生态环境局
    """
    from pipeline.intake.units import add_unit

    with store(ctx, create=True) as db:
        unit = add_unit(db, name, alias or [], kind, parent)
    out.print(f"unit {unit.name}; aliases: {'、'.join(unit.aliases) or 'none'}", markup=False)


@units_app.command("import")
def units_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help=".csv/.xlsx with columns name (单位名称), aliases (别名), kind, parent; or .txt, one name a line.")],
) -> None:
    """Add every unit of a file to the directory, all or nothing.

    Example: clue-triage units import data/samples/units.csv
    """
    from pipeline.intake.units import import_units

    with store(ctx, create=True) as db:
        result = import_units(db, path)
    out.print(f"{result.units} unit(s) read, {result.added} new; {result.clues_resolved} stored clue(s) re-resolved",
              markup=False)


@units_app.command("list")
def units_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List the unit directory.

    Example: clue-triage units list --json
    """
    from pipeline.intake.units import list_units

    with store(ctx) as db:
        units = list_units(db)
    if as_json:
        print_json([{"name": u.name, "aliases": list(u.aliases), "kind": u.kind, "parent": u.parent} for u in units])
        return
    out.print(table(f"{len(units)} unit(s)", ["name", "aliases", "kind", "parent"],
                    [[u.name, "、".join(u.aliases) or "-", u.kind or "-", u.parent or "-"] for u in units]), markup=False)
