"""Merge the hand-written batches into data/clues.jsonl with ids and fixed splits.

Run once, when the batches were complete and checked (scripts/corpus_check.py). It gives
every clue a stable id (``c0001`` … in batch order) and a split stratified on
attention × area (about 70/15/15; seeded, so the assignment is reproducible), then
writes the corpus. From then on data/clues.jsonl is the source of truth: ids and splits
are never reassigned, and new clues are appended with new ids.

Usage: python scripts/build_corpus.py [--force]
       python scripts/build_corpus.py --append data/batches/batch_09.jsonl

``--append`` adds a checked batch to the existing corpus: new ids continue the numbering,
splits are drawn per attention × area cell of the batch with the same shares, and no
existing id, label or split changes.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261128
FIELDS = ("id", "text", "attention", "area", "source", "script", "unit", "split")


def assign_splits(rows: list[dict], seed: int) -> None:
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        cells[(row["attention"], row["area"])].append(row)
    rng = random.Random(seed)
    for key in sorted(cells):
        members = cells[key]
        rng.shuffle(members)
        n_test = math.ceil(len(members) * 0.15)
        n_dev = round(len(members) * 0.15)
        for i, row in enumerate(members):
            row["split"] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"


def append(batch: Path, target: Path) -> int:
    existing = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line.strip()]
    number = max(int(r["id"][1:]) for r in existing)
    rows = [json.loads(line) for line in batch.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        number += 1
        row["id"] = f"c{number:04d}"
    assign_splits(rows, SEED + number)
    with open(target, "a", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps({f: row[f] for f in FIELDS}, ensure_ascii=False) + "\n")
    print(f"appended {len(rows)} clues ({rows[0]['id']}..{rows[-1]['id']}) to {target}")
    return 0


def main(argv: list[str]) -> int:
    target = ROOT / "data" / "clues.jsonl"
    if argv[:1] == ["--append"] and len(argv) == 2:
        return append(Path(argv[1]), target)
    if target.exists() and "--force" not in argv:
        print(f"{target} exists; ids and splits are fixed. Use --force only before the first release.")
        return 1
    rows = []
    for path in sorted((ROOT / "data" / "batches").glob("batch_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rows.append(json.loads(line))
    for n, row in enumerate(rows, 1):
        row["id"] = f"c{n:04d}"
    assign_splits(rows, SEED)
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps({f: row[f] for f in FIELDS}, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} clues to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
