"""Shared pieces of the command line: consoles, the error boundary, the home, tables."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from pipeline.errors import ClueTriageError
from pipeline.paths import Home

# Piped output is not squeezed to 80 columns: tables stay readable in files and logs.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


class ErrorBoundary(TyperGroup):
    """Turn library errors into one line on stderr and an exit code; no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClueTriageError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
            for problem in getattr(exc, "problems", []):
                err.print(f"  - {problem}", markup=False)
            raise typer.Exit(exc.exit_code) from None


def sub_app(help_text: str, completion: bool = False) -> typer.Typer:
    """A typer app (root or command group) behind the error boundary; ``completion`` adds
    --install-completion / --show-completion (the root app)."""
    return typer.Typer(cls=ErrorBoundary, help=help_text, no_args_is_help=True, add_completion=completion,
                       pretty_exceptions_enable=False)


def print_json(value: Any) -> None:
    """JSON on stdout for --json: UTF-8, Chinese as it is, nothing else on stdout."""
    import json

    out.print_json(json.dumps(value, ensure_ascii=False, default=str))


def home_of(ctx: typer.Context) -> Home:
    """The home chosen by the root command's --home / $CLUE_TRIAGE_HOME, created owner-only."""
    home: Home = ctx.find_root().obj.home
    return home.ensure()


def table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """A rich table: first column left-aligned, the rest right-aligned."""
    t = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        t.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout instead of a table.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary; only errors.")]


@contextmanager
def store(ctx: typer.Context) -> Iterator[sqlite3.Connection]:
    """The home's store, open for the length of one command."""
    from pipeline.store import connect

    db = connect(home_of(ctx).db_path)
    try:
        yield db
    finally:
        db.close()


RoundOption = Annotated[str | None, typer.Option("--round", help="One round (default: the open round, else the latest run).")]
RunOption = Annotated[int | None, typer.Option("--run", help="One triage run.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every clue of every run, each with its latest prediction.")]


def scope_of(db: sqlite3.Connection, round_name: str | None, run: int | None, every: bool) -> Any:
    """The :class:`pipeline.rounds.Scope` of --round / --run / --all, said on stderr."""
    from pipeline.rounds import resolve_scope

    scope = resolve_scope(db, round_name, run, every)
    err.print(f"scope: {scope.label}", markup=False)
    return scope
