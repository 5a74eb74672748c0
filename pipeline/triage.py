"""Batch triage: every input row out, in order, with labels, confidence, terms and hand-over.

The work is split into batches of rows; with ``workers > 1`` each batch runs the whole
pipeline (normalise, segment, predict, explain) in a worker process and only results come
back: shipping token lists between processes would cost more than segmenting. At most a
few batches are in flight, so memory stays flat however large the input is.

Rows that cannot be classified get a status and a reason instead of labels:

========================  ==================================================
``ok``                    classified
``empty``                 no text in the text column
``no_text``               only punctuation, symbols or digits
``not_chinese``           no Chinese characters (e.g. English only)
``too_short``             fewer than 4 Chinese characters; classified, flagged
``too_long_truncated``    over 2,000 characters; classified on the first 2,000
========================  ==================================================
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .features import Prepared
from .fsutil import sha256_file
from .io import ClueFile, Row, TableWriter, open_clue_file
from .labels import display_name
from .model import TwoHeadModel
from .normalize import han_count, normalize
from .paths import Home
from .registry import LoadedModel, Registry
from .routing import Routing, load_routing
from .segment import current_segmenter, segment, set_segmenter
from .store import clue_key, connect, now, transaction, unit_key

MAX_CHARS = 2000
MIN_HAN = 4
BATCH_SIZE = 500
KEY_TERMS = 3
FURTHER_REVIEW_BELOW = 0.90
ADDED_COLUMNS = (
    "id", "attention", "attention_name", "attention_confidence", "area", "area_name", "area_confidence",
    "needs_review", "key_terms", "handover", "model_version", "status", "status_detail",
)


@dataclass
class Result:
    """What the classifier says about one row."""

    status: str
    detail: str = ""
    attention: str = ""
    attention_conf: float | None = None
    area: str = ""
    area_conf: float | None = None
    margin: float | None = None
    needs_review: bool = False
    terms: list[str] = field(default_factory=list)


# -- per batch (runs in workers) ------------------------------------------------------

_worker_model: TwoHeadModel | None = None


def _screen(text: str) -> tuple[str, str, str]:
    """(status, detail, text to classify) for one raw text."""
    norm = normalize(text)
    if not norm:
        return "empty", "no text in the text column", ""
    if not any(ch.isalpha() for ch in norm):
        return "no_text", "only punctuation, symbols or digits", ""
    han = han_count(norm)
    if han == 0:
        return "not_chinese", "no Chinese characters; not classified", ""
    if len(norm) > MAX_CHARS:
        return "too_long_truncated", f"{len(norm):,} characters; classified on the first {MAX_CHARS:,}", norm[:MAX_CHARS]
    if han < MIN_HAN:
        return "too_short", f"only {han} Chinese character(s); check the label", norm
    return "ok", "", norm


def classify_texts(model: TwoHeadModel, texts: Sequence[str]) -> list[Result]:
    """Screen, classify and explain a batch of raw texts (no I/O; the unit of parallel work)."""
    screened = [_screen(t) for t in texts]
    todo = [i for i, (status, _, _) in enumerate(screened) if status in ("ok", "too_short", "too_long_truncated")]
    docs = [Prepared(screened[i][2], tuple(segment(screened[i][2]))) for i in todo]
    results = [Result(status, detail) for status, detail, _ in screened]
    if not docs:
        return results
    predicted = model.predict(docs, explain=KEY_TERMS, originals=[texts[i] for i in todo])
    att, area = predicted["attention"], predicted["area"]
    thresholds = model.review_thresholds
    for j, i in enumerate(todo):
        r = results[i]
        r.attention, r.attention_conf = att.labels[j], float(att.confidence[j])
        r.area, r.area_conf = area.labels[j], float(area.confidence[j])
        r.margin = float(min(att.margin[j], area.margin[j]))
        r.terms = list(dict.fromkeys([*att.terms[j], *area.terms[j]]))
        r.needs_review = (
            r.status != "ok"
            or r.attention_conf < thresholds.get("attention", 1.0)
            or r.area_conf < thresholds.get("area", 1.0)
            or (r.attention == "further" and r.attention_conf < FURTHER_REVIEW_BELOW)
        )
    return results


def _init_worker(model: TwoHeadModel | None, segmenter: str) -> None:
    global _worker_model
    if model is not None:
        _worker_model = model
    set_segmenter(segmenter)


def _work(texts: list[str]) -> list[Result]:
    assert _worker_model is not None
    return classify_texts(_worker_model, texts)


# -- the run --------------------------------------------------------------------------


@dataclass
class TriageSummary:
    run_id: int
    input: Path
    output: Path
    encoding: str | None
    model_version: str
    rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)
    needs_review: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def default_output(path: Path) -> Path:
    return path.with_name(f"{path.stem}.triaged.csv")


def _batches(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _results_in_order(
    model: TwoHeadModel, batches: Iterator[list[Row]], text_col: str, workers: int
) -> Iterator[tuple[list[Row], list[Result]]]:
    if workers <= 1:
        for batch in batches:
            yield batch, classify_texts(model, [r.values.get(text_col, "") for r in batch])
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    # with fork the model is inherited from this process; with spawn it is pickled once per worker
    global _worker_model
    _worker_model = model
    init_args = (None if method == "fork" else model, current_segmenter())
    with ctx.Pool(workers, initializer=_init_worker, initargs=init_args) as pool:
        window: deque[tuple[list[Row], Any]] = deque()
        for batch in batches:
            window.append((batch, pool.apply_async(_work, ([r.values.get(text_col, "") for r in batch],))))
            if len(window) >= 2 * workers:
                done_batch, pending = window.popleft()
                yield done_batch, pending.get()
        while window:
            done_batch, pending = window.popleft()
            yield done_batch, pending.get()


def triage_file(
    home: Home,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str] | None = None,
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    unit_col: str | None = None,
    workers: int | None = None,
    version: str | None = None,
    routing: Routing | None = None,
    progress: Callable[[int], None] | None = None,
) -> TriageSummary:
    """Triage a clue file into an output file and record the run in the store.

    Every input row appears exactly once in the output, in input order. The output is
    written to a temporary file and renamed at the end; if anything fails, no output file
    is left and the run is marked failed in the store with its predictions removed.
    """
    started = time.perf_counter()
    cf = open_clue_file(input_path, text_col=text_col, id_col=id_col, unit_col=unit_col)
    output = Path(output_path) if output_path else default_output(cf.path)
    if output.resolve() == cf.path.resolve():
        raise InputError("output would overwrite the input; choose another -o", path=output)
    loaded: LoadedModel = Registry(home.models).load(version)
    routing = routing or load_routing()
    workers = max(1, workers or os.cpu_count() or 1)
    db = connect(home.db_path)
    with transaction(db):
        run_id = int(
            db.execute(
                "INSERT INTO runs (started, status, model_version, input_path, input_sha256) VALUES (?, 'running', ?, ?, ?)",
                (now(), loaded.version, str(cf.path), sha256_file(cf.path)),
            ).lastrowid or 0
        )
    summary = TriageSummary(run_id, cf.path, output, cf.encoding, loaded.version)
    columns = list(cf.columns)
    clashes = {c for c in ADDED_COLUMNS if c in columns and not (c == "id" and cf.id_col == "id")}
    added = [f"triage_{c}" if c in clashes else c for c in ADDED_COLUMNS if not (c == "id" and cf.id_col == "id")]
    try:
        with TableWriter(output, columns + added) as writer:
            for batch, results in _results_in_order(loaded.model, _batches(cf.rows(), BATCH_SIZE), cf.text_col, workers):
                records = [_record(cf, row, res, loaded.version, routing) for row, res in zip(batch, results, strict=True)]
                for row, rec in zip(batch, records, strict=True):
                    out_row = dict(row.values)
                    out_row.update({(f"triage_{k}" if k in clashes else k): v for k, v in rec.items() if k in ADDED_COLUMNS})
                    writer.write(out_row)
                _store_batch(db, run_id, cf, batch, records)
                _tally(summary, records)
                if progress:
                    progress(len(batch))
        summary.seconds = time.perf_counter() - started
        with transaction(db):
            db.execute(
                "UPDATE runs SET status = 'complete', finished = ?, row_count = ? WHERE run_id = ?",
                (now(), summary.rows, run_id),
            )
    except BaseException:
        with transaction(db):
            db.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
            db.execute("UPDATE runs SET status = 'failed', finished = ? WHERE run_id = ?", (now(), run_id))
        raise
    finally:
        db.close()
    return summary


def _record(cf: ClueFile, row: Row, res: Result, version: str, routing: Routing) -> dict[str, Any]:
    clue_id = (row.values.get(cf.id_col, "") if cf.id_col else "").strip() or str(row.number)
    classified = bool(res.attention)
    return {
        "id": clue_id,
        "attention": res.attention,
        "attention_name": display_name(res.attention) if classified else "",
        "attention_confidence": round(res.attention_conf, 4) if res.attention_conf is not None else "",
        "area": res.area,
        "area_name": display_name(res.area) if classified else "",
        "area_confidence": round(res.area_conf, 4) if res.area_conf is not None else "",
        "needs_review": "yes" if res.needs_review else "no",
        "key_terms": "、".join(res.terms),
        "handover": routing.handover(res.attention, res.area) if classified else "",
        "model_version": version,
        "status": res.status,
        "status_detail": res.detail,
        "_unit": (row.values.get(cf.unit_col, "") if cf.unit_col else "").strip(),
        "_text": row.values.get(cf.text_col, ""),
        "_margin": res.margin,
        "_review": res.needs_review,
        "_attention_conf": res.attention_conf,
        "_area_conf": res.area_conf,
    }


def _store_batch(db: Any, run_id: int, cf: ClueFile, batch: list[Row], records: list[dict[str, Any]]) -> None:
    with transaction(db):
        clue_rows, pred_rows = [], []
        for row, rec in zip(batch, records, strict=True):
            key = None
            if rec["attention"]:
                key = clue_key(rec["_unit"], rec["_text"])
                clue_rows.append((key, rec["id"], rec["_unit"], unit_key(rec["_unit"]), rec["_text"], run_id))
            pred_rows.append(
                (run_id, row.number, key, rec["id"], rec["status"], rec["attention"] or None, rec["_attention_conf"],
                 rec["area"] or None, rec["_area_conf"], rec["_margin"], int(rec["_review"]), rec["key_terms"],
                 rec["handover"], rec["model_version"])
            )
        db.executemany("INSERT OR IGNORE INTO clues VALUES (?, ?, ?, ?, ?, ?)", clue_rows)
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", pred_rows)


def _tally(summary: TriageSummary, records: list[dict[str, Any]]) -> None:
    for rec in records:
        summary.rows += 1
        summary.statuses[rec["status"]] += 1
        if rec["attention"]:
            summary.cells[(rec["attention"], rec["area"])] += 1
        if rec["_review"]:
            summary.needs_review += 1
