"""Evaluation reports: a Markdown file and confusion-matrix PNGs with Chinese labels.

Chinese labels need a CJK font; matplotlib's default DejaVu Sans draws boxes. The font
comes from the ``mplfonts`` package (Noto Sans CJK SC, shipped inside the wheel, so no
download at run time), else from any CJK font the system has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fsutil import atomic_path, write_text_atomic
from ..labels import SHORT_NAMES
from .evaluate import Evaluation, HeadMetrics

_CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei")


def cjk_font() -> str | None:
    """Register and return a CJK font family name for matplotlib, or None if there is none."""
    from matplotlib import font_manager

    try:
        import mplfonts

        for path in sorted((Path(mplfonts.__file__).parent / "fonts").glob("NotoSansCJK*Regular.otf")):
            font_manager.fontManager.addfont(str(path))
    except ImportError:
        pass
    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((family for family in _CJK_FAMILIES if family in names), None)


def chinese_pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, with a CJK font first when one is installed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = cjk_font()
    if family:
        plt.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False
    return plt


def save_png(fig: Any, target: Path) -> Path:
    """Lay the figure out and write it as a PNG, atomically (the caller closes it)."""
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def confusion_png(metrics: HeadMetrics, target: Path, title: str) -> Path:
    """Draw one head's confusion matrix with Chinese class names."""
    plt = chinese_pyplot()
    names = [SHORT_NAMES[label] for label in metrics.labels]
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    try:
        matrix = metrics.confusion
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("预测 predicted")
        ax.set_ylabel("人工标注 true")
        ax.set_title(title)
        peak = max(max(row) for row in matrix) or 1
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                ax.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
        return save_png(fig, target)
    finally:
        plt.close(fig)


def _head_table(m: HeadMetrics) -> list[str]:
    if m.n == 0:
        return [f"**{m.head}**: no clue to score (nobody decided this head)", ""]
    lines = [
        f"**{m.head}**: accuracy {m.accuracy:.3f}, macro-F1 {m.macro_f1:.3f}"
        + (f", expected calibration error {m.ece:.3f}" if m.ece is not None else "")
        + f" (n = {m.n})",
        "",
        "| label | name | precision | recall | F1 | support |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, c in m.per_class.items():
        lines.append(f"| {label} | {SHORT_NAMES[label]} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted):", ""]
    lines.append("| | " + " | ".join(m.labels) + " |")
    lines.append("|---|" + "---:|" * len(m.labels))
    for label, row in zip(m.labels, m.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    return lines + [""]


def comparison_rows(model: Evaluation, baselines: list[Evaluation]) -> list[list[str]]:
    """Rows (predictor, attention macro-F1, area macro-F1, further recall) for tables."""
    rows = []
    for ev in [model, *baselines]:
        s = ev.summary()
        f1 = [f"{s[f'{h}_macro_f1']:.3f}" if ev.heads[h].n else "-" for h in ("attention", "area")]
        rows.append([ev.name, *f1, f"{s['further_recall']:.3f}" if "further_recall" in s else "-"])
    return rows


def write_report(model: Evaluation, baselines: list[Evaluation], folder: Path, stem: str) -> list[Path]:
    """Write ``stem.md`` and one PNG per head into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [f"# Evaluation: {model.name} on {model.data}", "", "| predictor | attention macro-F1 | area macro-F1 | further recall |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in comparison_rows(model, baselines)]
    lines.append("")
    if model.by_script:
        lines += ["By script:", "", "| script | n | attention macro-F1 | area macro-F1 |", "|---|---:|---:|---:|"]
        for script, scores in model.by_script.items():
            lines.append(f"| {script} | {int(scores['n'])} | {scores['attention']:.3f} | {scores['area']:.3f} |")
        lines.append("")
    for head, m in model.heads.items():
        lines += _head_table(m)
        if m.n == 0:
            continue
        png = confusion_png(m, folder / f"{stem}-{head}-confusion.png", f"{head} · {model.data}")
        lines += [f"![{head} confusion matrix]({png.name})", ""]
        written.append(png)
    md = folder / f"{stem}.md"
    write_text_atomic(md, "\n".join(lines))
    return [md, *written]


@dataclass
class EvaluationOutcome:
    evaluation: Evaluation
    baselines: list[Evaluation]
    paths: list[Any]
    note: str = ""  # what was left out of the scored clues, and why


def evaluate_and_report(home: Any, *, split: str = "test", data: Any = None, version: str | None = None) -> EvaluationOutcome:
    """Evaluate a registered model on a corpus split (or a labeled file) and write a report."""
    from ..errors import InputError
    from .corpus import SPLITS, load_corpus
    from .corpus import split as pick
    from .evaluate import evaluate_model
    from .registry import Registry, now

    loaded = Registry(home.models).load(version)
    corpus = load_corpus()
    if data is not None:
        clues, data_name = load_corpus(data), str(data)
    else:
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")
        clues, data_name = pick(corpus, split), f"corpus {split} split"
        if split in ("train", "dev"):
            data_name += " (the model was fitted on it: not a fair score)"
    ev, baselines = evaluate_model(loaded.model, clues, data_name, f"model {loaded.version}", pick(corpus, "train"))
    stem = f"evaluate-{loaded.version}-{split if data is None else 'file'}-{now().replace(':', '')}"
    paths = write_report(ev, baselines, home.reports, stem)
    return EvaluationOutcome(ev, baselines, paths)


def evaluate_reviewed(home: Any, *, version: str | None = None, since: str | None = None,
                      run: int | None = None) -> EvaluationOutcome:
    """Score a registered model (default: the champion) on reviewed clues it was not trained
    on, against the same baselines, and write the same report and charts as a corpus split.

    Not trained on: no override up to the model's ``data.overrides_max_id`` on any clue with
    the same text, and not a corpus ``train``/``dev`` text (see
    :func:`pipeline.model.retrain.trained_on`). Each head is scored on the clues where a
    person decided it (a head left standing is an older model's guess). ``since`` (a date,
    ``YYYY-MM-DD``, UTC) keeps clues whose latest decision is on or after it; ``run`` keeps
    clues of one triage run.
    """
    from datetime import date

    from ..errors import InputError
    from ..intake.rounds import check_run
    from ..labels import HEADS
    from ..review.review import reviewed_examples
    from ..store.store import connect
    from ..text.features import prepare
    from ..text.normalize import normalize
    from .baseline import keyword_predict
    from .corpus import load_corpus
    from .corpus import split as pick
    from .evaluate import evaluate_decided, majority_baseline
    from .registry import Registry, now
    from .retrain import one_per_text, trained_on

    if since is not None:
        try:
            date.fromisoformat(since)
        except ValueError:
            raise InputError(f"--since {since!r} is not a date (YYYY-MM-DD)") from None
    loaded = Registry(home.models).load(version)
    corpus = load_corpus()
    db = connect(home.db_path, create=False)
    try:
        db.execute("BEGIN")  # one snapshot: the clues and the overrides that say what was trained on
        reviewed = reviewed_examples(db)
        seen = trained_on(loaded.manifest, db, corpus)
        if run is not None:
            check_run(db, run)
            in_run = {r[0] for r in db.execute("SELECT clue_key FROM predictions WHERE run_id = ?", (run,))}
            reviewed = [r for r in reviewed if r.clue_key in in_run]
    finally:
        db.execute("ROLLBACK")
        db.close()
    if since is not None:
        reviewed = [r for r in reviewed if r.last_decided[:10] >= since]
    unique, conflicts = one_per_text(reviewed)
    clues = [r for r in unique if normalize(r.text) not in seen]
    scope = (f" reviewed since {since}" if since else "") + (f" of run {run}" if run is not None else "")
    note = (f"{len(unique):,} reviewed clue(s){scope}; left out: {len(unique) - len(clues):,} that model "
            f"{loaded.version} was or may have been trained on (reviewed up to override "
            f"#{int(loaded.manifest.get('data', {}).get('overrides_max_id', 0) or 0)}, or a corpus text)"
            + (f", {conflicts:,} copies of one text labelled differently" if conflicts else ""))
    if not clues:
        raise InputError(f"no reviewed clue{scope} that model {loaded.version} was not trained on: {note}")
    truth = {h: [getattr(r, h) for r in clues] for h in HEADS}
    decided = [r.decided for r in clues]
    docs = prepare([r.text for r in clues])
    result = loaded.model.predict(docs)
    data_name = f"{len(clues):,} reviewed clues{scope} it was not trained on"
    ev = evaluate_decided(f"model {loaded.version}", data_name, truth, {h: result[h].labels for h in HEADS}, decided,
                          {h: result[h].confidence for h in HEADS})
    majority = majority_baseline({h: [c.label(h) for c in pick(corpus, "train")] for h in HEADS}, len(clues))
    baselines = [evaluate_decided("majority class", data_name, truth, majority, decided),
                 evaluate_decided("keyword rules", data_name, truth, keyword_predict(docs), decided)]
    stem = f"evaluate-{loaded.version}-reviewed-{now().replace(':', '')}"
    paths = write_report(ev, baselines, home.reports, stem)
    return EvaluationOutcome(ev, baselines, paths, note)
