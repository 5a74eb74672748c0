"""Benchmark ``clue-triage retrain`` end to end on a home with 20,000 reviewed clues (issue 12).

Builds a home the way an office would have filled it, through the real commands' library
calls: a model trained on the corpus (the champion), a triage run of N clues (default
20,000; each two different corpus train/dev texts joined, no pair twice, each under a unit of its own
so no two are grouped as repeats), and one reviewer's decisions on every one of them
imported from a filled-in review sheet (``import_review_sheet``: the same audited, chained
override rows as any import). The labels are those of the clue's first corpus text, with one
head in ten changed to another label (reviewers disagree with the corpus). These labels
are made up for timing: the gate's verdict on them means nothing.

Then runs ``python cli.py --home H retrain`` in a fresh process on a copy of that home and
measures what the issue asks for: the wall time of the whole command (training, the K-fold
gate, promotion; target under 60 s on 2 cores), its CPU time, and its peak memory: the
peak proportional set size of the whole process tree (the command and its fit workers,
shared pages counted once) and the largest single process's ``ru_maxrss``. Run::

    python bench/retrain_bench.py                          # builds a home in a temporary folder
    python bench/retrain_bench.py --home /tmp/rb --keep    # builds (or reuses) /tmp/rb; each run uses a copy
    python bench/retrain_bench.py --reviewed 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from triage_bench import TreeSampler, train_in_child  # noqa: E402

from pipeline.labels import HEADS  # noqa: E402
from pipeline.paths import CORPUS_PATH, Home, resolve_home  # noqa: E402

TARGET_SECONDS = 60.0
REVIEWER = "bench"


def corpus_rows() -> list[dict[str, str]]:
    """Corpus train and dev clues: a reviewed clue containing a test clue's text would leak
    it into the challenger and inflate its corpus test score."""
    with open(CORPUS_PATH, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [r for r in rows if r["split"] != "test"]


def reviewed_clues(rows: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``rows`` distinct clues (two different corpus texts joined, no pair twice) with the
    first text's labels, one head in ten changed to another label."""
    corpus = corpus_rows()
    n = len(corpus)
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    out: list[tuple[str, str, str]] = []
    for shift in range(1, n):
        positions = list(range(n))
        rng.shuffle(positions)
        for i in positions:
            first, second = corpus[order[i]], corpus[order[(i + shift) % n]]
            labels = {h: first[h] for h in HEADS}
            if rng.random() < 0.1:
                head = rng.choice(list(HEADS))
                labels[head] = rng.choice([c for c in HEADS[head] if c != labels[head]])
            out.append((first["text"] + second["text"], labels["attention"], labels["area"]))
            if len(out) == rows:
                return out
    raise SystemExit(f"at most {n * (n - 1):,} distinct pairs from {n} corpus texts")


def build(home: Home, rows: int, scratch: Path) -> dict[str, float]:
    """A champion trained on the corpus, a triage run of ``rows`` clues, every one reviewed."""
    from openpyxl import Workbook

    from pipeline.intake.triage import triage_file
    from pipeline.review.review import add_reviewer
    from pipeline.review.workbooks import import_review_sheet
    from pipeline.store.store import connect

    seconds = {}
    seconds["train the champion"] = train_in_child(home)

    clues = reviewed_clues(rows)
    src = scratch / "clues.csv"
    with open(src, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        for i, (text, _, _) in enumerate(clues):
            writer.writerow([f"R{i:07d}", f"某市第{i + 1}单位", text])
    started = time.perf_counter()
    summary = triage_file(home, src, scratch / "clues.triaged.csv")
    seconds["triage"] = time.perf_counter() - started

    started = time.perf_counter()
    db = connect(home.db_path)
    try:
        add_reviewer(db, REVIEWER, "基准复核人")
        keys = {row["clue_id"]: row["clue_key"] for row in db.execute("SELECT clue_id, clue_key FROM clues")}
        book = Workbook(write_only=True)
        sheet = book.create_sheet("复核")
        sheet.append(["id", "reviewed_attention", "reviewed_area", "reason", "run", "clue_key"])
        for i, (_, attention, area) in enumerate(clues):
            sheet.append([f"R{i:07d}", attention, area, "bench", summary.run_id, keys[f"R{i:07d}"]])
        path = scratch / "review.xlsx"
        book.save(path)
        imported = import_review_sheet(db, path, REVIEWER)
    finally:
        db.close()
    seconds["review import"] = time.perf_counter() - started
    seconds["decisions"] = float(sum(imported.recorded.values()))
    return seconds


def run_retrain(home: Home) -> dict[str, object]:
    """``python cli.py --home H retrain`` in a fresh process, timed and measured."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "--home", str(home.root), "retrain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"retrain failed (exit {proc.returncode}):\n{stderr}")
    return {
        "seconds": seconds,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "tree_pss_kb": sampler.peak_kb,
        "largest_rss_kb": after.ru_maxrss,
        "stdout": stdout,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviewed", type=int, default=20_000, help="reviewed clues (default 20,000)")
    parser.add_argument("--home", help="build the home here, or reuse it if built (each run uses a copy)")
    parser.add_argument("--keep", action="store_true", help="keep the copy that was retrained")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        scratch = Path(tmp)
        base = resolve_home(Path(args.home) if args.home else scratch / "base")
        if not base.db_path.exists():
            base.ensure()
            print(f"building a home with {args.reviewed:,} reviewed clues in {base.root} …", file=sys.stderr)
            for step, value in build(base, args.reviewed, scratch).items():
                print(f"  {step}: {value:,.1f}{'' if step == 'decisions' else ' s'}", file=sys.stderr)
        run_home = resolve_home(scratch / "run")
        shutil.copytree(base.root, run_home.root)
        result = run_retrain(run_home)
        print(result["stdout"], end="")
        mb = 1024
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        verdict = "met" if result["seconds"] < TARGET_SECONDS else "NOT met"  # type: ignore[operator]
        print(f"\nretrain end to end, {args.reviewed:,} reviewed clues + the corpus, {cpus} CPU(s):")
        print(f"  wall time                     {result['seconds']:.1f} s (target < {TARGET_SECONDS:.0f} s: {verdict})")
        print(f"  CPU time (all processes)      {result['cpu_seconds']:.1f} s")
        print(f"  peak PSS, whole process tree  {result['tree_pss_kb'] / mb:,.0f} MB")  # type: ignore[operator]
        print(f"  largest process, ru_maxrss    {result['largest_rss_kb'] / mb:,.0f} MB")  # type: ignore[operator]
        if args.keep:
            kept = Path(args.home or ".").resolve().parent / f"{base.root.name}-retrained-{int(time.time())}"
            shutil.copytree(run_home.root, kept)
            print(f"  retrained home kept in {kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
