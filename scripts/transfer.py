"""Leave one register out, the whole training protocol included: the number that matters.

For each register R of the corpus (``train`` + ``dev``; ``test`` is never looked at), a
model is trained by the shipped protocol (``pipeline.model.train.fit_and_calibrate``: members,
out-of-register calibration, thresholds, familiarity floor) on every *other* register, then
scores all of R's clues. Printed per register: macro-F1 of both heads, `further` recall, the
share flagged ``needs_review`` and the accuracy of the rows left unflagged; then the mean
over registers, next to in-distribution 5-fold cross-validation of the same protocol.

With ``--frontier`` it also asks how far the review flag *could* go on each register: the
needs-review thresholds chosen on the held register's own answers (an oracle no run has),
the fewest clues they must flag for the unflagged ones to be right 90 % / 95 % of the time,
and the best the unflagged clues can do with at most 40 % flagged; then, for a lower
`further` threshold, the worst register's `further` recall and what it costs in attention
macro-F1. It is the measurement behind "not met" in docs/model.md.

Usage: .venv/bin/python scripts/transfer.py [--registers a,b] [--frontier] > /tmp/transfer.md
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
from pipeline.model.flags import has_alarm  # noqa: E402
from pipeline.model.model import decide  # noqa: E402
from pipeline.model.train import (  # noqa: E402
    FLAG_BUDGET,
    UNFLAGGED_ACCURACY,
    choose_review_thresholds,
    examples_from,
    fit_and_calibrate,
    review_candidates,
)
from pipeline.text.features import prepare  # noqa: E402

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


#: `further` thresholds tried by ``--frontier`` (the shipped one is chosen in training)
FURTHER_GRID = (0.25, 0.20, 0.15, 0.10, 0.07, 0.05)


def frontier(model, held, results, further_proba=None, docs=None):  # type: ignore[no-untyped-def]
    """What the review flag could do on ``held`` with thresholds chosen on its own answers.

    Returns (the fewest clues flagged for unflagged accuracy to meet the targets: 1.0 when
    only flagging every clue does, NaN when not even that is in the threshold grid; the
    unflagged (attention, area) accuracy of the best thresholds that flag at most the budget,
    NaN when even the rules that no threshold turns off flag more). The oracle weighs the
    rules training weighs (:func:`review_candidates`: both confidence thresholds and, given
    ``further_proba``, the possible-`further` one); the familiarity floor and the
    misconduct-term rule stay on, as in every run. ``docs``: ``held`` prepared, if already
    done. Every clue of ``held`` must have been classified (status ``ok``), as every corpus
    clue is."""
    if any(r.status != "ok" for r in results):
        raise ValueError("frontier() scores classified clues only")
    truth = {h: [e.label(h) for e in held] for h in HEADS}
    predicted = {h: [getattr(r, h) for r in results] for h in HEADS}
    confidence = {"attention": np.array([r.attention_conf for r in results]),
                  "area": np.array([r.area_conf for r in results])}
    familiarity = np.array([r.familiarity for r in results])
    alarm = [has_alarm(d.text) for d in (docs if docs is not None else prepare([e.text for e in held]))]
    # budget and allowance 0: of the rules that meet the targets, the one that flags fewest
    rule = choose_review_thresholds(truth, predicted, confidence, familiarity, alarm, model.familiarity_floor,
                                    margin=0.0, further_proba=further_proba, budget=0.0, allowance=0.0)
    right = {h: np.array(truth[h]) == np.array(predicted[h]) for h in HEADS}
    best, best_slack = (float("nan"), float("nan")), -np.inf
    for _, _, flag in review_candidates(predicted["attention"], confidence["attention"], confidence["area"],
                                        familiarity, alarm, model.familiarity_floor, further_proba):
        keep = ~flag
        if flag.mean() > FLAG_BUDGET or not keep.any():
            continue
        acc = (float(right["attention"][keep].mean()), float(right["area"][keep].mean()))
        slack = min(acc[0] - UNFLAGGED_ACCURACY["attention"], acc[1] - UNFLAGGED_ACCURACY["area"])
        if slack > best_slack:
            best, best_slack = acc, slack
    return (rule.flagged if rule.met else float("nan")), best


def further_recall_at(model, held, head=None):  # type: ignore[no-untyped-def]
    """For each threshold of :data:`FURTHER_GRID`: (`further` recall, attention macro-F1, share
    of clues called `further`). ``head``: the attention head's prediction of ``held``, if
    already made."""
    if head is None:
        head = model.predict(prepare([e.text for e in held]))["attention"]
    y = [e.attention for e in held]
    out = {}
    for t in FURTHER_GRID:
        labels = [head.classes[i] for i in decide(head.classes, head.proba, t)]
        further = [i for i, label in enumerate(y) if label == "further"]
        recall = float(np.mean([labels[i] == "further" for i in further])) if further else float("nan")
        out[t] = (recall, f1_score(y, labels, labels=sorted(set(y)), average="macro", zero_division=0),
                  labels.count("further") / len(labels))
    return out


def main(argv: list[str]) -> None:
    examples = examples_from(split(load_corpus(), "train", "dev"))
    registers = sorted({e.group for e in examples})
    if "--registers" in argv:
        registers = argv[argv.index("--registers") + 1].split(",")
    print(f"| register | n | {HEADER} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows, oracle, recall = {}, {}, {}
    for name in registers:
        train = [e for e in examples if e.group != name]
        held = [e for e in examples if e.group == name]
        model = fit_and_calibrate(train, seed=0).model
        results = classify_texts(model, [e.text for e in held])
        r = rows[name] = score_results(held, results)
        print(f"| {name} | {r['n']} | {cells(r)} |", flush=True)
        if "--frontier" in argv:
            docs = prepare([e.text for e in held])
            head = model.predict(docs)["attention"]
            further = head.proba[:, head.classes.index("further")]
            oracle[name] = frontier(model, held, results, further_proba=further, docs=docs)
            recall[name] = further_recall_at(model, held, head)
    mean = {k: np.nanmean([r[k] for r in rows.values()]) for k in COLUMNS}
    print(f"| **mean of registers** | | **{mean['attention']:.3f}** | **{mean['area']:.3f}** | "
          f"{mean['further_recall']:.3f} | {mean['flagged']:.0%} | {mean['attention_unflagged']:.3f} | "
          f"{mean['area_unflagged']:.3f} | {mean['further_unseen']:.3f} |")
    print(f"| worst register | | {min(r['attention'] for r in rows.values()):.3f} | "
          f"{min(r['area'] for r in rows.values()):.3f} | | | "
          f"{min(r['attention_unflagged'] for r in rows.values()):.3f} | "
          f"{min(r['area_unflagged'] for r in rows.values()):.3f} | "
          f"{max(r['further_unseen'] for r in rows.values()):.3f} |")
    if oracle:
        print_frontier(rows, oracle, recall)
    if "--registers" not in argv:
        rng = np.random.default_rng(0)
        fold = rng.integers(0, 5, len(examples))
        cv = [score(fit_and_calibrate([e for e, f in zip(examples, fold, strict=True) if f != k], seed=0).model,
                    [e for e, f in zip(examples, fold, strict=True) if f == k]) for k in range(5)]
        print(f"\nIn-distribution 5-fold CV of the same protocol: attention {np.mean([r['attention'] for r in cv]):.3f}, "
              f"area {np.mean([r['area'] for r in cv]):.3f}, flagged {np.mean([r['flagged'] for r in cv]):.0%}.")


def print_frontier(rows, oracle, recall):  # type: ignore[no-untyped-def]
    target = f"{UNFLAGGED_ACCURACY['attention']:.0%} / {UNFLAGGED_ACCURACY['area']:.0%}"
    print(f"\n| register | flagged now | fewest flagged for unflagged right {target}, thresholds chosen on the "
          f"register itself | best unflagged attention / area with at most {FLAG_BUDGET:.0%} flagged |")
    print("|---|---:|---:|---:|")
    for name, (fewest, best) in oracle.items():
        shown = "not reachable" if fewest != fewest else f"{fewest:.1%}"
        within = f"{best[0]:.3f} / {best[1]:.3f}" if best[0] == best[0] else f"none within {FLAG_BUDGET:.0%}"
        print(f"| {name} | {rows[name]['flagged']:.0%} | {shown} | {within} |")
    print("\n| `further` threshold | worst register's `further` recall | mean `further` recall | "
          "mean attention macro-F1 | mean share called `further` |")
    print("|---:|---:|---:|---:|---:|")
    for t in FURTHER_GRID:
        values = [r[t] for r in recall.values()]
        print(f"| {t:.2f} | {np.nanmin([v[0] for v in values]):.3f} | {np.nanmean([v[0] for v in values]):.3f} | "
              f"{np.mean([v[1] for v in values]):.3f} | {np.mean([v[2] for v in values]):.0%} |")


if __name__ == "__main__":
    main(sys.argv[1:])
