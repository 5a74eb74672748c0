"""How long a review import holds the store's write lock (issue 11, item 5: target < 2 s).

Builds a store of N clues with predictions of one complete run (written straight into a
temporary home), a filled-in review sheet deciding both heads of every clue, then imports it
with ``import_review_sheet`` and reports ``ImportResult.lock_seconds`` (the time between
``BEGIN IMMEDIATE`` and ``COMMIT``) beside the whole import's wall time. While the import
runs, a second process keeps trying short writes (``reviewers add``-sized transactions)
and reports the longest it had to wait. Run::

    python bench/import_lock_bench.py               # 20,000 rows
    python bench/import_lock_bench.py --rows 50000
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.paths import resolve_home  # noqa: E402
from pipeline.review.review import add_reviewer  # noqa: E402
from pipeline.review.workbooks import import_review_sheet  # noqa: E402
from pipeline.store.store import connect, transaction, unit_key  # noqa: E402

UNIT = "某市生态环境局南湖县分局"


def build(db_path: Path, sheet: Path, n: int) -> None:
    from openpyxl import Workbook

    db = connect(db_path)
    with transaction(db):
        run = db.execute("INSERT INTO runs (started, status, model_version, input_path, input_sha256) "
                         "VALUES ('2026-01-01', 'running', 'v1', 'bench', 'bench')").lastrowid
        db.executemany("INSERT INTO clues (clue_key, clue_id, unit, unit_key, text, first_run) VALUES (?, ?, ?, ?, ?, ?)",
                       [(f"k{i:07d}", f"C{i}", UNIT, unit_key(UNIT), f"线索{i}", run) for i in range(n)])
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, 'ok', 'aware', 0.6, 'policy', 0.6, 0.1, 1, "
                       "'', '', 'v1')", [(run, i + 2, f"k{i:07d}", f"C{i}") for i in range(n)])
        db.execute("UPDATE runs SET status = 'complete' WHERE run_id = ?", (run,))
    add_reviewer(db, "zhang", "张三")
    db.close()
    book = Workbook(write_only=True)
    ws = book.create_sheet("复核")
    ws.append(["id", "reviewed_attention", "reviewed_area", "reason", "run", "clue_key"])
    for i in range(n):
        ws.append([f"C{i}", "further" if i % 2 else "reference", "discipline", "bench", run, f"k{i:07d}"])
    book.save(sheet)


def other_writer(db_path: str, stop: Any, waits: Any) -> None:
    db = connect(db_path)
    longest = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        with transaction(db, "a bench writer"):
            db.execute("SELECT 1")
        longest = max(longest, time.perf_counter() - started)
        time.sleep(0.01)
    waits.put(longest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = resolve_home(Path(tmp) / "home").ensure()
        sheet = Path(tmp) / "review.xlsx"
        build(home.db_path, sheet, args.rows)
        ctx = multiprocessing.get_context("fork")
        stop, waits = ctx.Event(), ctx.Queue()
        writer = ctx.Process(target=other_writer, args=(str(home.db_path), stop, waits))
        writer.start()
        db = connect(home.db_path)
        started = time.perf_counter()
        result = import_review_sheet(db, sheet, "zhang")
        wall = time.perf_counter() - started
        stop.set()
        longest_wait = waits.get(timeout=30)
        writer.join()
        print(f"rows imported:            {result.rows:,} ({sum(result.recorded.values()):,} override rows)")
        print(f"whole import (read+check): {wall:.2f} s")
        print(f"write lock held:           {result.lock_seconds:.2f} s (target < 2 s)")
        print(f"another writer waited at most {longest_wait:.2f} s meanwhile")


if __name__ == "__main__":
    main()
