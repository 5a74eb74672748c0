"""Rank model configurations by how they do on registers they were not trained on.

For each candidate, every register of the corpus (``train`` + ``dev``; ``test`` is never
looked at) is scored by a model fitted on all the other registers (leave one register
out), through the same stacker the shipped model uses; in-corpus 5-fold cross-validation
is printed beside it. Candidates are ranked by the mean of the two heads' mean
leave-one-register-out macro-F1, ties broken by the worst register.

Usage: .venv/bin/python scripts/compare_models.py [--quick] > /tmp/compare.md
The table in docs/model.md is this script's output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from pipeline.labels import HEADS  # noqa: E402
from pipeline.model.corpus import load_corpus, split  # noqa: E402
from pipeline.model.model import HeadConfig, Member, ModelConfig, fit_stacker, softmax  # noqa: E402
from pipeline.model.train import examples_from, out_of_group  # noqa: E402
from pipeline.model.vectorize import batch_keys  # noqa: E402
from pipeline.text.features import prepare  # noqa: E402


def candidates() -> list[tuple[str, ModelConfig]]:
    def same(members: tuple[Member, ...], class_weight: str | None = "balanced") -> dict[str, HeadConfig]:
        return {h: HeadConfig(members, class_weight) for h in HEADS}

    svc = (Member("linsvc", 0.5),)
    return [
        ("SVM C=0.5, word+char", ModelConfig("word+char", heads=same(svc))),
        ("SVM C=0.1, word+char", ModelConfig("word+char", heads=same((Member("linsvc", 0.1),)))),
        ("SVM C=2, word+char", ModelConfig("word+char", heads=same((Member("linsvc", 2.0),)))),
        ("SVM C=0.5, word only", ModelConfig("word", heads=same(svc))),
        ("SVM C=0.5, char only", ModelConfig("char", heads=same(svc))),
        ("SVM C=0.5, binary TF", ModelConfig("word+char", binary=True, heads=same(svc))),
        ("SVM C=0.5, min_df 2", ModelConfig("word+char", min_df=2, heads=same(svc))),
        ("SVM C=0.5, no class weights", ModelConfig("word+char", heads=same(svc, None))),
        ("vote: SVM 0.1 + SVM 0.5 + SVM 2", ModelConfig("word+char", heads=same(
            (Member("linsvc", 0.1), Member("linsvc", 0.5), Member("linsvc", 2.0))))),
        ("vote: SVM 0.1 + SVM 0.5 + SVM 2, char only", ModelConfig("char", heads=same(
            (Member("linsvc", 0.1), Member("linsvc", 0.5), Member("linsvc", 2.0))))),
        ("vote: SVM 0.1 + SVM 0.5 + SVM 2, binary TF", ModelConfig("word+char", binary=True, heads=same(
            (Member("linsvc", 0.1), Member("linsvc", 0.5), Member("linsvc", 2.0))))),
        ("vote: SVM 0.1 + SVM 0.5 + SVM 2, no class weights", ModelConfig("word+char", heads=same(
            (Member("linsvc", 0.1), Member("linsvc", 0.5), Member("linsvc", 2.0)), None))),
        # logistic regression last: as accurate as the SVM here, but 50-100 times slower to fit
        ("LR C=10", ModelConfig("word+char", heads=same((Member("logreg", 10.0),)))),
        ("vote: SVM 0.5 + LR 10", ModelConfig("word+char", heads=same((Member("linsvc", 0.5), Member("logreg", 10.0))))),
    ]


def scores(examples, docs, config, groups):  # type: ignore[no-untyped-def]
    keys = batch_keys(docs, config.features)
    oog = out_of_group(examples, keys, config, 0, groups)
    out = {}
    g = np.asarray(oog.groups)
    for h in HEADS:
        y = np.array([e.label(h) for e in examples])
        w, b = fit_stacker(oog.scores[h], y, HEADS[h])
        pred = np.array(HEADS[h])[softmax(oog.scores[h] @ w.T + b).argmax(axis=1)]
        out[h] = {name: f1_score(y[g == name], pred[g == name], average="macro", labels=sorted(set(y[g == name])))
                  for name in sorted(set(oog.groups))}
    return out


def main(argv: list[str]) -> None:
    corpus = split(load_corpus(), "train", "dev")
    examples = examples_from(corpus)
    docs = prepare([e.text for e in examples])
    registers = sorted({e.group for e in examples})
    rng = np.random.default_rng(0)
    random_folds = [f"fold{i}" for i in rng.integers(0, 5, len(examples))]
    print(f"{len(examples)} clues (train + dev) in {len(registers)} registers: leave-one-register-out (LORO) "
          "macro-F1, mean and worst register, per head; in-corpus 5-fold CV beside it.\n")
    print("| candidate | LORO attention mean | worst | LORO area mean | worst | CV attention | CV area | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    per_register = {}
    rows = []
    for name, config in candidates()[: 3 if "--quick" in argv else None]:
        started = time.perf_counter()
        loro = scores(examples, docs, config, [e.group for e in examples])
        cv = scores(examples, docs, config, random_folds)
        seconds = time.perf_counter() - started
        a, r = loro["attention"], loro["area"]
        row = (name, np.mean(list(a.values())), min(a.values()), np.mean(list(r.values())), min(r.values()),
               np.mean(list(cv["attention"].values())), np.mean(list(cv["area"].values())), seconds)
        rows.append(row)
        per_register[name] = loro
        print(f"| {row[0]} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.3f} | {row[4]:.3f} | {row[5]:.3f} | "
              f"{row[6]:.3f} | {row[7]:.0f} |", flush=True)
    best = max(rows, key=lambda r: (round((r[1] + r[3]) / 2, 3), min(r[2], r[4])))
    print(f"\nbest by mean LORO macro-F1 of both heads: **{best[0]}**\n")
    print("| register | " + " | ".join(f"{h} ({best[0]})" for h in HEADS) + " |")
    print("|---|---:|---:|")
    for reg in registers:
        print(f"| {reg} | " + " | ".join(f"{per_register[best[0]][h][reg]:.3f}" for h in HEADS) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
