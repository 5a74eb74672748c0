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


def confusion_png(metrics: HeadMetrics, target: Path, title: str) -> Path:
    """Draw one head's confusion matrix with Chinese class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = cjk_font()
    names = [SHORT_NAMES[label] for label in metrics.labels]
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    try:
        if family:
            plt.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
            plt.rcParams["axes.unicode_minus"] = False
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
        fig.tight_layout()
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return target


def _head_table(m: HeadMetrics) -> list[str]:
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
        rows.append([ev.name, f"{s['attention_macro_f1']:.3f}", f"{s['area_macro_f1']:.3f}", f"{s.get('further_recall', 0):.3f}"])
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
