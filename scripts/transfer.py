"""Leave one register out, the whole training protocol included: the number that matters.

For each register R of the corpus (``train`` + ``dev``; ``test`` is never looked at), a
model is trained by the shipped protocol (``pipeline.model.train.fit_and_calibrate``: members,
out-of-register calibration, thresholds, familiarity floor) on every *other* register, then
scores all of R's clues. Printed per register: macro-F1 of both heads, `further` recall, the
share flagged ``needs_review`` and the accuracy of the rows left unflagged; then the mean
over registers, next to in-distribution 5-fold cross-validation of the same protocol.

Usage: .venv/bin/python scripts/transfer.py [--registers a,b] > /tmp/transfer.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from pipeline.intake.triage import classify_texts  # noqa: E402
from pipeline.labels import HEADS  # noqa: E402
from pipeline.model.corpus import load_corpus, split  # noqa: E402
from pipeline.model.train import examples_from, fit_and_calibrate  # noqa: E402

#: the figures of a row, in the table's order, and the table's header for them
COLUMNS = ("attention", "area", "further_recall", "flagged", "attention_unflagged", "area_unflagged", "further_unseen")
HEADER = ("attention macro-F1 | area macro-F1 | further recall | flagged | unflagged attention acc "
          "| unflagged area acc | further missed unflagged")


def cells(row: dict[str, float], missing: str = "nan") -> str:
    """A row's figures as table cells (flagged as a percentage; ``missing`` for a NaN: no
    clue of that kind, such as no `further` clue)."""
    return " | ".join(missing if row[c] != row[c] else f"{row[c]:.0%}" if c == "flagged" else f"{row[c]:.3f}"
                      for c in COLUMNS)


def score(model, held):  # type: ignore[no-untyped-def]
    return score_results(held, classify_texts(model, [e.text for e in held]))


def score_results(held, results):  # type: ignore[no-untyped-def]
    """The table's figures for examples ``held`` and their triage ``results``, in order."""
    row = {"n": len(held)}
    flagged = np.array([r.needs_review for r in results])
    for h in HEADS:
        y = [e.label(h) for e in held]
        p = [getattr(r, h) for r in results]
        row[h] = f1_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0)
        keep = [i for i in range(len(y)) if not flagged[i]]
        row[f"{h}_unflagged"] = float(np.mean([y[i] == p[i] for i in keep])) if keep else float("nan")
    further = [i for i, e in enumerate(held) if e.attention == "further"]
    row["further_recall"] = float(np.mean([results[i].attention == "further" for i in further])) if further else float("nan")
    row["further_unseen"] = (float(np.mean([results[i].attention != "further" and not flagged[i] for i in further]))
                             if further else float("nan"))  # missed and not flagged: nobody looks again
    row["flagged"] = float(flagged.mean())
    return row


def main(argv: list[str]) -> None:
    examples = examples_from(split(load_corpus(), "train", "dev"))
    registers = sorted({e.group for e in examples})
    if "--registers" in argv:
        registers = argv[argv.index("--registers") + 1].split(",")
    print(f"| register | n | {HEADER} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for name in registers:
        train = [e for e in examples if e.group != name]
        held = [e for e in examples if e.group == name]
        model = fit_and_calibrate(train, seed=0).model
        r = rows[name] = score(model, held)
        print(f"| {name} | {r['n']} | {cells(r)} |", flush=True)
    mean = {k: np.nanmean([r[k] for r in rows.values()]) for k in COLUMNS}
    print(f"| **mean of registers** | | **{mean['attention']:.3f}** | **{mean['area']:.3f}** | "
          f"{mean['further_recall']:.3f} | {mean['flagged']:.0%} | {mean['attention_unflagged']:.3f} | "
          f"{mean['area_unflagged']:.3f} | {mean['further_unseen']:.3f} |")
    print(f"| worst register | | {min(r['attention'] for r in rows.values()):.3f} | "
          f"{min(r['area'] for r in rows.values()):.3f} | | | "
          f"{min(r['attention_unflagged'] for r in rows.values()):.3f} | "
          f"{min(r['area_unflagged'] for r in rows.values()):.3f} | "
          f"{max(r['further_unseen'] for r in rows.values()):.3f} |")
    if "--registers" not in argv:
        rng = np.random.default_rng(0)
        fold = rng.integers(0, 5, len(examples))
        cv = [score(fit_and_calibrate([e for e, f in zip(examples, fold, strict=True) if f != k], seed=0).model,
                    [e for e, f in zip(examples, fold, strict=True) if f == k]) for k in range(5)]
        print(f"\nIn-distribution 5-fold CV of the same protocol: attention {np.mean([r['attention'] for r in cv]):.3f}, "
              f"area {np.mean([r['area'] for r in cv]):.3f}, flagged {np.mean([r['flagged'] for r in cv]):.0%}.")


if __name__ == "__main__":
    main(sys.argv[1:])
