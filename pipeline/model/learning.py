"""Learning curves: does reviewing clues of a new kind of text teach the model that kind?

The reviewer loop simulated on the corpus (issue 12). One register is held out of the
corpus; the champion is trained on the other registers (``train`` + ``dev``, as ``retrain``
would). The held-out register is split, by source page so that no page is on both sides,
into an **evaluation part** (a share of its clues, fixed per seed, never offered for
review) and a **pool** that is triaged into a home's store like real intake. Reviewers then
decide ``k`` clues of the pool with their true corpus labels, through the real review API
(:func:`pipeline.review.review.record_decision`; a decision on a repeat group's clue labels
the whole group, as ``review next`` does), picked

- ``queue``: in the order ``clue-triage review next`` presents them
  (:func:`pipeline.review.assignments.review_queue`: most uncertain first, one per repeat group);
- ``random``: in a random order (the seed's) of that same queue.

After each ``k`` a model is trained on the corpus plus the reviewed clues
(:func:`pipeline.review.review.reviewed_examples`, weighted as retraining weighs them) and
scored on the evaluation part: attention and area macro-F1 and ``further`` recall.

Two ways to train a point (``fit``):

- ``"plain"``: the members refitted on corpus + reviewed clues, with the champion's
  calibration (stackers and ``further`` threshold) attached. One member fit (~3 s on the
  full corpus) instead of the whole protocol; ``k = 0`` is exactly the champion.
- ``"full"``: :func:`pipeline.model.train.fit_and_calibrate` (calibration on
  out-of-register predictions, reviewed clues a register of their own), ~8× the cost.

:func:`gate_run` goes through the real ``retrain`` (whatever its gate is) for one ``k``.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from ..labels import HEADS
from ..paths import Home, resolve_home
from ..review.assignments import review_queue
from ..review.review import (
    ReviewedClue,
    add_reviewer,
    record_decision,
    reviewed_examples,
)
from ..store.store import connect
from ..text.features import prepare
from .corpus import Clue, load_corpus, split
from .model import TwoHeadModel
from .registry import Registry
from .retrain import RetrainOutcome, retrain
from .train import (
    REVIEWED_GROUP,
    Example,
    examples_from,
    fit_and_calibrate,
    review_weights,
    train_and_register,
)

ORDERS = ("queue", "random")
DEFAULT_KS = (0, 25, 50, 100, 200)
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
#: Share of a register's clues (whole source pages) kept for evaluation, never reviewed.
EVAL_SHARE = 0.30
REVIEWER = "curve"
METRICS = ("attention", "area", "further_recall")


@dataclass(frozen=True)
class RegisterSplit:
    """One register's clues for one seed: the pool reviewers may pick from, and the
    evaluation part nobody reviews."""

    register: str
    seed: int
    pool: list[Clue]
    evaluation: list[Clue]


def split_register(corpus: Sequence[Clue], register: str, seed: int, eval_share: float = EVAL_SHARE) -> RegisterSplit:
    """Split a register (every split of it) by source page: pages in a seeded random order
    go to the evaluation part until it holds ``eval_share`` of the clues; the rest is the pool.
    A clue without a source page is a page of its own."""
    clues = [c for c in corpus if c.register == register]
    if not clues:
        raise ValueError(f"the corpus has no clue of register {register!r}")
    pages: dict[str, list[Clue]] = {}
    for c in clues:
        pages.setdefault(c.source_url or c.id, []).append(c)
    order = np.random.default_rng(seed).permutation(sorted(pages))
    evaluation: list[Clue] = []
    for page in order:
        if len(evaluation) >= eval_share * len(clues):
            break
        evaluation += pages[str(page)]
    chosen = {c.id for c in evaluation}
    return RegisterSplit(register, seed, [c for c in clues if c.id not in chosen], evaluation)


def write_corpus_without(source: Path, register: str, target: Path) -> Path:
    """Copy a corpus file without the clues of ``register`` (lines kept as they are)."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line).get("register") != register]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def score(model: TwoHeadModel, clues: Sequence[Clue]) -> dict[str, float]:
    """Attention and area macro-F1 (over the classes present) and ``further`` recall."""
    result = model.predict(prepare([c.text for c in clues]))
    row = {}
    for h in HEADS:
        y = [c.label(h) for c in clues]
        row[h] = float(f1_score(y, result[h].labels, labels=sorted(set(y)), average="macro", zero_division=0))
    further = [i for i, c in enumerate(clues) if c.attention == "further"]
    row["further_recall"] = (float(np.mean([result["attention"].labels[i] == "further" for i in further]))
                             if further else float("nan"))
    return row


def triage_pool(home: Home, pool: Sequence[Clue]) -> int:
    """Triage the pool into the home's store with its champion, like an intake file (one
    row per clue: corpus id, unit, text); return the run id."""
    from ..intake.triage import triage_file

    folder = home.var / "learning"
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "pool.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        for c in pool:
            writer.writerow([c.id, c.unit, c.text])
    return triage_file(home, source, folder / "pool.triaged.csv", workers=1).run_id


def picks(home: Home, run: int, order: str, seed: int) -> list[str]:
    """Clue keys of the run in the order they will be reviewed: the review queue's order
    (``review next``), or a seeded random order of the same queue."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}")
    db = connect(home.db_path)
    try:
        add_reviewer(db, REVIEWER, "学习曲线")
        queue = [s.clue_key for s in review_queue(db, REVIEWER, run)]
    finally:
        db.close()
    if order == "random":
        queue = [queue[i] for i in np.random.default_rng(seed).permutation(len(queue))]
    return queue


def review(home: Home, keys: Sequence[str], truth: dict[str, Clue], run: int) -> list[ReviewedClue]:
    """Decide each clue with its true corpus labels (both heads, channel ``terminal``, as
    ``review next`` records them); return every reviewed clue of the store."""
    db = connect(home.db_path)
    try:
        for key in keys:
            clue_id = db.execute("SELECT clue_id FROM predictions WHERE clue_key = ? AND run_id = ?",
                                 (key, run)).fetchone()[0]
            c = truth[clue_id]
            record_decision(db, key, REVIEWER, {"attention": c.attention, "area": c.area}, channel="terminal", run=run)
        return reviewed_examples(db)
    finally:
        db.close()


def as_examples(reviewed: Sequence[ReviewedClue]) -> list[Example]:
    """Reviewed clues as training examples, as ``retrain`` builds them."""
    return [Example(r.text, r.attention, r.area, "review", r.decided, REVIEWED_GROUP) for r in reviewed]


def plain_fit(champion: TwoHeadModel, examples: Sequence[Example]) -> TwoHeadModel:
    """The champion's members refitted on ``examples`` (reviewed ones weighted as in
    training), with the champion's calibration: stackers and ``further`` threshold."""
    model = TwoHeadModel(champion.config, champion.seed, further_threshold=champion.further_threshold)
    model.fit(prepare([e.text for e in examples]), {h: [e.label(h) for e in examples] for h in HEADS},
              review_weights(examples))
    for h in HEADS:
        if model.heads_[h].classes != champion.heads_[h].classes:
            raise ValueError(f"{h}: the refit knows classes {model.heads_[h].classes}, the champion "
                             f"{champion.heads_[h].classes}")
        model.heads_[h].stack_w, model.heads_[h].stack_b = champion.heads_[h].stack_w, champion.heads_[h].stack_b
    model.review_thresholds, model.familiarity_floor = champion.review_thresholds, champion.familiarity_floor
    return model


@dataclass(frozen=True)
class Point:
    """One point of a curve: ``k`` clues picked in ``order`` (``reviewed``: clues the store
    counts as reviewed, repeat-group members included), scored on ``n_eval`` clues."""

    register: str
    order: str
    seed: int
    k: int
    reviewed: int
    n_eval: int
    attention: float
    area: float
    further_recall: float


def _fresh_home(root: Path, champion_models: Path) -> Home:
    if root.exists():
        shutil.rmtree(root)
    home = resolve_home(root).ensure()
    shutil.copytree(champion_models, home.models, dirs_exist_ok=True)
    return home


def champion_home(root: Path, corpus_path: Path, register: str, *, seed: int = 0) -> tuple[Home, Path]:
    """A home whose champion is trained (the whole protocol) on the corpus without
    ``register``; return it and the path of that corpus file."""
    home = resolve_home(root).ensure()
    without = write_corpus_without(corpus_path, register, root / f"corpus_without_{register}.jsonl")
    if Registry(home.models).champion() is None:
        train_and_register(home, without, seed=seed)
    return home, without


def curve(corpus_path: Path, register: str, workdir: Path, *, seeds: Sequence[int] = DEFAULT_SEEDS,
          ks: Sequence[int] = DEFAULT_KS, orders: Sequence[str] = ORDERS, eval_share: float = EVAL_SHARE,
          fit: str = "plain", progress: Callable[[Point], None] | None = None) -> list[Point]:
    """The learning curve of one register (see the module docstring). A ``k`` larger than
    the seed's queue is left out. ``workdir`` holds the homes (it may be reused: the
    champion is trained once)."""
    if fit not in ("plain", "full"):
        raise ValueError("fit must be 'plain' or 'full'")
    corpus = load_corpus(corpus_path)
    home, without = champion_home(workdir / "champion", corpus_path, register)
    champion = Registry(home.models).load().model
    base = examples_from(split(load_corpus(without), "train", "dev"))
    truth = {c.id: c for c in corpus if c.register == register}
    points = []
    for seed in seeds:
        parts = split_register(corpus, register, seed, eval_share)
        for order in orders:
            for point in _walk(workdir / f"s{seed}-{order}", home.models, parts, order, sorted(set(ks)), truth):
                k, reviewed = point
                if k == 0:
                    model = champion
                elif fit == "plain":
                    model = plain_fit(champion, [*base, *as_examples(reviewed)])
                else:
                    model = fit_and_calibrate([*base, *as_examples(reviewed)], seed=champion.seed).model
                row = score(model, parts.evaluation)
                done = Point(register, order, seed, k, len(reviewed), len(parts.evaluation), row["attention"],
                             row["area"], row["further_recall"])
                points.append(done)
                if progress is not None:
                    progress(done)
    return points


def _walk(root: Path, models: Path, parts: RegisterSplit, order: str, ks: Sequence[int],
          truth: dict[str, Clue]) -> Iterator[tuple[int, list[ReviewedClue]]]:
    """Triage the pool into a fresh home and review it ``k`` clues at a time: yield ``k``
    and the store's reviewed clues after each step."""
    home = _fresh_home(root, models)
    run = triage_pool(home, parts.pool)
    queue = picks(home, run, order, parts.seed)
    done: list[ReviewedClue] = []
    previous = 0
    for k in ks:
        if k > len(queue):
            break
        done = review(home, queue[previous:k], truth, run) if k > previous else done
        previous = k
        yield k, done


def summarize(points: Sequence[Point]) -> dict[tuple[str, str, int], dict[str, tuple[float, float, int]]]:
    """(register, order, k) -> metric -> (mean, sd, seeds) over seeds (sd 0 for one seed);
    also ``reviewed`` and ``gain`` (attention macro-F1 minus that seed's ``k = 0``)."""
    base = {(p.register, p.seed): p.attention for p in points if p.k == 0}
    groups: dict[tuple[str, str, int], list[Point]] = {}
    for p in points:
        groups.setdefault((p.register, p.order, p.k), []).append(p)
    out = {}
    for key, members in sorted(groups.items()):
        values = {m: [float(getattr(p, m)) for p in members] for m in (*METRICS, "reviewed", "n_eval")}
        values["gain"] = [p.attention - base[(p.register, p.seed)] for p in members if (p.register, p.seed) in base]
        out[key] = {m: (float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0, len(v))
                    for m, v in values.items() if v}
    return out


@dataclass
class GateRun:
    """A ``k``-clue review of a register through the real ``retrain``."""

    register: str
    k: int
    reviewed: int  # clues the store counts as reviewed (repeat-group members included)
    outcome: RetrainOutcome
    champion: dict[str, float]  # scores on the evaluation part
    challenger: dict[str, float]
    n_eval: int

    @property
    def gain(self) -> float:
        return self.challenger["attention"] - self.champion["attention"]


def gate_run(root: Path, corpus_path: Path, register: str, k: int, *, seed: int = 0,
             eval_share: float = EVAL_SHARE, champion_models: Path | None = None) -> GateRun:
    """Hold ``register`` out, train the champion on the rest (or copy ``champion_models``),
    triage the seed's pool, review its first ``k`` clues in queue order through the review
    API, run :func:`pipeline.model.retrain.retrain` on the corpus without the register and
    score both models on the evaluation part."""
    root.mkdir(parents=True, exist_ok=True)
    if champion_models is not None:
        _fresh_home(root, champion_models)
    home, without = champion_home(root, corpus_path, register, seed=0)
    registry = Registry(home.models)
    champion = registry.load()
    corpus = load_corpus(corpus_path)
    parts = split_register(corpus, register, seed, eval_share)
    run = triage_pool(home, parts.pool)
    queue = picks(home, run, "queue", seed)
    reviewed = review(home, queue[:k], {c.id: c for c in parts.pool}, run)
    outcome = retrain(home, corpus_path=without, seed=0)
    challenger = registry.load(outcome.version).model
    return GateRun(register, k, len(reviewed), outcome, score(champion.model, parts.evaluation), score(challenger, parts.evaluation),
                   len(parts.evaluation))


Summary = dict[tuple[str, str, int], dict[str, tuple[float, float, int]]]
_NAMES = {"attention": "关注类别 attention macro-F1", "gain": "关注类别提升 attention gain over k = 0",
          "area": "领域 area macro-F1", "further_recall": "进一步了解 further recall"}
_ORDER_NAMES = {"queue": "复核队列顺序 queue order", "random": "随机顺序 random order"}


def _cell(summary: Summary, key: tuple[str, str, int], metric: str) -> str:
    if key not in summary or metric not in summary[key]:
        return "—"
    mean, sd, n = summary[key][metric]
    return f"{mean:.3f}" if n < 2 else f"{mean:.3f} ± {sd:.3f}"


def register_table(summary: Summary, register: str) -> list[str]:
    """A Markdown table of one register: per ``k``, each metric in both orders (mean ± sd
    over seeds)."""
    ks = sorted({k for r, _, k in summary if r == register})
    orders = [o for o in ORDERS if any((register, o, k) in summary for k in ks)]
    head = ["k", *(f"{m} ({o})" for m in ("attention", "area", "further_recall") for o in orders), "reviewed",
            "eval n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for k in ks:
        first = next(summary[(register, o, k)] for o in orders if (register, o, k) in summary)
        cells = [str(k), *(_cell(summary, (register, o, k), m) for m in ("attention", "area", "further_recall")
                           for o in orders),
                 f"{first['reviewed'][0]:.0f}", f"{first['n_eval'][0]:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def overview_table(summary: Summary, k: int = 100) -> list[str]:
    """One row per register: the champion's attention macro-F1 and the gain after ``k``
    reviewed clues in each order (mean ± sd over seeds, and the smallest gain of a seed)."""
    registers = sorted({r for r, _, _ in summary}, key=lambda r: summary[(r, ORDERS[0], 0)]["attention"][0]
                        if (r, ORDERS[0], 0) in summary else 1.0)
    lines = [f"| register | attention, k = 0 | gain at k = {k}, queue | gain at k = {k}, random | area, k = 0 "
             f"| area at k = {k}, queue |", "|---|---:|---:|---:|---:|---:|"]
    for r in registers:
        lines.append(f"| {r} | {_cell(summary, (r, 'queue', 0), 'attention')} | "
                     f"{_cell(summary, (r, 'queue', k), 'gain')} | {_cell(summary, (r, 'random', k), 'gain')} | "
                     f"{_cell(summary, (r, 'queue', 0), 'area')} | {_cell(summary, (r, 'queue', k), 'area')} |")
    return lines


def curve_png(summary: Summary, register: str, target: Path) -> Path:
    """Four panels against ``k``: attention macro-F1, its gain over the same seed's ``k = 0``
    (the paired view: the evaluation part changes with the seed, the gain much less), area
    macro-F1 and ``further`` recall; one line per order with a band of ± one sd over seeds.
    The CJK font is set up as for the confusion matrices."""
    from .report import chinese_pyplot, save_png

    plt = chinese_pyplot()
    panels = ("attention", "gain", "area", "further_recall")
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 4.2), dpi=100)
    try:
        for ax, metric in zip(axes, panels, strict=True):
            for order, style in zip(ORDERS, ("-o", "--s"), strict=True):
                ks = sorted(k for r, o, k in summary if r == register and o == order and metric in summary[(r, o, k)])
                if not ks:
                    continue
                mean = np.array([summary[(register, order, k)][metric][0] for k in ks])
                sd = np.array([summary[(register, order, k)][metric][1] for k in ks])
                ax.plot(ks, mean, style, label=_ORDER_NAMES[order])
                low, high = (mean - sd, mean + sd) if metric == "gain" else (np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1))
                ax.fill_between(ks, low, high, alpha=0.15)
            ax.set_title(_NAMES[metric])
            ax.set_xlabel("已复核线索 k (clues reviewed)")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="lower right")
        seeds = max((v["attention"][2] for (r, _, _), v in summary.items() if r == register), default=0)
        fig.suptitle(f"{register}: 未参与训练的文体，复核 k 条后在其余线索上的得分（{seeds} 个种子，均值 ± 标准差）")
        return save_png(fig, target)
    finally:
        plt.close(fig)
