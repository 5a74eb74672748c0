"""Shared pieces of the command line: consoles, the error boundary, the home, tables."""

from __future__ import annotations

import errno
import re
import signal
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


#: C0/C1 controls (ESC starts terminal escape sequences) and bidi overrides: never sent to a terminal
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Text as it may reach a terminal: control characters (an ESC sequence in a clue could
    move the cursor, recolour or retitle the terminal) and bidi overrides removed."""
    return _UNPRINTABLE.sub("", str(text))


def _os_error_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"{where}the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}not allowed to write or read here ({exc.strerror})"
    return f"{where}{exc.strerror or exc}"


class ErrorBoundary(TyperGroup):
    """Turn library errors into one line on stderr and an exit code; no traceback.

    Library errors carry their own message and exit code; an OS error that reached this far
    (a bad path, a full disk, a read-only folder) or an SQLite error is still one line, exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClueTriageError as exc:
            _fail(str(exc), exc.exit_code, getattr(exc, "problems", []))
        except OSError as exc:
            _fail(_os_error_message(exc), 2)
        except sqlite3.Error as exc:
            from pipeline.store.store import store_error

            _fail(str(store_error(exc)), 2)
        except RecursionError:
            _fail("the input is nested too deeply to read", 2)


def _fail(message: str, code: int, problems: list[str] | None = None) -> None:
    err.print(f"[bold red]error:[/] {escape(printable(message))}", markup=True)
    for problem in problems or []:
        err.print(f"  - {printable(problem)}", markup=False)
    raise typer.Exit(code) from None


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM is handled like Ctrl-C: the run stops cleanly (no output, run marked interrupted)."""
    raise KeyboardInterrupt


def handle_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread (see :func:`_terminate`)."""
    signal.signal(signal.SIGTERM, _terminate)


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
def store(ctx: typer.Context, create: bool = False) -> Iterator[sqlite3.Connection]:
    """The home's store, open for the length of one command. Only commands that set a home
    up (`units add/import`, `rounds start`; `reviewers add`) create one; elsewhere a missing
    store is an error saying so, never an empty result."""
    from pipeline.store.store import connect

    db = connect(home_of(ctx).db_path, create=create)
    try:
        yield db
    finally:
        db.close()


RoundOption = Annotated[str | None, typer.Option("--round", help="One round (default: the open round, else the latest run).")]
RunOption = Annotated[int | None, typer.Option("--run", help="One triage run.")]
AllOption = Annotated[bool, typer.Option("--all", help="Every clue of every run, each with its latest prediction.")]


def scope_of(db: sqlite3.Connection, round_name: str | None, run: int | None, every: bool) -> Any:
    """The :class:`pipeline.intake.rounds.Scope` of --round / --run / --all, said on stderr."""
    from pipeline.intake.rounds import resolve_scope

    scope = resolve_scope(db, round_name, run, every)
    err.print(f"scope: {scope.label}", markup=False)
    return scope


def register_table(manifest: dict[str, Any]) -> Table:
    """A model's out-of-register scores per register, and the review rule they chose."""
    th = manifest.get("thresholds", {})
    rows = []
    for name, r in manifest.get("registers", {}).items():
        rows.append([name, str(r["n"]), f"{r['attention_macro_f1']:.3f}", f"{r['area_macro_f1']:.3f}",
                     f"{r['flagged']:.0%}", f"{r['attention_unflagged_accuracy']:.3f}",
                     f"{r['area_unflagged_accuracy']:.3f}", f"{r['further_recall']:.3f}"])
    overall = manifest.get("metrics", {}).get("out_of_register", {})
    if overall:
        rows.append(["all", str(manifest.get("data", {}).get("sizes", {}).get("examples", "")),
                     f"{overall.get('attention_macro_f1', 0):.3f}", f"{overall.get('area_macro_f1', 0):.3f}",
                     f"{overall.get('flagged', 0):.0%}", f"{th.get('unflagged_accuracy', {}).get('attention', 0):.3f}",
                     f"{th.get('unflagged_accuracy', {}).get('area', 0):.3f}", f"{overall.get('further_recall', 0):.3f}"])
    title = ("out of register: each register scored by a model trained on the others; needs review below "
             + ", ".join(f"{h} {t:.2f}" for h, t in th.get("needs_review", {}).items())
             + f", familiarity below {th.get('familiarity_floor', 0):.2f}")
    return table(title, ["register", "n", "attention F1", "area F1", "flagged", "unflagged attention acc",
                         "unflagged area acc", "further recall"], rows)
