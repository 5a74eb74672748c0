"""`clue-triage review …`, `handover` and `history`: the reviewer loop (reviewers
themselves: :mod:`commands.reviewers`).

The work is done in :mod:`pipeline.review.review`, :mod:`pipeline.review.assignments` and
:mod:`pipeline.review.workbooks`; this module reads
options, calls one library function and renders the result. The terminal queue of
`review next` is the one piece of real interaction: it reads single key presses from a
terminal, or one key per line when stdin is not a terminal (pipes, tests).
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from .common import (
    AllOption,
    JsonOption,
    RoundOption,
    RunOption,
    err,
    home_of,
    out,
    print_json,
    printable,
    scope_of,
    sub_app,
)

review_app = sub_app("Review the model's labels: assignment, terminal queue, Excel round trip, disputes, statistics.\n\n"
                     "Example: clue-triage review export --reviewer zhang -o zhang.xlsx")

ReviewerOption = Annotated[str, typer.Option("--reviewer", help="Reviewer id (see: clue-triage reviewers list).")]
UnknownUnitsOption = Annotated[bool, typer.Option(
    "--include-unknown-units",
    help="Also give a reviewer with recusals clues whose unit is unknown (no unit, or not in the directory).")]
HEAD_NAMES = {"attention": "关注类别 attention", "area": "领域 area"}


@contextmanager
def _store(ctx: typer.Context, create: bool = False, check: bool = False) -> Iterator[sqlite3.Connection]:
    """The home's store; only `reviewers add` creates one (elsewhere a missing store is an
    error saying so, not an empty result). With ``check``, records that point at nothing
    (the store was edited outside clue-triage) are left out of the result and said on stderr."""
    from pipeline.store.store import connect

    db = connect(home_of(ctx).db_path, create=create)
    try:
        if check:
            from pipeline.store.audit import find_orphans

            orphans = find_orphans(db)
            if orphans:
                err.print(f"warning: {len(orphans)} record(s) refer to clues, reviewers or runs missing from the "
                          "store and are left out (edited outside clue-triage?); see: clue-triage verify",
                          markup=False)
        yield db
    finally:
        db.close()


def _grid(title: str, header: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=Text(printable(title)), title_justify="left")
    for name in header:
        t.add_column(Text(printable(name)), overflow="fold")
    for row in rows:
        t.add_row(*(Text(printable(cell)) for cell in row))
    return t


def _name(code: str | None) -> str:
    from pipeline.labels import SHORT_NAMES

    return SHORT_NAMES.get(code or "", code or "-")


# -- the terminal queue ---------------------------------------------------------------


class _Keys:
    """Single key presses on a terminal; one key (or reason) per line otherwise.

    On a terminal, keys typed before a prompt appears are discarded (the terminal switches
    to raw mode with a flush) and a read of several characters at once (an arrow key's
    escape sequence, a paste) is no key: nothing is decided about a clue not yet on screen.
    """

    def __init__(self) -> None:
        self.tty = sys.stdin.isatty()

    def key(self, prompt: str) -> str:
        err.print(prompt, end=" ", markup=False, style="bold")
        if not self.tty:
            line = sys.stdin.readline()
            err.print(line.strip(), markup=False)
            return line.strip()[:1].lower() if line else "q"
        try:
            typed = typer.getchar()
        except (KeyboardInterrupt, EOFError):
            typed = "q"
        err.print(typed if typed.isprintable() else "", markup=False)
        return typed.lower() if len(typed) == 1 else ""

    def line(self, prompt: str) -> str:
        err.print(prompt, end=" ", markup=False, style="bold")
        try:
            text = sys.stdin.readline()
        except KeyboardInterrupt:
            return ""
        if not self.tty:
            err.print(text.strip(), markup=False)
        return text.strip()


def _show(state: Any, position: str, pending: dict[str, str], reason: str, handover: str) -> None:
    from pipeline.labels import NAMES

    p = state.prediction
    err.print()
    flag = "  ·  needs review" if p.needs_review else ""
    err.rule(Text(printable(f"{position}  {state.clue_id}  ·  {state.unit or '-'}  ·  margin {p.margin:.2f}{flag}")),
             style="cyan")
    err.print(Text(printable(state.text)), soft_wrap=False)  # a long text folded to the screen
    for head, title in HEAD_NAMES.items():
        line = f"  {title}: {NAMES[p.labels[head]]} ({p.confidence[head]:.2f})"
        if pending[head] != p.labels[head]:
            line += f"  →  {NAMES[pending[head]]}"
        err.print(line, markup=False)
    err.print(printable(f"  关键词 key terms: {p.key_terms or '-'}"), markup=False)
    err.print(printable(f"  移交 hand-over: {handover}"), markup=False)
    if reason:
        err.print(printable(f"  理由 reason: {reason}"), markup=False)


PROMPT = "[a] accept/record  [1] attention  [2] area  [r] reason  [s] skip  [u] undo (back one)  [q] quit >"


def _choose(keys: _Keys, head: str) -> str | None:
    from pipeline.labels import HEADS, NAMES

    codes = HEADS[head]
    menu = "  ".join(f"[{i}] {NAMES[c]}" for i, c in enumerate(codes, 1))
    key = keys.key(f"{HEAD_NAMES[head]}: {menu} >")
    return codes[int(key) - 1] if key.isdigit() and 1 <= int(key) <= len(codes) else None


def _session(db: sqlite3.Connection, reviewer: str, run: Any, keys: _Keys, tally: Counter[str],
             include_unknown_units: bool = False) -> None:
    """Walk the reviewer's queue; every decision is committed before the next clue shows.
    ``u`` goes back to the clue decided last: deciding it again records a new decision that
    supersedes the earlier one (both stay in the trail)."""
    from pipeline.intake.routing import load_routing
    from pipeline.review.assignments import review_queue
    from pipeline.review.review import clue_state, get_reviewer, record_decision

    routing = load_routing()
    reviewer = get_reviewer(db, reviewer).reviewer_id  # as stored: Zhang and zhang are one reviewer
    queue = review_queue(db, reviewer, run, include_unknown_units=include_unknown_units)
    decided: list[int] = []  # positions in the queue, in the order they were decided
    number, redo = 0, False
    while number < len(queue):
        queued = queue[number]
        assert queued.prediction is not None
        state = clue_state(db, queued.clue_key, queued.prediction.run_id)
        if state.decided_by(reviewer) and not redo:  # decided meanwhile, e.g. in another terminal
            number += 1
            continue
        redo = False
        labels = queued.prediction.labels
        if state.decided_by(reviewer):  # undone: start from the labels in force
            labels = {h: v or labels[h] for h, v in state.effective().items()}
        pending, reason = dict(labels), ""
        position = f"{number + 1}/{len(queue)}"
        _show(state, position, pending, reason, routing.handover(pending["attention"], pending["area"]))
        while True:
            key = keys.key(PROMPT)
            if key == "a":
                new = record_decision(db, state.clue_key, reviewer, pending, reason=reason, channel="terminal",
                                      run=queued.prediction.run_id)
                tally["decided"] += 1
                tally["changed"] += pending != queued.prediction.labels
                err.print("  recorded" + ("; now DISPUTED (reviewers disagree)" if new.disputed else ""), style="green")
                decided.append(number)
                number += 1
                break
            if key in ("1", "2"):
                head = "attention" if key == "1" else "area"
                pending[head] = _choose(keys, head) or pending[head]  # another key keeps the label
                _show(state, position, pending, reason, routing.handover(pending["attention"], pending["area"]))
            elif key == "r":
                reason = keys.line("理由 reason:")
            elif key == "s":
                tally["skipped"] += 1
                number += 1
                break
            elif key == "u":
                if not decided:
                    err.print("  nothing to undo yet", markup=False)
                    continue
                number, redo = decided.pop(), True
                tally["undone"] += 1
                err.print("  back to the last decision: decide it again (the new decision supersedes it)", markup=False)
                break
            elif key == "q":
                tally["left"] = len(queue) - number
                return
            else:
                err.print("  keys: a, 1, 2, r, s, u, q", markup=False)
    err.print("the queue is empty", style="green")


@review_app.command("next")
def review_next(ctx: typer.Context, reviewer: ReviewerOption, round_name: RoundOption = None, run: RunOption = None,
                every: AllOption = False, include_unknown_units: UnknownUnitsOption = False) -> None:
    """Review clues one by one, most uncertain first; every decision is stored at once.

    Keys: a accept (or record the changed labels), 1 change attention, 2 change area,
    r add a reason, s skip, u undo (decide the last clue again), q quit. A repeat group
    shows once; the decision is recorded for each of its clues.

    Example: clue-triage review next --reviewer zhang
    """
    tally = Counter[str]()
    with _store(ctx) as db:
        try:
            _session(db, reviewer, scope_of(db, round_name, run, every), _Keys(), tally, include_unknown_units)
        except KeyboardInterrupt:
            err.print("\ninterrupted; every decision recorded so far is stored", markup=False)
    out.print(f"{tally['decided']} decision(s) recorded ({tally['changed']} changed a label), "
              f"{tally['skipped']} skipped, {tally['undone']} undone, {tally['left']} left in the queue")


# -- Excel round trip -----------------------------------------------------------------


@review_app.command("export")
def review_export(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="Review sheet to write (.xlsx).")],
    round_name: RoundOption = None,
    run: RunOption = None,
    every: AllOption = False,
    suspect: Annotated[bool, typer.Option("--suspect", help="Instead: the training labels `retrain --audit` finds suspicious, for a second look.")] = False,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="The sheet is this reviewer's: clues of units they recused from are left out.")] = None,
    include_unknown_units: UnknownUnitsOption = False,
    needs_review: Annotated[bool, typer.Option("--needs-review", help="Only clues the model flagged and nobody decided.")] = False,
    unit: Annotated[str | None, typer.Option("--unit", help="Only clues of this unit (resolved in the directory).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many rows.")] = None,
    headers: Annotated[str, typer.Option("--headers", help="zh: Chinese column headers; en: the column codes.")] = "zh",
) -> None:
    """Write a review sheet: one row per clue (per repeat group) with drop-down columns to fill in.

    With --reviewer the sheet is that reviewer's share (see review assign).

    Example: clue-triage review export --reviewer zhang --needs-review -o zhang.xlsx
    """
    from pipeline.review.workbooks import export_review_sheet, export_suspect_sheet

    if suspect:
        from pipeline.model.retrain import audit_home

        count = export_suspect_sheet(audit_home(home_of(ctx)), output, headers)
        out.print(f"{count} suspicious label(s) written to {output} (owner-only)", markup=False)
        return
    with _store(ctx, check=True) as db:
        count = export_review_sheet(db, output, scope_of(db, round_name, run, every), reviewer,
                                    include_unknown_units=include_unknown_units, needs_review=needs_review, unit=unit,
                                    limit=limit, headers=headers)
    out.print(f"{count} clue(s) written to {output} (owner-only)", markup=False)


@review_app.command("assign")
def review_assign(
    ctx: typer.Context,
    reviewers: Annotated[str, typer.Option("--reviewers", help="Reviewer ids, comma-separated.")],
    needs_review: Annotated[bool, typer.Option("--needs-review", help="Only clues the model flagged.")] = False,
    double: Annotated[bool, typer.Option("--double", help="Two reviewers per clue (for agreement).")] = False,
    round_name: RoundOption = None,
    run: RunOption = None,
    every: AllOption = False,
) -> None:
    """Split the clues (one per repeat group) among reviewers, respecting recusal; run again to add new clues.

    Example: clue-triage review assign --reviewers zhang,li --needs-review --double
    """
    from pipeline.review.assignments import assign

    with _store(ctx, check=True) as db:
        result = assign(db, reviewers.split(","), scope_of(db, round_name, run, every), needs_review=needs_review,
                        double=double)
    out.print(_grid(f"{result.groups} clue group(s); {result.already} already assigned", ["reviewer", "newly assigned"],
                    [[r, str(n)] for r, n in sorted(result.assigned.items())]))
    if result.nobody:
        err.print(f"warning: no given reviewer may see {len(result.nobody)} clue(s) (recusal or unknown unit): "
                  + "、".join(result.nobody[:10]), markup=False)
    if result.single:
        err.print(f"warning: only one given reviewer may see {len(result.single)} clue(s), reviewed once: "
                  + "、".join(result.single[:10]), markup=False)


@review_app.command("import")
def review_import(
    ctx: typer.Context,
    sheet: Annotated[Path, typer.Argument(help="A filled-in review sheet (.xlsx).")],
    reviewer: ReviewerOption,
) -> None:
    """Record a reviewer's decisions from a review sheet: all rows or none.

    Example: clue-triage review import review.xlsx --reviewer zhang
    """
    from pipeline.review.workbooks import import_review_sheet

    with _store(ctx) as db:
        result = import_review_sheet(db, sheet, reviewer)
    out.print(_grid(f"overrides recorded from {sheet.name} ({result.rows} row(s) with decisions)", ["head", "recorded"],
                    [[head, str(result.recorded.get(head, 0))] for head in HEAD_NAMES]))
    if result.members:
        out.print(f"{result.members} override row(s) for other reports of the same matters (repeat groups)")
    if result.unchanged:
        out.print(f"{result.unchanged} decision(s) were already on record and were not added again")


# -- disputes -------------------------------------------------------------------------


@review_app.command("disputes")
def review_disputes(ctx: typer.Context, round_name: RoundOption = None, run: RunOption = None,
                    every: AllOption = False, as_json: JsonOption = False) -> None:
    """List clues where reviewers disagree and nobody has adjudicated.

    Example: clue-triage review disputes
    """
    from pipeline.review.review import disputes

    with _store(ctx, check=True) as db:
        found = disputes(db, scope_of(db, round_name, run, every))
    if as_json:
        print_json([{"clue": d.state.clue_id, "unit": d.state.unit, "head": d.head, "model": d.state.heads[d.head].predicted,
                     "reviewers": d.decisions, "clue_key": d.state.clue_key} for d in found])
        return
    rows = [[d.state.clue_id, d.state.unit, d.head, _name(d.state.heads[d.head].predicted),
             ", ".join(f"{r}={_name(label)}" for r, label in sorted(d.decisions.items())), d.state.clue_key]
            for d in found]
    out.print(_grid(f"{len(rows)} disputed", ["clue", "unit", "head", "model", "reviewers", "clue key"], rows))


@review_app.command("resolve")
def review_resolve(
    ctx: typer.Context,
    clue: Annotated[str, typer.Argument(help="Clue id or clue key.")],
    head: Annotated[str, typer.Option("--head", help="attention or area.")],
    label: Annotated[str, typer.Option("--label", help="Code or Chinese name.")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="The adjudicator's reviewer id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required).")],
) -> None:
    """Adjudicate a disputed clue: the adjudication becomes the effective label.

    Example: clue-triage review resolve XC-2026-002 --head area --label discipline --reviewer wang --reason "收受购物卡"
    """
    from pipeline.review.review import resolve

    with _store(ctx) as db:
        state = resolve(db, clue, head, label, reviewer, reason)
    out.print(f"{clue} {head}: adjudicated as {_name(state.effective)} ({state.effective})", markup=False)


@review_app.command("stats")
def review_stats(ctx: typer.Context, round_name: RoundOption = None, run: RunOption = None,
                 every: AllOption = False, as_json: JsonOption = False) -> None:
    """Overrides per head and label pair, override rate per model version, reviewer agreement.

    Example: clue-triage review stats
    """
    from pipeline.review.review import review_stats as compute

    with _store(ctx, check=True) as db:
        s = compute(db, scope_of(db, round_name, run, every))
    if as_json:
        from dataclasses import asdict

        print_json(asdict(s))
        return
    out.print(_grid("labels changed by reviewers (latest decision per reviewer)", ["head", "model said", "reviewer set", "n"],
                    [[h, _name(p), _name(n), str(c)] for h, p, n, c in s.changes]))
    out.print(_grid("override rate per model version", ["model", "head", "decisions", "changed", "rate"],
                    [[v, h, str(n), str(c), f"{c / n:.1%}"] for v, h, n, c in s.by_model]))
    out.print(_grid("reviewer agreement", ["head", "reviewers", "clues", "agreement", "Cohen's kappa"],
                    [[a.head, " / ".join(a.reviewers), str(a.n), f"{a.agreement:.2f}",
                      "-" if a.kappa is None else f"{a.kappa:.2f}"] for a in s.agreement]))
    out.print(f"{s.rows} override row(s); {s.disputed} head(s) disputed")


# -- hand-over and history (top-level commands) ---------------------------------------


def handover(
    ctx: typer.Context,
    output: Annotated[Path, typer.Option("-o", "--output", help="Workbook to write (.xlsx).")],
    round_name: RoundOption = None,
    run: RunOption = None,
    every: AllOption = False,
) -> None:
    """Write the hand-over lists (分类移交): one sheet per receiving body, reviewed labels where
    reviewed; disputed clues and clues still needing review go to a separate sheet.

    Example: clue-triage handover --run 1 -o 移交清单.xlsx
    """
    from pipeline.review.workbooks import write_handover

    with _store(ctx, check=True) as db:
        result = write_handover(db, output, scope_of(db, round_name, run, every))
    out.print(_grid(f"hand-over written to {output} (owner-only)", ["receiving body", "clues"],
                    [[body, str(n)] for body, n in result.sheets.items()] + [["(待复核或有争议 / not ready)", str(result.pending)]]))


def history(ctx: typer.Context, clue: Annotated[str, typer.Argument(help="Clue id or clue key.")],
            as_json: JsonOption = False) -> None:
    """Show a clue's whole trail in time order: predictions, every override, adjudications.

    Example: clue-triage history XC-2026-001
    """
    from pipeline.review.review import history as trail

    with _store(ctx) as db:
        state, entries = trail(db, clue)
    if as_json:
        from dataclasses import asdict

        print_json({"clue": state.clue_id, "unit": state.unit, "clue_key": state.clue_key, "text": state.text,
                    "effective": {h: {"label": s.effective, "status": s.status} for h, s in state.heads.items()},
                    "trail": [asdict(e) for e in entries]})
        return
    out.print(printable(f"{state.clue_id} · {state.unit or '-'} · {state.clue_key}\n{state.text}"), markup=False)
    others = sorted({e.clue_key for e in entries} - {state.clue_key})
    if others:
        out.print(f"the id also names {len(others)} other report(s) of this matter (repeat group): {', '.join(others)}; "
                  "their trail is included", markup=False)
    out.print(_grid("trail", ["time", "event", "by", "head", "label", "conf.", "was", "reason", "channel"],
                    [[e.time.replace("T", " ")[:19], e.kind, e.actor, e.head, _name(e.label),
                      "" if e.confidence is None else f"{e.confidence:.2f}", _name(e.old_label) if e.old_label else "",
                      e.reason, e.channel] for e in entries]))
    out.print("effective: " + "; ".join(f"{h} = {_name(s.effective)} ({s.status})" for h, s in state.heads.items()),
              markup=False)


def verify(ctx: typer.Context) -> None:
    """Check the store's audit trail: recompute the override hash chain and look for orphans.

    Prints the first broken link (which override, and how) and every orphan; exit 1 when
    anything is wrong, 0 when the trail is whole.

    Example: clue-triage verify
    """
    from pipeline.store.audit import verify_store

    with _store(ctx) as db:
        report = verify_store(db)
    if report.broken:
        out.print(f"hash chain BROKEN at {report.broken}", markup=False)
    for orphan in report.orphans:
        out.print(f"orphan: {orphan}", markup=False)
    if report.ok:
        out.print(f"store OK: {report.overrides} override row(s), hash chain whole, no orphans", markup=False)
        return
    out.print(f"{report.overrides} override row(s) checked; {len(report.orphans)} orphan(s)", markup=False)
    raise typer.Exit(1)
