"""`clue-triage reviewers …`: reviewers and their recusals (回避), on units of the directory."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import err, out, printable, sub_app
from .review import _grid, _store

reviewers_app = sub_app("Reviewers and their recusals (回避).\n\n"
                        "Example: clue-triage reviewers add zhang --name 张三 --recuse 某市生态环境局东城分局")


@reviewers_app.command("add")
def reviewers_add(
    ctx: typer.Context,
    reviewer_id: Annotated[str, typer.Argument(metavar="ID", help="Short id, e.g. zhang.")],
    name: Annotated[str, typer.Option("--name", help="Full name.")],
    recuse: Annotated[list[str] | None, typer.Option("--recuse", help="Inspected unit to recuse from (repeatable).")] = None,
) -> None:
    """Add a reviewer, or add recusals to an existing one; warns when a unit is not in the directory.

    Example: clue-triage reviewers add zhang --name 张三 --recuse 某市生态环境局东城分局
    """
    from pipeline.intake.units import unit_warnings
    from pipeline.review.review import add_reviewer

    with _store(ctx, create=True) as db:
        for warning in unit_warnings(db, recuse or []):
            err.print(printable(f"warning: {warning}"), markup=False)
        reviewer = add_reviewer(db, reviewer_id, name, recuse or [])
    out.print(printable(f"reviewer {reviewer.reviewer_id} ({reviewer.name}); recused from: "
                        f"{'、'.join(reviewer.recused) or 'none'}"), markup=False)


@reviewers_app.command("recuse")
def reviewers_recuse(
    ctx: typer.Context,
    reviewer_id: Annotated[str, typer.Argument(metavar="ID", help="Reviewer id.")],
    units: Annotated[list[str], typer.Argument(metavar="UNIT...", help="Inspected unit(s) to recuse from.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Recuse a reviewer from units (回避); warns when a unit is not in the directory.

    Example: clue-triage reviewers recuse zhang 某市生态环境局南湖县分局 --reason "配偶在该局工作"
    """
    from pipeline.intake.units import unit_warnings
    from pipeline.review.review import recuse

    with _store(ctx) as db:
        for warning in unit_warnings(db, units):
            err.print(printable(f"warning: {warning}"), markup=False)
        reviewer = recuse(db, reviewer_id, units, reason)
    out.print(printable(f"reviewer {reviewer.reviewer_id}; recused from: {'、'.join(reviewer.recused) or 'none'}"),
              markup=False)


@reviewers_app.command("unrecuse")
def reviewers_unrecuse(
    ctx: typer.Context,
    reviewer_id: Annotated[str, typer.Argument(metavar="ID", help="Reviewer id.")],
    unit: Annotated[str, typer.Argument(metavar="UNIT", help="The unit whose recusal ends.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it ends (required, recorded).")],
) -> None:
    """End a recusal with a recorded reason; the recusal and its end stay in the record.

    Example: clue-triage reviewers unrecuse zhang 某市生态环境局南湖县分局 --reason "录入错误，应为北山县分局"
    """
    from pipeline.review.review import end_recusal

    with _store(ctx) as db:
        reviewer = end_recusal(db, reviewer_id, unit, reason)
    out.print(printable(f"reviewer {reviewer.reviewer_id}; recused from: {'、'.join(reviewer.recused) or 'none'}"),
              markup=False)


@reviewers_app.command("list")
def reviewers_list(ctx: typer.Context) -> None:
    """List reviewers, their recusals and how many decisions they recorded.

    Example: clue-triage reviewers list
    """
    from pipeline.review.review import list_reviewers

    with _store(ctx) as db:
        rows = [[r.reviewer_id, r.name, r.created[:16].replace("T", " "), "、".join(r.recused) or "-", str(r.decisions)]
                for r in list_reviewers(db)]
    out.print(_grid("reviewers", ["id", "name", "added", "recused from", "override rows"], rows))
