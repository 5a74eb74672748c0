"""Merge the hand-written batches into data/clues.jsonl with ids and fixed splits.

Run once, when the batches were complete and checked (scripts/corpus_check.py). It gives
every clue a stable id (``c0001`` … in batch order) and a split stratified on
attention × area (about 70/15/15; seeded, so the assignment is reproducible), then
writes the corpus. From then on data/clues.jsonl is the source of truth: ids and splits
are never reassigned, and new clues are appended with new ids.

Usage: python scripts/build_corpus.py [--force]
       python scripts/build_corpus.py --append data/batches/batch_09.jsonl
       python scripts/build_corpus.py --wave N SECOND_LABELS_DIR DECISIONS_DIR

``--append`` adds a checked batch to the existing corpus: new ids continue the numbering,
splits are drawn per attention × area cell of the batch with the same shares, and no
existing id, label or split changes.

``--wave N`` adds the batches of wave N (``data/batches/waveN_*.jsonl``: wave 2, issue 9;
wave 3, issue 10) after a second labeler labeled every item blind (``labels_*.jsonl`` in
SECOND_LABELS_DIR, lines
``{"id", "attention", "area"}`` keyed by the staging id ``nNNNN`` = position in writer order)
and an adjudicator decided every disagreement (``decided_*.jsonl`` in DECISIONS_DIR, with a
reason). Clues grounded in a public page get their split from a hash of the page address, so
all clues restated from one page share a split; the others are split per attention × area
cell as above. Every line of the corpus gets ``register``, ``source_url`` and ``counter``;
``data/waveN_agreement.jsonl`` records both labelers' labels, the final ones and the reason
(a wave added in several rounds adds each round's records to it).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 20261128
FIELDS = ("id", "text", "attention", "area", "source", "script", "unit", "split", "register", "source_url", "counter")
REGISTER_OF_SOURCE = {
    "信訪舉報": "letter", "個別談話": "talk_note", "調閱資料": "file_check", "財務審計": "finance_check",
    "職能處室": "division_lead", "選人用人檢查": "selection_check", "現場檢查": "site_check",
}


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


def page_key(url: str) -> str:
    """The page an address names: scheme, 'www.', 'm.', a trailing slash and fragments dropped."""
    key = url.strip().split("#", 1)[0].rstrip("/")
    for prefix in ("https://", "http://"):
        key = key.removeprefix(prefix)
    for prefix in ("www.", "m."):
        key = key.removeprefix(prefix)
    return key.lower()


def page_split(url: str) -> str:
    bucket = int(hashlib.sha256(page_key(url).encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 15 else "dev" if bucket < 30 else "train"


def read_jsonl(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def staging_ids(count: int) -> list[str]:
    """The staging ids of a round's clues: n0001 … in batch order (labelers and the
    adjudicator key their lines by them)."""
    return [f"n{n:04d}" for n in range(1, count + 1)]


def _staging_problem(existing: list[dict], staged: list[dict], second: dict[str, dict],
                     decided: dict[str, dict]) -> str:
    """Why a round cannot be added ('' when it can): every staged clue (staging ids n0001 … in
    batch order) has exactly one second label, every disagreement exactly one decision, and
    no staged text is already in the corpus (a batch merged twice, or last round's labels)."""
    if not staged:
        return "no batch to add"
    ids = staging_ids(len(staged))
    if set(second) != set(ids):
        return f"second labels for {len(second)} staged ids, expected exactly {ids[0]}..{ids[-1]}"
    disagree = {tid for tid, row in zip(ids, staged, strict=True)
                if (row["attention"], row["area"]) != (second[tid]["attention"], second[tid]["area"])}
    if set(decided) != disagree:
        return f"decisions for {len(decided)} ids, but {len(disagree)} disagreements"
    known = {row["text"] for row in existing}
    again = sum(row["text"] in known for row in staged)
    if again:
        return f"{again} staged texts are already in the corpus"
    return ""


def add_wave(wave: int, second_dir: Path, decisions_dir: Path, target: Path) -> int:
    existing = read_jsonl([target])
    for row in existing:
        row.setdefault("register", REGISTER_OF_SOURCE[row["source"]])
        row.setdefault("source_url", "")
        row.setdefault("counter", "")
    staged = read_jsonl(sorted((ROOT / "data" / "batches").glob(f"wave{wave}_*.jsonl")))
    second = {r["id"]: r for r in read_jsonl(sorted(second_dir.glob("labels_*.jsonl")))}
    decided = {r["id"]: r for r in read_jsonl(sorted(decisions_dir.glob("decided_*.jsonl")))}
    problem = _staging_problem(existing, staged, second, decided)
    if problem:
        print(f"nothing written: {problem}")
        return 1
    number = max(int(r["id"][1:]) for r in existing)
    record, unpaged = [], []
    for tid, row in zip(staging_ids(len(staged)), staged, strict=True):
        other = second[tid]
        first = {"attention": row["attention"], "area": row["area"]}
        blind = {"attention": other["attention"], "area": other["area"]}
        final, reason = first, ""
        if first != blind:
            final = {"attention": decided[tid]["attention"], "area": decided[tid]["area"]}
            reason = decided[tid]["reason"]
        number += 1
        row.update(final, id=f"c{number:04d}", source_url=row.get("source_url") or "", counter=row.get("counter") or "")
        if row["source_url"]:
            row["split"] = page_split(row["source_url"])
        else:
            unpaged.append(row)
        record.append({"id": row["id"], "register": row["register"], "first": first, "second": blind,
                       "final": final, "agreed": first == blind, "reason": reason})
    assign_splits(unpaged, SEED + number)
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        for row in [*existing, *staged]:
            handle.write(json.dumps({f: row[f] for f in FIELDS}, ensure_ascii=False) + "\n")
    agreement = ROOT / "data" / f"wave{wave}_agreement.jsonl"
    earlier = read_jsonl([agreement]) if agreement.exists() else []  # a wave added in rounds keeps every round
    with open(agreement, "w", encoding="utf-8", newline="\n") as handle:
        for rec in [*earlier, *record]:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"appended {len(staged)} wave-{wave} clues ({staged[0]['id']}..{staged[-1]['id']}); "
          f"{sum(not r['agreed'] for r in record)} adjudicated")
    return 0


def main(argv: list[str]) -> int:
    target = ROOT / "data" / "clues.jsonl"
    if argv[:1] == ["--wave"] and len(argv) == 4:
        return add_wave(int(argv[1]), Path(argv[2]), Path(argv[3]), target)
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
