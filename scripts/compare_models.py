"""Compare feature sets × classifiers per head (CV on train, score on dev); print Markdown.

Usage: .venv/bin/python scripts/compare_models.py > /tmp/compare.md
The table in docs/model.md is this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpus import load_corpus, split  # noqa: E402
from pipeline.features import prepare  # noqa: E402
from pipeline.labels import HEADS  # noqa: E402
from pipeline.selection import candidates, compare  # noqa: E402


def main() -> None:
    corpus = load_corpus()
    train, dev = split(corpus, "train"), split(corpus, "dev")
    train_docs, dev_docs = prepare([c.text for c in train]), prepare([c.text for c in dev])
    print(f"train {len(train)}, dev {len(dev)}; 5-fold CV macro-F1 on train, macro-F1 on dev "
          "(uncalibrated arg-max; the shipped model adds sigmoid calibration)\n")
    print("| head | features | classifier | C | CV macro-F1 (± sd) | dev macro-F1 | fit s | predict docs/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for head in HEADS:
        rows = compare(head, candidates(), train_docs, [c.label(head) for c in train],
                       dev_docs, [c.label(head) for c in dev])
        for r in rows:
            print(f"| {head} | {r.config.features} | {r.config.classifier} | {r.config.C} | "
                  f"{r.cv_macro_f1:.3f} ± {r.cv_std:.3f} | {r.dev_macro_f1:.3f} | {r.fit_seconds:.1f} | "
                  f"{r.docs_per_second:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
