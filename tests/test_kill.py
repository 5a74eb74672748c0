"""Issue 11, item 6: SIGTERM and kill -9 of a triage of 100,000 rows leave no debris.

The CLI runs in its own process with two workers. After SIGTERM (handled like Ctrl-C) or
SIGKILL, no worker may be alive 5 s later; after the next start (any command opening the
store) the run is ``interrupted``, its predictions and clues are gone and no temporary
file of it is left beside the output.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.paths import CORPUS_PATH, PROJECT_ROOT, Home
from pipeline.store.store import connect

ROWS = 100_000


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [json.loads(line)["text"] for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines()]
    path = tmp_path_factory.mktemp("big") / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        for i in range(ROWS):
            writer.writerow([f"K{i}", f"单位{i % 50}", f"{texts[i % len(texts)]}（第{i}条）"])
    return path


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def run_status(home: Home) -> list[str]:
    if not home.db_path.exists():
        return []
    db = sqlite3.connect(home.db_path)
    try:
        return [r[0] for r in db.execute("SELECT status FROM runs ORDER BY run_id")]
    except sqlite3.Error:
        return []
    finally:
        db.close()


def start_triage(home: Home, source: Path, output: Path, log: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    with open(log, "wb") as sink:  # not a pipe: a surviving worker would hold it open
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "cli.py"), "triage", str(source), "-o", str(output), "--workers", "2",
             "--quiet"],
            env={**os.environ, "CLUE_TRIAGE_HOME": str(home.root)}, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline:
        workers = children(process.pid)
        if run_status(home) == ["running"] and len(workers) >= 2 and list(output.parent.glob(f".{output.name}.*")):
            break
        assert process.poll() is None, log.read_text(errors="replace")
        time.sleep(0.2)
    time.sleep(2)  # well inside the run: batches in flight, rows written, predictions stored
    workers |= children(process.pid)
    assert len(workers) >= 2 and process.poll() is None
    return process, workers


def assert_clean_after_next_start(home: Home, output: Path) -> None:
    db = connect(home.db_path)  # the next start
    try:
        assert [r[0] for r in db.execute("SELECT status FROM runs")] == ["interrupted"]
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM clues").fetchone()[0] == 0
    finally:
        db.close()
    assert not output.exists()
    assert sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "suffix"), [(signal.SIGTERM, ".csv"), (signal.SIGKILL, ".xlsx")],
                         ids=["SIGTERM-csv", "SIGKILL-xlsx"])
def test_a_killed_triage_leaves_no_worker_no_temp_file_and_an_interrupted_run(model_home, big_csv, tmp_path, sig,
                                                                               suffix):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / f"big.triaged{suffix}"
    tmp_before = {p.name for p in Path("/tmp").glob("openpyxl.*")}
    process, workers = start_triage(model_home, big_csv, output, tmp_path / "triage.log")
    os.kill(process.pid, sig)
    process.wait(timeout=60)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    survivors = [w for w in workers if alive(w)]
    for worker in survivors:  # do not leave them running: they are this test's
        os.kill(worker, signal.SIGKILL)
    assert not survivors, "workers outlived their parent by 5 s"
    if sig == signal.SIGTERM:
        assert run_status(model_home) == ["interrupted"]  # handled like Ctrl-C, at once
    assert_clean_after_next_start(model_home, output)
    assert {p.name for p in Path("/tmp").glob("openpyxl.*")} <= tmp_before  # no clue text left in /tmp


def test_sigterm_stops_a_retrain_and_its_fit_workers(model_home: Home, small_corpus: Path) -> None:
    """A retrain fits in worker processes; SIGTERM must stop them at once, not after their fits."""
    proc = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "cli.py"), "retrain"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CLUE_TRIAGE_HOME": str(model_home.root)})
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        workers = {c for c in children(proc.pid) if alive(c)}
        if len(workers) >= 2:  # the fit pool is up (the resource tracker is the other child)
            break
        time.sleep(0.2)
    if proc.poll() is not None or len(workers) < 2:
        proc.kill()
        pytest.skip("the retrain finished before its fit workers could be seen (one CPU?)")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    time.sleep(1.0)
    assert proc.returncode != 0
    assert not [w for w in workers if alive(w)]
