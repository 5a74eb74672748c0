"""clue-triage command line: talks to people; the work is done in ``pipeline``.

Results go to stdout, messages and progress to stderr. Every library error is caught in
one place (:class:`commands.common.ErrorBoundary`), printed as one line, and turned into an exit code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from commands.common import (
    QuietOption,
    err,
    handle_sigterm,
    home_of,
    out,
    printable,
    register_table,
    sub_app,
    table,
)
from commands.models import models_app
from commands.report import report
from commands.retrain import retrain
from commands.review import handover, history, review_app, verify
from commands.reviewers import reviewers_app
from commands.rounds import rounds_app
from commands.serve import serve, token
from commands.units import units_app
from pipeline.paths import CORPUS_PATH, Home, resolve_home

if TYPE_CHECKING:
    from pipeline.intake.triage import TriageStart, TriageSummary

app = sub_app("Triage inspection problem clues (问题线索): classify, review, retrain.\n\n"
              "Example: clue-triage triage 线索登记表.xlsx -o 线索登记表.triaged.xlsx", completion=True)
app.add_typer(models_app, name="models")
app.command("retrain")(retrain)
app.add_typer(reviewers_app, name="reviewers")
app.add_typer(units_app, name="units")
app.add_typer(rounds_app, name="rounds")
app.add_typer(review_app, name="review")
app.command("handover")(handover)
app.command("history")(history)
app.command("report")(report)
app.command("verify")(verify)
app.command("serve")(serve)
reviewers_app.command("token")(token)


@dataclass
class State:
    home: Home


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            out.print(f"clue-triage {package_version('clue-triage')}")
        except PackageNotFoundError:
            out.print("clue-triage (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option("--home", envvar="CLUE_TRIAGE_HOME",
                                              help="State folder (database, models, reports). Default: the project folder.")] = None,
    segmenter: Annotated[str | None, typer.Option("--segmenter", help="rjieba (default) or jieba.")] = None,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """clue-triage: batch triage, reviewer overrides, champion/challenger retraining."""
    os.umask(0o077)  # everything we create is owner-only
    handle_sigterm()
    if segmenter:
        from pipeline.text.segment import set_segmenter

        set_segmenter(segmenter)
    ctx.obj = State(resolve_home(home))


# -- train / evaluate -----------------------------------------------------------------


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Labeled corpus (JSONL).")] = CORPUS_PATH,
    seed: Annotated[int, typer.Option(help="Random seed; same data and seed give identical predictions.")] = 0,
    promote: Annotated[bool | None, typer.Option("--promote/--no-promote",
                                                 help="Make it the champion (default: only if there is none).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model on the corpus train+dev splits and register it as a new version.

    Calibration and the needs-review thresholds are chosen on out-of-register predictions:
    each register (letters, talk notes, feedback lines, case notices …) is scored by a model
    fitted on the others. The printed table is those scores, per register.

    Example: clue-triage train --seed 0
    """
    from pipeline.model.train import train_and_register

    home = home_of(ctx)
    if not quiet:
        err.print("training (segmenting; scoring each register with a model that never saw it; calibrating; final fit)…")
    result = train_and_register(home, data, seed=seed, promote=promote)
    out.print(f"model {result.manifest['version']} written to {home.models / result.manifest['version']}"
              f"{' (champion)' if result.promoted else ' (candidate)'}")
    out.print(register_table(result.manifest))


@app.command()
def evaluate(
    ctx: typer.Context,
    split: Annotated[str, typer.Option(help="Corpus split to score: test or dev.")] = "test",
    data: Annotated[Path | None, typer.Option(help="Another labeled JSONL file instead of a corpus split.")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (default: the champion).")] = None,
    reviewed: Annotated[bool, typer.Option("--reviewed", help="Score on reviewed clues the model was not trained on.")] = False,
    since: Annotated[str | None, typer.Option(help="With --reviewed: clues last decided on or after this date (YYYY-MM-DD, UTC).")] = None,
    run: Annotated[int | None, typer.Option("--run", help="With --reviewed: clues of this triage run.")] = None,
) -> None:
    """Score a model against the majority-class and keyword-rule baselines; write a report.

    --reviewed scores it on the office's reviewed clues that it was not trained on (each
    head on the clues where a person decided it), with the same report and charts.

    Example: clue-triage evaluate --reviewed --since 2026-03-01
    """
    from pipeline.errors import InputError
    from pipeline.model.report import comparison_rows, evaluate_and_report, evaluate_reviewed

    home = home_of(ctx)
    if (since is not None or run is not None) and not reviewed:
        raise InputError("--since and --run choose reviewed clues: add --reviewed")
    if reviewed:
        outcome = evaluate_reviewed(home, version=model, since=since, run=run)
        err.print(outcome.note, markup=False)
    else:
        outcome = evaluate_and_report(home, split=split, data=data, version=model)
    ev = outcome.evaluation
    n = " / ".join(f"{h} {m.n:,}" for h, m in ev.heads.items()) if reviewed else f"{ev.heads['attention'].n}"
    out.print(table(f"{ev.name} on {ev.data} (n = {n})",
                     ["predictor", "attention macro-F1", "area macro-F1", "further recall"],
                     comparison_rows(ev, outcome.baselines)))
    rows = []
    for head, m in ev.heads.items():
        for label, c in m.per_class.items():
            rows.append([f"{head}/{label}", f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support)])
    out.print(table("per class", ["class", "precision", "recall", "F1", "n"], rows))
    rows = [[h, f"{m.accuracy:.3f}", f"{m.ece:.3f}"] for h, m in ev.heads.items() if m.ece is not None and m.n]
    out.print(table("accuracy and expected calibration error", ["head", "accuracy", "ECE"], rows))
    if ev.by_script:
        out.print(table("by script", ["script", "n", "attention macro-F1", "area macro-F1"],
                         [[s, str(int(v["n"])), f"{v['attention']:.3f}", f"{v['area']:.3f}"] for s, v in ev.by_script.items()]))
    err.print(f"report: {outcome.paths[0]}")


# -- triage ---------------------------------------------------------------------------

PROGRESS_MIN_ROWS = 2000  # a bar for smaller inputs would only flicker


class TriageProgress:
    """Talks to people during a triage: the input encoding when it is not UTF-8, and a
    progress bar on a terminal for inputs of more than ``PROGRESS_MIN_ROWS`` rows."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.bar: Progress | None = None
        self._task: Any = None

    def start(self, run: TriageStart) -> None:
        from pipeline.intake.io import encoding_label, is_utf8

        for warning in run.warnings:  # shown even with --quiet: it may change results
            self.console.print(f"warning: {warning}", markup=False)
        if self.quiet:
            return
        for notice in run.notices:
            self.console.print(f"warning: {notice}", markup=False)
        if not is_utf8(run.encoding):
            self.console.print(f"input encoding: {encoding_label(run.encoding)} (converted; output is UTF-8)",
                               markup=False)
        if self.console.is_terminal and run.rows is not None and run.rows > PROGRESS_MIN_ROWS:
            self.bar = Progress(TextColumn("triage"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=self.console, transient=True)
            self._task = self.bar.add_task("triage", total=run.rows)
            self.bar.start()

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.advance(self._task, rows)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@app.command()
def triage(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="Clue file: .csv, .xlsx or .jsonl (UTF-8, GBK/GB18030 or Big5).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Result file (.csv, .xlsx, .jsonl). Default: INPUT.triaged.csv beside the input.")] = None,
    text_col: Annotated[str | None, typer.Option(help="Column with the clue text (default: found by name).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Column with the clue id (default: found by name, else the row number).")] = None,
    unit_col: Annotated[str | None, typer.Option(help="Column with the inspected unit (default: found by name).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: the CPUs available).")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (default: the champion).")] = None,
    round_name: Annotated[str | None, typer.Option("--round", help="The round this file belongs to (default: the open round).")] = None,
    headers: Annotated[str | None, typer.Option("--headers", help="Added columns' headers: zh (Chinese, 是/否; default for .xlsx) or en (column codes, yes/no; default for .csv and .jsonl).")] = None,
    quiet: QuietOption = False,
) -> None:
    """Classify every clue of a file; write every row, in order, with labels and hand-over.

    Example: clue-triage triage data/samples/sample_clues.csv -o var/sample.triaged.xlsx
    """
    from pipeline.intake.triage import triage_file

    progress = TriageProgress(err, quiet)
    try:
        summary = triage_file(home_of(ctx), input, output, text_col=text_col, id_col=id_col, unit_col=unit_col,
                              workers=workers, version=model, round_name=round_name, on_start=progress.start,
                              progress=progress.advance, headers=headers)
    finally:
        progress.stop()
    if not quiet:
        _print_summary(summary)


def _print_summary(summary: TriageSummary) -> None:
    from rich.markup import escape

    from pipeline.labels import AREA, ATTENTION, SHORT_NAMES

    rows = [[SHORT_NAMES[a], *[str(summary.cells.get((a, b), 0)) for b in AREA],
             str(sum(summary.cells.get((a, b), 0) for b in AREA))] for a in ATTENTION]
    rows.append(["合计", *[str(sum(summary.cells.get((a, b), 0) for a in ATTENTION)) for b in AREA],
                 str(sum(summary.cells.values()))])
    in_round = f", round {summary.round_name}" if summary.round_name else ""
    out.print(table(escape(printable(f"run {summary.run_id}: {summary.rows} rows from {summary.input.name}, "
                                     f"model {summary.model_version}{in_round}")),
                     ["关注类别 \\ 领域", *[SHORT_NAMES[b] for b in AREA], "合计"], rows), markup=False)
    other = {k: v for k, v in summary.statuses.items() if k != "ok"}
    out.print(f"needs review: {summary.needs_review} of {summary.rows}", markup=False)
    out.print(f"rows with a status other than ok: {summary.not_ok}"
              + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(other.items())) + ")" if other else ""), markup=False)
    if summary.repeats:
        out.print(f"repeats of an earlier clue (same matter, see group_id / repeat_of): {summary.repeats}", markup=False)
    if summary.unit_column is None:
        out.print(f"no unit column: recusal cannot be applied to {summary.no_unit} clue(s)", markup=False)
    elif summary.no_unit:
        out.print(f"no unit given: recusal cannot be applied to {summary.no_unit} clue(s)", markup=False)
    if summary.unresolved_units:
        shown = "、".join(printable(f"{u} ({n})") for u, n in summary.unresolved_units.most_common(5))
        more = len(summary.unresolved_units) - 5
        out.print(f"units not in the unit directory ({summary.directory_units} entries): "
                  f"{sum(summary.unresolved_units.values())} clue(s) of {len(summary.unresolved_units)} unit name(s): "
                  f"{shown}{f' and {more} more' if more > 0 else ''}; stored as written (clue-triage units add)",
                  markup=False)
    if summary.outside_round:
        out.print(printable(f"clues of units outside round {summary.round_name}: "
                            + "、".join(f"{u} ({n})" for u, n in summary.outside_round.most_common())), markup=False)
    out.print(printable(f"written: {summary.output} (owner-only)"), markup=False)
    err.print(f"{summary.seconds:.1f} s, {summary.per_second:,.0f} clues/s, {summary.workers} worker(s)", markup=False)


if __name__ == "__main__":
    app()
