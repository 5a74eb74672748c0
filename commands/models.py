"""`clue-triage models …`: the model registry."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOption, home_of, out, print_json, sub_app, table

models_app = sub_app("The model registry: list, show, promote, roll back.\n\nExample: clue-triage models list --json")


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@models_app.command("list")
def models_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List model versions with status, data sizes and dev scores.

    Example: clue-triage models list
    """
    from pipeline.model.registry import Registry

    rows = Registry(home_of(ctx).models).summaries()
    if as_json:
        print_json(rows)
        return
    out.print(table("models (scores on dev, model fitted on train)",
                    ["version", "status", "created", "parent", "fit on", "reviewed", "overrides",
                     "attention F1", "area F1", "further recall"],
                     [[r["version"], r["status"], r["created"][:16].replace("T", " "), r["parent"] or "-",
                       str(r["final_fit"]), str(r["reviewed"]),
                       str(r["overrides_used"]), r["attention_macro_f1"], r["area_macro_f1"], r["further_recall"]] for r in rows]))


@models_app.command("current")
def models_current(ctx: typer.Context) -> None:
    """Print the champion's version (exit 2 when there is none).

    Example: clue-triage models current
    """
    from pipeline.model.registry import Registry

    registry = Registry(home_of(ctx).models)
    champion = registry.champion()
    if champion is None:
        registry.load()  # raises the "no model; train one first" error
    registry.verify(str(champion))
    out.print(champion)


@models_app.command("show")
def models_show(ctx: typer.Context, version: Annotated[str, typer.Argument(help="e.g. v3")],
                as_json: JsonOption = False) -> None:
    """Show a version's manifest and model card (--json: the manifest).

    Example: clue-triage models show v1
    """
    from pipeline.model.registry import Registry

    if as_json:
        print_json(Registry(home_of(ctx).models).manifest(version))
        return
    out.print(Registry(home_of(ctx).models).model_card(version), markup=False)


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="e.g. v3")],
    by: Annotated[str, typer.Option(help="Who decided (default: your login name).")] = "",
    reason: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Make a version the champion (recorded in the registry history).

    Example: clue-triage models promote v3 --by zhang --reason "reviewed by the group"
    """
    from pipeline.model.registry import Registry

    registry = Registry(home_of(ctx).models)
    gate = registry.manifest(version).get("gate", {})
    registry.promote(version, by=by or _login(), reason=reason or "promoted by hand", forced=gate.get("passed") is False)
    out.print(f"{version} is now the champion")


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Who decided (default: your login name).")] = "",
    reason: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Bring back the previous champion.

    Example: clue-triage models rollback --by zhang --reason "v4 over-flags"
    """
    from pipeline.model.registry import Registry

    version = Registry(home_of(ctx).models).rollback(by=by or _login(), reason=reason)
    out.print(f"{version} is the champion again")
