"""Speed of repeat grouping (pipeline.intake.repeats), the step triage adds per clue.

Builds N distinct clues from the corpus and times what triage does for each classified
clue after normalisation (which triage does anyway): the canonical form, MinHash
signatures and LSH band keys (in triage these run in the workers, batch by batch) and
placing each batch of clues in groups (in the main process, one numpy lookup per batch). Two inputs:

* ``sentences``: each clue is three sentences of three random corpus texts (each sentence
  is reused about 30 times in 100,000 clues: more overlap than real clues have), plus
  10 % repeats (an earlier clue of the same unit, its first characters changed);
* ``pairs``: triage_bench's clues, two corpus texts joined; every clue shares half its
  text with about a hundred others, the hard case for LSH (many candidates to check).

Target: >= 20,000 clues/s. Each input also prints its rate from CPU time (the same steps
timed with ``time.process_time``: this process is single-threaded, so on a loaded machine
it moves less than wall time; compare old and new code on it). ``--memory`` measures instead what the grouper keeps per placed
clue (traced with tracemalloc, which slows the run; ``sentences`` input only), after 100,000
clues and at the end: with ``--rows 1000000`` it shows whether memory per clue stays flat.

Usage: python bench/group_bench.py [--rows 100000] [--memory]
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from triage_bench import clue_texts, corpus_texts  # noqa: E402

from pipeline.intake.repeats import (  # noqa: E402
    Clue,
    Grouper,
    canonical_of_normalized,
    canonicals_of_normalized,
    signatures,
    text_hash,
)
from pipeline.text.normalize import normalize  # noqa: E402

TARGET = 20_000
BATCH = 500


def sentence_clues(rows: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Clues and their units; a repeat has the unit of the clue it repeats."""
    rng = random.Random(seed)
    texts = corpus_texts()
    sentences = [[s for s in re.split(r"(?<=[。！？!?])", t) if len(s) > 8] for t in texts]
    pool = [s for s in sentences if s]
    out: list[str] = []
    units: list[str] = []
    while len(out) < rows:
        if out and rng.random() < 0.10:
            i = rng.randrange(len(out))
            out.append(rng.choice(["再次反映：", "实名举报，", ""]) + out[i][rng.randrange(1, 6):])
            units.append(units[i])
        else:
            out.append("".join(rng.choice(rng.choice(pool)) for _ in range(3)))
            units.append(f"某市第{len(out) % 37 + 1}单位")
    return out, units


def run(texts: list[str], units: list[str],
        checkpoints: dict[int, int] | None = None) -> tuple[float, float, float, int]:
    """Seconds of the per-clue part (canonical form, hash, signatures: triage's workers) and
    of placing (the main process) for already-normalised texts, CPU seconds of both (less
    noisy than wall time on a loaded machine: this process is single-threaded); repeats found. With
    ``checkpoints`` (rows → 0), the traced memory after placing that many rows is filled in."""
    normalized = [normalize(t) for t in texts]
    keys = [text_hash(f"key {i}") for i in range(len(texts))]  # clue keys as triage makes them: 20 hex digits
    # as in triage: only the latest clues stay in memory; clue ids and texts (raw and canonical)
    # of older ones are read back when needed (here from a dict; triage reads them from the store)
    stored = {key: (f"B{i}", text, canonical_of_normalized(norm))
              for i, (key, text, norm) in enumerate(zip(keys, texts, normalized, strict=True))}
    if checkpoints is not None:
        tracemalloc.start()
    # each read gives new strings, as the store does (the grouper's read-back cache holds them)
    grouper = Grouper(lambda wanted: {k: (*stored[k][:2], stored[k][2].encode().decode()) for k in wanted})
    repeats, prepare, place, cpu = 0, 0.0, 0.0, 0.0
    for lo in range(0, len(normalized), BATCH):
        started, cpu_started = time.perf_counter(), time.process_time()
        canon = canonicals_of_normalized(normalized[lo:lo + BATCH])
        sigs = signatures(canon)
        clues = [Clue(keys[lo + j], f"B{lo + j}", units[lo + j], text_hash(text), sigs[j], text)
                 for j, text in enumerate(canon)]
        placing = time.perf_counter()
        repeats += sum(bool(p.repeat_of) for p in grouper.place(clues))
        prepare += placing - started
        place += time.perf_counter() - placing
        cpu += time.process_time() - cpu_started
        if checkpoints is not None and lo + BATCH in checkpoints:
            del canon, sigs, clues
            checkpoints[lo + BATCH] = tracemalloc.get_traced_memory()[0]
    if checkpoints is not None:
        tracemalloc.stop()
    return prepare, place, cpu, repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="trace the grouper's memory per clue instead")
    args = parser.parse_args()
    sentences, units = sentence_clues(args.rows)
    if args.memory:
        checkpoints = dict.fromkeys(sorted({min(100_000, args.rows), args.rows}), 0)
        run(sentences, units, checkpoints)
        for rows, traced in checkpoints.items():
            print(f"sentences, {rows:,} clues placed: grouper holds {traced / 2**20:,.1f} MiB, "
                  f"{traced / rows:,.0f} bytes per clue")
        return
    pair_units = [f"某市第{i % 37 + 1}单位" for i in range(args.rows)]
    for name, texts, of_unit in (("sentences", sentences, units),
                                 ("pairs", list(clue_texts(corpus_texts(), args.rows)), pair_units)):
        prepare, place, cpu, repeats = run(texts, of_unit)
        rate = len(texts) / (prepare + place)
        print(f"{name:9s} {len(texts):,} clues: {prepare + place:.2f} s, {rate:,.0f} clues/s "
              f"({'meets' if rate >= TARGET else 'BELOW'} the {TARGET:,}/s target); "
              f"signatures {len(texts) / prepare:,.0f}/s (workers), placing {len(texts) / place:,.0f}/s (main process); "
              f"{repeats:,} grouped as repeats")
        print(f"{'':9s} CPU time: {cpu:.2f} s, {len(texts) / cpu:,.0f} clues/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS) of this process, inputs included: {peak:,.0f} MB")


if __name__ == "__main__":
    main()
