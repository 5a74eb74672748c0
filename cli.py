"""clue-triage command line: talks to people; the work is done in ``pipeline``.

Results go to stdout, messages and progress to stderr. Every library error is caught in
one place (:class:`_Group`), printed as one line, and turned into an exit code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from pipeline.errors import ClueTriageError
from pipeline.paths import CORPUS_PATH, Home, resolve_home

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _Group(TyperGroup):
    """Turn library errors into one line on stderr and an exit code; no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClueTriageError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            for problem in getattr(exc, "problems", []):
                err.print(f"  - {problem}", markup=False)
            raise typer.Exit(exc.exit_code) from None


def _typer(help_text: str) -> typer.Typer:
    return typer.Typer(cls=_Group, help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False)


app = _typer("Triage inspection problem clues (问题线索): classify, review, retrain.")
models_app = _typer("The model registry: list, show, promote, roll back.")
app.add_typer(models_app, name="models")


@dataclass
class State:
    home: Home


def _home(ctx: typer.Context) -> Home:
    return ctx.find_root().obj.home.ensure()  # type: ignore[no-any-return]


@app.callback()
def main(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option("--home", envvar="CLUE_TRIAGE_HOME",
                                              help="State folder (database, models, reports). Default: the project folder.")] = None,
    segmenter: Annotated[str | None, typer.Option("--segmenter", help="rjieba (default) or jieba.")] = None,
) -> None:
    """clue-triage: batch triage, reviewer overrides, champion/challenger retraining."""
    os.umask(0o077)  # everything we create is owner-only
    if segmenter:
        from pipeline.segment import set_segmenter

        set_segmenter(segmenter)
    ctx.obj = State(resolve_home(home))


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


# -- train / evaluate -----------------------------------------------------------------


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Labeled corpus (JSONL).")] = CORPUS_PATH,
    seed: Annotated[int, typer.Option(help="Random seed; same data and seed give identical predictions.")] = 0,
    promote: Annotated[bool | None, typer.Option("--promote/--no-promote",
                                                 help="Make it the champion (default: only if there is none).")] = None,
) -> None:
    """Train a model on the corpus train+dev splits and register it as a new version.

    Example: clue-triage train --seed 0
    """
    from pipeline.train import train_and_register

    home = _home(ctx)
    err.print("training (segmenting, fitting two heads, calibrating)…")
    result = train_and_register(home, data, seed=seed, promote=promote)
    dev = result.manifest["metrics"]["dev"]
    out.print(f"model {result.manifest['version']} written to {home.models / result.manifest['version']}"
              f"{' (champion)' if result.promoted else ' (candidate)'}")
    out.print(_table("dev split (model fitted on train)", ["metric", "value"],
                     [[k, f"{v:.3f}"] for k, v in dev.items()]))


@app.command()
def evaluate(
    ctx: typer.Context,
    split: Annotated[str, typer.Option(help="Corpus split to score: test or dev.")] = "test",
    data: Annotated[Path | None, typer.Option(help="Another labeled JSONL file instead of a corpus split.")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (default: the champion).")] = None,
) -> None:
    """Score a model against the majority-class and keyword-rule baselines; write a report.

    Example: clue-triage evaluate --split test
    """
    from pipeline.evaluate import evaluate_and_report

    home = _home(ctx)
    outcome = evaluate_and_report(home, split=split, data=data, version=model)
    ev = outcome.evaluation
    from pipeline.report import comparison_rows

    out.print(_table(f"{ev.name} on {ev.data} (n = {ev.heads['attention'].n})",
                     ["predictor", "attention macro-F1", "area macro-F1", "further recall"],
                     comparison_rows(ev, outcome.baselines)))
    rows = []
    for head, m in ev.heads.items():
        for label, c in m.per_class.items():
            rows.append([f"{head}/{label}", f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support)])
    out.print(_table("per class", ["class", "precision", "recall", "F1", "n"], rows))
    rows = [[h, f"{m.accuracy:.3f}", f"{m.ece:.3f}"] for h, m in ev.heads.items() if m.ece is not None]
    out.print(_table("accuracy and expected calibration error", ["head", "accuracy", "ECE"], rows))
    if ev.by_script:
        out.print(_table("by script", ["script", "n", "attention macro-F1", "area macro-F1"],
                         [[s, str(int(v["n"])), f"{v['attention']:.3f}", f"{v['area']:.3f}"] for s, v in ev.by_script.items()]))
    err.print(f"report: {outcome.paths[0]}")


# -- triage ---------------------------------------------------------------------------


@app.command()
def triage(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="Clue file: .csv, .xlsx or .jsonl (UTF-8, GBK/GB18030 or Big5).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Result file (.csv, .xlsx, .jsonl). Default: INPUT.triaged.csv beside the input.")] = None,
    text_col: Annotated[str | None, typer.Option(help="Column with the clue text (default: found by name).")] = None,
    id_col: Annotated[str | None, typer.Option(help="Column with the clue id (default: found by name, else the row number).")] = None,
    unit_col: Annotated[str | None, typer.Option(help="Column with the inspected unit (default: found by name).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: number of cores).")] = None,
    model: Annotated[str | None, typer.Option(help="Model version (default: the champion).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary; only errors.")] = False,
) -> None:
    """Classify every clue of a file; write every row, in order, with labels and hand-over.

    Example: clue-triage triage data/samples/sample_clues.csv -o var/sample.triaged.xlsx
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline.triage import triage_file

    home = _home(ctx)
    show = not quiet and err.is_terminal
    with Progress(TextColumn("triage"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, disable=not show, transient=True) as bar:
        task = bar.add_task("triage", total=None)
        summary = triage_file(home, input, output, text_col=text_col, id_col=id_col, unit_col=unit_col,
                              workers=workers, version=model, progress=lambda n: bar.advance(task, n))
    if quiet:
        return
    _print_summary(summary)


def _print_summary(summary: Any) -> None:
    from pipeline.labels import AREA, ATTENTION, SHORT_NAMES

    if summary.encoding and summary.encoding not in ("utf-8", "utf-8-sig"):
        err.print(f"input encoding: {summary.encoding} (read and converted; output is UTF-8)")
    rows = [[SHORT_NAMES[a], *[str(summary.cells.get((a, b), 0)) for b in AREA],
             str(sum(summary.cells.get((a, b), 0) for b in AREA))] for a in ATTENTION]
    rows.append(["合计", *[str(sum(summary.cells.get((a, b), 0) for a in ATTENTION)) for b in AREA],
                 str(sum(summary.cells.values()))])
    out.print(_table(f"run {summary.run_id}: {summary.rows} rows from {summary.input.name}, model {summary.model_version}",
                     ["关注类别 \\ 领域", *[SHORT_NAMES[b] for b in AREA], "合计"], rows))
    other = {k: v for k, v in summary.statuses.items() if k != "ok"}
    out.print(f"needs review: {summary.needs_review} of {summary.rows}")
    out.print("rows not classified or flagged: "
              + (", ".join(f"{k} {v}" for k, v in sorted(other.items())) if other else "none"))
    out.print(f"written: {summary.output}")
    err.print(f"{summary.seconds:.1f} s, {summary.per_second:,.0f} clues/s")


# -- models ---------------------------------------------------------------------------


@models_app.command("list")
def models_list(ctx: typer.Context) -> None:
    """List model versions with status, data sizes and dev scores.

    Example: clue-triage models list
    """
    from pipeline.registry import Registry

    rows = Registry(_home(ctx).models).summaries()
    out.print(_table("models", ["version", "status", "created", "parent", "train+dev", "reviewed", "overrides",
                                "attention F1", "area F1", "further recall"],
                     [[r["version"], r["status"], r["created"], r["parent"] or "-", str(r["final_fit"]), str(r["reviewed"]),
                       str(r["overrides_used"]), r["attention_macro_f1"], r["area_macro_f1"], r["further_recall"]] for r in rows]))


@models_app.command("current")
def models_current(ctx: typer.Context) -> None:
    """Print the champion's version (exit 2 when there is none).

    Example: clue-triage models current
    """
    from pipeline.registry import Registry

    registry = Registry(_home(ctx).models)
    loaded = registry.load()
    out.print(loaded.version)


@models_app.command("show")
def models_show(ctx: typer.Context, version: Annotated[str, typer.Argument(help="e.g. v3")]) -> None:
    """Show a version's manifest and model card.

    Example: clue-triage models show v1
    """
    from pipeline.registry import Registry

    out.print(Registry(_home(ctx).models).model_card(version), markup=False)


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="e.g. v3")],
    by: Annotated[str, typer.Option(help="Who decided.")] = "",
    reason: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Make a version the champion (recorded in the registry history).

    Example: clue-triage models promote v3 --by zhang --reason "reviewed by the group"
    """
    from pipeline.registry import Registry

    registry = Registry(_home(ctx).models)
    registry.load(version)  # refuse to promote an artifact that fails verification
    registry.promote(version, by=by, reason=reason, forced=True)
    out.print(f"{version} is now the champion")


@models_app.command("rollback")
def models_rollback(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Who decided.")] = "",
    reason: Annotated[str, typer.Option(help="Why.")] = "",
) -> None:
    """Bring back the previous champion.

    Example: clue-triage models rollback --by zhang --reason "v4 over-flags"
    """
    from pipeline.registry import Registry

    version = Registry(_home(ctx).models).rollback(by=by, reason=reason)
    out.print(f"{version} is the champion again")


if __name__ == "__main__":
    app()
