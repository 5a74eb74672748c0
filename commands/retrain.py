"""`clue-triage retrain`: reviewed clues into a challenger; promoted only if not worse."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pipeline.paths import CORPUS_PATH

from .common import QuietOption, err, home_of, out, table


def retrain(
    ctx: typer.Context,
    min_new_overrides: Annotated[int, typer.Option(min=0, help="Do nothing (exit 0) unless this many clues were reviewed (overridden) since the last model was trained; a clue reviewed on both heads counts once.")] = 0,
    max_drop: Annotated[float, typer.Option(min=0.0, help="Macro-F1 fall per head the gate tolerates; it fails only when the 95% interval of the fall lies wholly beyond it.")] = 0.01,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate fails (recorded as forced).")] = False,
    audit: Annotated[bool, typer.Option("--audit", help="Only list training labels that look wrong; train nothing.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Labeled corpus (JSONL), the one the champion was trained on (`train --data`).")] = CORPUS_PATH,
    quiet: QuietOption = False,
) -> None:
    """Train a challenger on the corpus plus reviewed clues; promote it only if it is not worse.

    Example (cron, nightly): clue-triage retrain --min-new-overrides 50
    """
    from pipeline.model.registry import GATE_HEADER, gate_rows, training_words
    from pipeline.model.retrain import audit_home
    from pipeline.model.retrain import retrain as run_retrain

    home = home_of(ctx)
    if audit:
        suspects = audit_home(home, corpus_path=data, seed=seed)
        out.print(table(f"{len(suspects)} label(s) that out-of-fold predictions disagree with (most suspicious first)",
                        ["origin", "id", "head", "given", "suggested", "p(given)", "p(suggested)", "text"],
                        [[s.origin, s.ref, s.head, s.given, s.suggested, f"{s.p_given:.2f}", f"{s.p_suggested:.2f}",
                          s.text[:40]] for s in suspects]))
        return
    if not quiet:
        err.print("retraining (fit, out-of-fold scores of every reviewed clue, compare with the champion)…")
    outcome = run_retrain(home, corpus_path=data, min_new_overrides=min_new_overrides, max_drop=max_drop,
                          force=force, seed=seed)
    out.print(outcome.message)
    if outcome.status == "nothing_to_do":
        return
    out.print(f"training data: {training_words(outcome.sizes)}", markup=False)
    out.print(f"newly reviewed clues since the last model: {outcome.new_overrides:,}; labels that look wrong: "
              f"{outcome.suspects:,} (clue-triage retrain --audit lists them)")
    if outcome.comparisons:
        out.print(table(f"promotion gate: challenger {outcome.version} against the champion "
                        f"(paired bootstrap; a head fails only when its whole interval lies below -{max_drop:g})",
                        GATE_HEADER, gate_rows([asdict(c) for c in outcome.comparisons])))
    out.print(outcome.evidence, markup=False)
    for c in outcome.comparisons:
        if c.note:
            out.print(f"  ! {c.note}", markup=False)
        for failure in c.failures:
            out.print(f"  ✗ {failure}", markup=False)
    r = outcome.reviewed_out_of_fold
    if r:
        out.print(f"challenger out of fold on all {int(r['n']):,} reviewed clues (reported, not gated): attention "
                  f"macro-F1 {r.get('attention_macro_f1', 0):.3f}, area macro-F1 {r.get('area_macro_f1', 0):.3f}"
                  + (f", further recall {r['further_recall']:.3f}" if "further_recall" in r else ""))
    if not quiet:
        err.print(f"{outcome.seconds:.1f} s")
