"""Does a wave of new corpus text help on text no model here was trained on?

Two measurements, both by the shipped protocol (``fit_and_calibrate`` on ``train`` + ``dev``,
seed 0) and scored like ``scripts/transfer.py``:

1. the wave's ``test`` split and the earlier ``test`` split, by a model trained without the
   wave against one trained with it;
2. all of the wave's clues in two halves by a hash of their page address: the model without
   the wave scores every clue; a model trained with the other half's ``train`` + ``dev`` clues
   scores each half, and the figures are computed once over all clues (each clue predicted
   by the model that did not see its half: pooled, not an average of the halves).

Usage: .venv/bin/python scripts/wave_gain.py [--first-id 4309]   (wave 3: c4309 on)
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_corpus import page_key  # noqa: E402
from transfer import HEADER, cells, score_results  # noqa: E402

from pipeline.intake.triage import Result, classify_texts  # noqa: E402
from pipeline.labels import HEADS  # noqa: E402
from pipeline.model.corpus import Clue, load_corpus, split  # noqa: E402
from pipeline.model.retrain import paired_bootstrap  # noqa: E402
from pipeline.model.train import examples_from, fit_and_calibrate  # noqa: E402

TABLE = f"| {{}} | model | n | {HEADER} |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"


def line(clues: str, model: str, n: int, row: dict[str, float]) -> str:
    return f"| {clues} | {model} | {n} | {cells(row, missing='—')} |"


def half(url: str) -> int:
    """0 or 1 by the page (as splits are: one page, one half)."""
    return int(hashlib.sha256(page_key(url).encode()).hexdigest()[:8], 16) % 2


def main(argv: list[str]) -> None:
    first = int(argv[argv.index("--first-id") + 1]) if "--first-id" in argv else 4309
    clues = load_corpus()
    before = [c for c in split(clues, "train", "dev") if int(c.id[1:]) < first]
    wave = [c for c in clues if int(c.id[1:]) >= first]
    base = fit_and_calibrate(examples_from(before), seed=0).model
    full = fit_and_calibrate(examples_from(split(clues, "train", "dev")), seed=0).model
    print(TABLE.format("clues"))
    tests = {"wave `test`": [c for c in wave if c.split == "test"],
             "earlier `test`": [c for c in split(clues, "test") if int(c.id[1:]) < first]}
    gains = []
    for name, held in tests.items():
        got = {}
        for model_name, model in (("without the wave", base), ("with the wave", full)):
            got[model_name] = classify_texts(model, [c.text for c in held])
            print(line(name, model_name, len(held), score_results(examples_from(held), got[model_name])))
        gains.append(f"{name}: " + interval(held, got["without the wave"], got["with the wave"]))
    print()
    print("Gain with the wave, and its paired bootstrap 95 % interval: " + "; ".join(gains) + ".")
    print()
    print(TABLE.format("register"))
    without = dict(zip((c.id for c in wave), classify_texts(base, [c.text for c in wave]), strict=True))
    within = {}
    for h in (0, 1):
        held = [c for c in wave if half(c.source_url) == h]
        added = [c for c in wave if half(c.source_url) != h and c.split in ("train", "dev")]
        print(f"half {h}: {len(held)} clues scored, {len(added)} of the other half trained on", file=sys.stderr)
        with_half = fit_and_calibrate(examples_from(before + added), seed=0).model
        within.update(zip((c.id for c in held), classify_texts(with_half, [c.text for c in held]), strict=True))
    for model_name, results in (("without the wave", without), ("with the other half", within)):
        for register in [*sorted({c.register for c in wave}), "all"]:
            mine = [c for c in wave if register in ("all", c.register)]
            print(line(register, model_name, len(mine), score_results(examples_from(mine), [results[c.id] for c in mine])))
    print()
    print("Gain with the other half, all clues: "
          + interval(wave, [without[c.id] for c in wave], [within[c.id] for c in wave]) + ".")


def interval(held: list[Clue], before: list[Result], after: list[Result]) -> str:
    """Macro-F1 gain of each head (after minus before) with its paired bootstrap 95 % interval."""
    parts = []
    for head in HEADS:
        diff, lo, hi = paired_bootstrap([c.label(head) for c in held], [getattr(r, head) for r in before],
                                        [getattr(r, head) for r in after], "macro_f1", HEADS[head])
        parts.append(f"{head} {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return ", ".join(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
