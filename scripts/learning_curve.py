"""Learning curve: does reviewing clues of an unseen register teach the model that register?

For each register R: the champion is trained (the whole protocol) on the corpus without R;
R is split by source page into an evaluation part (30 %, never offered for review; fixed
per seed, so every k of a seed is scored on the same clues) and a pool, triaged into a
fresh home's store. Reviewers then decide k = 0, 25, 50, 100, 200 clues of the pool with
their true labels through the review API, picked in the order of ``review next`` (most
uncertain first) and in a random order of the same queue, and after each k a model
trained on corpus + reviewed clues scores the evaluation part (attention and area
macro-F1, ``further`` recall). A k larger than the pool is left out ("—"). See
``pipeline/model/learning.py``.

Cost, measured on 2 shared cores: the champion's whole protocol ~25 s per register; a
curve point is by default a *plain* fit (the members refitted on corpus + reviewed clues
with the champion's calibration, ~3.5 s) rather than the whole protocol (``--full``,
~25 s). Default (13 registers × 5 seeds × 2 orders × up to 4 k's): about 2.5 minutes per
register, half an hour in all; ``--full`` about 8 times that.

``--replot var/reports/learning_curve.csv`` rewrites the tables and charts from a run's points.
``--gate 25,100`` instead runs the real ``retrain`` (whatever its gate is) after k clues
reviewed in queue order, for each register given (seed 0), and prints the gate's decision.

Outputs in --out (default var/reports/): learning_curve.csv (every point),
learning_curve.md (tables, mean ± sd over seeds), learning_curve_<register>.png.

Usage: nice -n 10 .venv/bin/python scripts/learning_curve.py --registers audit_finding,media_report \
           [--seeds 0,1,2,3,4] [--ks 0,25,50,100,200] [--full] [--out var/reports]
       .venv/bin/python scripts/learning_curve.py --registers inspection_case --gate 25,100
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.model.corpus import REGISTERS  # noqa: E402
from pipeline.model.learning import (  # noqa: E402
    DEFAULT_KS,
    DEFAULT_SEEDS,
    EVAL_SHARE,
    Point,
    champion_home,
    curve,
    curve_png,
    gate_run,
    overview_table,
    register_table,
    summarize,
)
from pipeline.paths import CORPUS_PATH, resolve_home  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _gate(args: argparse.Namespace, registers: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="gate-") as tmp:
        for register in registers:
            champion, _ = champion_home(Path(tmp) / f"{register}-champion", args.corpus, register)
            for k in _ints(args.gate):  # each k against that same champion, in a home of its own
                run = gate_run(Path(tmp) / f"{register}-k{k}", args.corpus, register, k, eval_share=args.eval_share,
                               champion_models=champion.models)
                o = run.outcome
                print(f"\n{register}, k = {k}: {o.status} ({o.message}); evaluation part (n = {run.n_eval}) "
                      f"attention {run.champion['attention']:.3f} → {run.challenger['attention']:.3f} "
                      f"({run.gain:+.3f}), area {run.champion['area']:.3f} → {run.challenger['area']:.3f}")
                for c in o.comparisons:
                    print(f"  {c.data} (n = {c.n}){': ' + c.note if c.note else ''}")
                    for name, (diff, lo, hi) in c.intervals.items():
                        print(f"    {name}: {c.champion[name]:.3f} → {c.challenger[name]:.3f}, difference "
                              f"{diff:+.3f} (95 % interval {lo:+.3f} to {hi:+.3f})")
                    for failure in c.failures:
                        print(f"    FAIL {failure}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registers", default=",".join(REGISTERS))
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    parser.add_argument("--ks", default=",".join(map(str, DEFAULT_KS)))
    parser.add_argument("--eval-share", type=float, default=EVAL_SHARE)
    parser.add_argument("--full", action="store_true", help="train every point with the whole protocol")
    parser.add_argument("--corpus", type=Path, default=CORPUS_PATH)
    parser.add_argument("--out", type=Path, default=resolve_home(None).reports)
    parser.add_argument("--gate", default="", help="e.g. 25,100: run the real retrain after k reviewed clues")
    parser.add_argument("--replot", type=Path, help="rewrite tables and charts from a learning_curve.csv")
    args = parser.parse_args(argv)
    registers = [r for r in args.registers.split(",") if r]
    if args.replot:
        with open(args.replot, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        types = {f.name: f.type for f in fields(Point)}
        args.out.mkdir(parents=True, exist_ok=True)
        _write(args, [Point(**{k: {"int": int, "float": float}.get(str(types[k]), str)(v) for k, v in r.items()})
                      for r in rows])
        return
    if args.gate:
        _gate(args, registers)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    start = time.time()

    def progress(p: Point) -> None:
        print(f"{time.time() - start:7.0f}s {p.register} {p.order} seed {p.seed} k {p.k} (reviewed {p.reviewed}): "
              f"attention {p.attention:.3f} area {p.area:.3f} further {p.further_recall:.3f}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="curve-") as tmp:
        for register in registers:
            points += curve(args.corpus, register, Path(tmp) / register, seeds=_ints(args.seeds), ks=_ints(args.ks),
                            eval_share=args.eval_share, fit="full" if args.full else "plain", progress=progress)
            _write(args, points)
    print(f"done in {time.time() - start:.0f}s; tables in {args.out / 'learning_curve.md'}", file=sys.stderr)


def _write(args: argparse.Namespace, points: list[Point]) -> None:
    """Rewrite every output from the points so far (a long run leaves usable results)."""
    with open(args.out / "learning_curve.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        writer.writerows(asdict(p) for p in points)
    summary = summarize(points)
    registers = list(dict.fromkeys(p.register for p in points))
    fit = "whole protocol" if args.full else "plain fit with the champion's calibration"
    lines = [f"Learning curves ({fit}; seeds {args.seeds}; evaluation share {args.eval_share}); "
             "mean ± sd over seeds.", "", "Gain in attention macro-F1 over the champion (k = 0), same seed:", "",
             *overview_table(summary)]
    for register in registers:
        lines += ["", f"### {register}", "", *register_table(summary, register)]
        curve_png(summary, register, args.out / f"learning_curve_{register}.png")
    (args.out / "learning_curve.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
