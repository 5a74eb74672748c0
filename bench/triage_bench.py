"""Benchmark batch triage end to end against plain jieba.lcut on the same texts.

Builds an N-clue CSV (default 100,000) from the corpus texts (shuffled, each clue two
different corpus texts joined, and no pair used twice, so no clue repeats), then measures
in one run:

* plain ``jieba.lcut``, single process, on the same clue texts (clues/s);
* CPU time per clue of both (triage: its process and all workers), and the ratio they imply
  with every core busy: on a machine shared with other jobs the wall-clock ratio depends on
  how much of the CPU each phase happened to get, the CPU-time one does not;
* model load (``Registry.load``) in a fresh process;
* ``triage_file`` end to end (check input, load model, workers, write CSV, store) with
  ``--workers`` processes (default: the CPUs available), its wall time and clues/s;
* peak memory: ``ru_maxrss`` of the triage process (RUSAGE_SELF) and of its largest worker
  (RUSAGE_CHILDREN), and the peak proportional set size of the whole process tree sampled
  from ``/proc`` (shared pages counted once), which is what the machine actually spends.

Without ``--home`` a model is trained into a temporary home first. Run::

    python bench/triage_bench.py                 # 100,000 clues (make bench)
    python bench/triage_bench.py --rows 1000000  # the memory check
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.paths import CORPUS_PATH, Home, resolve_home  # noqa: E402

TARGET_RATIO = 7.0
TARGET_LOAD_SECONDS = 2.0
TARGET_RSS_MB = 600


def corpus_texts() -> list[str]:
    with open(CORPUS_PATH, encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


def clue_texts(texts: list[str], rows: int, seed: int = 0):
    """``rows`` distinct clues, each two different corpus texts joined (no pair twice)."""
    n = len(texts)
    if rows > n * (n - 1):
        raise SystemExit(f"at most {n * (n - 1):,} distinct pairs from {n} corpus texts")
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    made = 0
    # for a fixed order, (order[i], order[(i + shift) % n]) is a different pair for every
    # (i, shift) with 0 < shift < n; each block visits i in a fresh random order
    for shift in range(1, n):
        positions = list(range(n))
        rng.shuffle(positions)
        for i in positions:
            yield texts[order[i]] + texts[order[(i + shift) % n]]
            made += 1
            if made == rows:
                return


def build_csv(path: Path, rows: int) -> None:
    texts = corpus_texts()
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        for i, text in enumerate(clue_texts(texts, rows)):
            writer.writerow([f"B{i:07d}", f"某市第{i % 37 + 1}单位", text])


def jieba_rate(rows: int, sample: int) -> tuple[float, int, float]:
    """Plain jieba.lcut clues/s, single process, on the first ``sample`` clue texts, and
    CPU seconds per clue."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    texts = list(clue_texts(corpus_texts(), min(rows, sample)))
    started, cpu = time.perf_counter(), time.process_time()
    for text in texts:
        jieba.lcut(text)
    return len(texts) / (time.perf_counter() - started), len(texts), (time.process_time() - cpu) / len(texts)


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as handle:
                todo.extend(int(c) for c in handle.read().split())
        except OSError:
            pass
    return pids


class TreeSampler(threading.Thread):
    """Peak PSS of a process and its descendants, sampled every ``interval`` seconds, and
    the share of the process itself in that peak (the rest is its workers').

    Once a second: reading ``smaps_rollup`` walks a process's page tables (tens of ms for
    a 1.3 GB fit worker), and at five samples a second the sampler took several seconds of
    CPU from a one-minute retrain on 2 cores. Memory peaks in triage and retrain last
    seconds, so a second's resolution finds them."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kb, self.peak_own_kb = pid, interval, 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            own = _pss_kb(self.pid)
            total = own + sum(_pss_kb(p) for p in _tree(self.pid) if p != self.pid)
            if total > self.peak_kb:
                self.peak_kb, self.peak_own_kb = total, own
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _triage_child(home_root: str, src: str, out: str, workers: int | None, queue: multiprocessing.Queue) -> None:
    """In a fresh process: time the model load, then the whole triage; report rusage."""
    from pipeline.intake.triage import available_cpus, triage_file
    from pipeline.model.registry import Registry

    home = resolve_home(home_root)
    started = time.perf_counter()
    Registry(home.models).load(predict_only=True)  # as triage loads it
    load_seconds = time.perf_counter() - started
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    summary = triage_file(home, src, out, workers=workers)
    seconds = time.perf_counter() - started
    queue.put({
        "cpu_seconds": _cpu_seconds() - cpu_before,
        "load_seconds": load_seconds,
        "seconds": seconds,
        "rows": summary.rows,
        "workers": summary.workers,
        "cpus": available_cpus(),
        "rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rss_before_kb": rss_before,
        "rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "statuses": dict(summary.statuses),
    })


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_triage(home: Home, src: Path, out: Path, workers: int | None) -> dict:
    """Triage in a fresh child process and measure it.

    Call it while this process is still small: a spawned child starts as a copy of its
    parent until it executes Python afresh, and ``ru_maxrss`` keeps that copy's size.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_triage_child, args=(str(home.root), str(src), str(out), workers, queue))
    started = time.perf_counter()
    child.start()
    sampler = TreeSampler(child.pid)  # type: ignore[arg-type]
    sampler.start()
    result = queue.get()
    child.join()
    sampler.stop()
    result["process_seconds"] = time.perf_counter() - started
    result["tree_pss_kb"], result["tree_pss_own_kb"] = sampler.peak_kb, sampler.peak_own_kb
    if child.exitcode:
        raise SystemExit(f"triage process failed with exit code {child.exitcode}")
    return result


def _train_child(home_root: str) -> None:
    from pipeline.model.train import train_and_register

    train_and_register(resolve_home(home_root).ensure(), CORPUS_PATH, seed=0)


def ensure_model(home_arg: str | None, scratch: Path) -> tuple[Home, float | None]:
    """The home to use: ``--home`` if given, else a temporary one with a model trained in a
    child process (so that this process stays small for the memory measurement)."""
    if home_arg:
        home = resolve_home(home_arg)
        if not (home.models / "registry.json").is_file():
            raise SystemExit(f"{home.root} has no model; leave out --home to train one")
        return home, None
    home = resolve_home(scratch / "home")
    return home, train_in_child(home)


def train_in_child(home: Home) -> float:
    """Train the default model into ``home`` in a spawned child process (so that the calling
    process stays small for memory measurements); seconds taken."""
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=_train_child, args=(str(home.root),))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"training failed with exit code {child.exitcode}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="clues in the generated file (default 100,000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the CPUs available)")
    parser.add_argument("--home", default=None, help="a home with a champion model (default: train one in a temporary home)")
    parser.add_argument("--jieba-sample", type=int, default=100_000,
                        help="clues timed with plain jieba.lcut (default: all, up to 100,000)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        scratch = Path(tmp)
        home, train_seconds = ensure_model(args.home, scratch)
        if train_seconds is not None:
            print(f"trained a model into a temporary home in {train_seconds:.1f} s", file=sys.stderr)
        src, out = scratch / "bench_clues.csv", scratch / "bench_clues.triaged.csv"
        started = time.perf_counter()
        build_csv(src, args.rows)
        print(f"built {args.rows:,} clues ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        result = run_triage(home, src, out, args.workers)  # first, while this process is small
        jieba_per_s, jieba_n, jieba_cpu = jieba_rate(args.rows, args.jieba_sample)

    triage_per_s = result["rows"] / result["seconds"]
    ratio = triage_per_s / jieba_per_s
    triage_cpu = result["cpu_seconds"] / result["rows"]
    # on a machine shared with other jobs, wall-clock rates depend on how much of the CPU each
    # phase got; CPU time per clue does not: the ratio the same cores would give if the run
    # had them to itself (all ``cpus`` busy, as the workers keep them)
    cpu_ratio = result["cpus"] * jieba_cpu / triage_cpu
    mb = 1024
    lines = [
        ("cores available / workers", f"{result['cpus']} / {result['workers']}"),
        ("clues", f"{result['rows']:,}"),
        (f"plain jieba.lcut, 1 process ({jieba_n:,} clues)", f"{jieba_per_s:,.0f} clues/s"),
        ("triage end to end", f"{triage_per_s:,.0f} clues/s ({result['seconds']:.1f} s)"),
        ("ratio triage / jieba.lcut", f"{ratio:.2f}x (target >= {TARGET_RATIO:.0f}x)"),
        ("CPU per clue: triage (all processes) / jieba", f"{triage_cpu * 1e6:,.0f} / {jieba_cpu * 1e6:,.0f} us"),
        (f"ratio from CPU time ({result['cpus']} cores busy)", f"{cpu_ratio:.2f}x"),
        ("model load (Registry.load)", f"{result['load_seconds']:.2f} s (target < {TARGET_LOAD_SECONDS:.0f} s)"),
        ("peak RSS, triage process (RUSAGE_SELF)", f"{result['rss_self_kb'] / mb:,.0f} MB"),
        ("peak RSS, largest worker (RUSAGE_CHILDREN)", f"{result['rss_children_kb'] / mb:,.0f} MB"),
        ("peak PSS, whole process tree", f"{result['tree_pss_kb'] / mb:,.0f} MB (target < {TARGET_RSS_MB} MB)"),
        ("  of which triage process / workers", f"{result['tree_pss_own_kb'] / mb:,.0f} / "
                                                f"{(result['tree_pss_kb'] - result['tree_pss_own_kb']) / mb:,.0f} MB"),
        ("statuses", ", ".join(f"{k} {v:,}" for k, v in sorted(result["statuses"].items()))),
    ]
    width = max(len(k) for k, _ in lines)
    print(f"triage benchmark ({args.rows:,} clues)")
    for key, value in lines:
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
