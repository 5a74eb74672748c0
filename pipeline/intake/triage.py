"""Batch triage: every input row out, in order, with labels, confidence, terms and hand-over.

The work is split into batches of rows; with ``workers > 1`` each batch runs the whole
pipeline (normalise, segment, predict, explain) in a worker process and only results come
back: shipping token lists between processes would cost more than segmenting. At most
``IN_FLIGHT_PER_WORKER`` batches per worker are in flight, so memory stays flat however
large the input is.

Rows that cannot be classified get a status and a reason instead of labels:

========================  ==================================================
``ok``                    classified
``empty``                 no text in the text column
``no_text``               only punctuation, symbols or digits
``not_chinese``           no Chinese characters (e.g. English only)
``too_short``             fewer than 4 Chinese characters; classified, flagged
``too_long_truncated``    over 2,000 characters; classified on the first 2,000
``garbled``               mojibake (e.g. UTF-8 read as GBK): mostly rare characters
``error``                 the model failed on this text; the reason is given
========================  ==================================================

A run that is interrupted (Ctrl-C, SIGTERM) or dies (kill -9) leaves no output and no
worker behind: workers die with the parent (``PR_SET_PDEATHSIG``), and the next start
marks a run left ``running`` by a dead process ``interrupted`` and removes its temporary
files (:func:`store.reap_dead_runs`).

Call :func:`triage_file`; it returns a :class:`TriageSummary` and never prints.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClueTriageError, InputError
from ..fsutil import sha256_file
from ..labels import display_name
from ..model.flags import has_alarm, needs_review
from ..model.model import TwoHeadModel
from ..model.registry import LoadedModel, Registry
from ..paths import Home
from ..store.store import (
    clue_key,
    connect,
    discard_run,
    key_of_normalized,
    now,
    process_token,
    rows_in,
    store_error,
    transaction,
)
from ..text.features import prepare_one
from ..text.normalize import fold, han_count, looks_garbled, normalize, to_simplified
from ..text.segment import current_segmenter, set_segmenter
from . import repeats
from .io import (
    EXCEL_CELL_LIMIT,
    EXCEL_MAX_ROWS,
    UNIT_COLUMNS,
    ClueFile,
    Row,
    TableWriter,
    check_header_style,
    check_output_folder,
    open_clue_file,
    output_format,
)
from .repeats import (
    Clue,
    Grouper,
    Placed,
    canonicals_of_normalized,
    signatures,
    text_hash,
)
from .rounds import round_for_triage
from .routing import Routing, load_routing
from .units import Directory, Resolution, load_directory

MAX_CHARS = 2000
MIN_HAN = 4
BATCH_SIZE = 500
STORE_EVERY = 5000  # rows per store transaction
IN_FLIGHT_PER_WORKER = 2
KEY_TERMS = 3
CLASSIFIED = ("ok", "too_short", "too_long_truncated")
#: fork shares the loaded model and dictionary with the workers for free; safe on Linux only
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"
ADDED_COLUMNS = (
    "id", "attention", "attention_name", "attention_confidence", "area", "area_name", "area_confidence",
    "needs_review", "familiarity", "key_terms", "handover", "model_version", "status", "status_detail",
    "group_id", "repeat_of",
)
DETAIL_AT, GROUP_AT = ADDED_COLUMNS.index("status_detail"), ADDED_COLUMNS.index("group_id")  # in a row's fields
NEEDS_AT = ADDED_COLUMNS.index("needs_review")
#: the Chinese header of each added column (``headers="zh"``, the default for .xlsx output;
#: ``"en"``, the default for .csv and .jsonl, keeps the codes scripts read)
ADDED_HEADERS_ZH = {
    "id": "线索编号", "attention": "关注类别代码", "attention_name": "关注类别", "attention_confidence": "关注类别置信度",
    "area": "领域代码", "area_name": "领域", "area_confidence": "领域置信度", "needs_review": "需复核",
    "familiarity": "熟悉度", "key_terms": "关键词", "handover": "建议移交", "model_version": "模型版本",
    "status": "状态", "status_detail": "状态说明", "group_id": "同一问题组", "repeat_of": "首次反映编号",
}
YES_NO_ZH = {"yes": "是", "no": "否"}
#: where a row's fields hold the last three columns of ``predictions``: key_terms, handover, model_version
_STORED_AT = tuple(ADDED_COLUMNS.index(c) for c in ("key_terms", "handover", "model_version"))


@dataclass(slots=True)
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
    key: str | None = None  # the store's clue key, for classified rows when the unit is given
    familiarity: float | None = None  # share of the clue's features seen in training
    thash: str = ""  # repeat grouping: exact-text hash, MinHash signature and canonical text
    sig: bytes = b""
    canon: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        # as a plain tuple: ten times cheaper to send back from a worker than the default
        return (Result, (self.status, self.detail, self.attention, self.attention_conf, self.area, self.area_conf,
                         self.margin, self.needs_review, self.terms, self.key, self.familiarity, self.thash,
                         self.sig, self.canon))


# -- per batch (runs in workers) ------------------------------------------------------


#: (status, detail, text the model sees, whole normalised text)
#: status, reason, normalised text to classify, whole normalised text, the user's folded text
Screened = tuple[str, str, str, str, str]


def _screen(text: str) -> Screened:
    """Status, reason and the text to classify, for one raw text."""
    folded = fold(text)
    norm = to_simplified(folded)
    if not norm:
        return "empty", "no text in the text column", "", norm, folded
    if not any(ch.isalpha() for ch in norm):
        return "no_text", "only punctuation, symbols or digits", "", norm, folded
    han = han_count(norm, at_most=MIN_HAN)
    if han == 0:
        return "not_chinese", "no Chinese characters; not classified", "", norm, folded
    if han >= MIN_HAN and looks_garbled(norm):
        return ("garbled", "mostly rare characters: garbled text (mojibake, e.g. UTF-8 read as GBK)? "
                "not classified; check the file's encoding", "", norm, folded)
    if len(norm) > MAX_CHARS:
        return ("too_long_truncated", f"{len(norm):,} characters; classified on the first {MAX_CHARS:,}",
                norm[:MAX_CHARS], norm, folded[:MAX_CHARS])
    if han < MIN_HAN:
        return "too_short", f"only {han} Chinese character(s); check the label", norm, norm, folded
    return "ok", "", norm, norm, folded


def _safe_screen(text: str) -> Screened:
    """:func:`_screen`, with a text it fails on (a bug, an odd code point) given the status
    ``error`` instead of failing its whole batch."""
    try:
        return _screen(text)
    except Exception as exc:
        return "error", f"could not be read ({exc.__class__.__name__})", "", "", ""


@lru_cache(maxsize=4096)
def _normalized_unit(unit: str) -> str:
    return normalize(unit)


def _clue_key(unit: str, normalized_text: str) -> str:
    """:func:`store.clue_key` of a clue whose text screening has already normalised."""
    return key_of_normalized(_normalized_unit(unit), normalized_text)


def _classify(model: TwoHeadModel, todo: list[int], screened: list[Screened],
              texts: Sequence[str], results: list[Result]) -> None:
    docs = [prepare_one(screened[i][2], screened[i][4]) for i in todo]
    predicted = model.predict(docs, explain=KEY_TERMS, originals=[texts[i] for i in todo])
    att, area = predicted["attention"], predicted["area"]
    further = att.proba[:, att.classes.index("further")] if "further" in att.classes else None
    flagged = needs_review(att.labels, att.confidence, area.confidence, att.familiarity,
                           [has_alarm(d.text) for d in docs], model.review_thresholds, model.familiarity_floor,
                           further_proba=further)
    for j, i in enumerate(todo):
        r = results[i]
        r.attention, r.attention_conf = att.labels[j], float(att.confidence[j])
        r.area, r.area_conf = area.labels[j], float(area.confidence[j])
        r.margin = float(min(att.margin[j], area.margin[j]))
        r.familiarity = float(att.familiarity[j])
        r.terms = list(dict.fromkeys([*att.terms[j], *area.terms[j]]))
        r.needs_review = r.status != "ok" or bool(flagged[j])


def classify_texts(model: TwoHeadModel, texts: Sequence[str], units: Sequence[str] | None = None) -> list[Result]:
    """Screen, classify and explain a batch of raw texts (no I/O; the unit of parallel work).

    If the model fails on the batch, its texts are retried one by one, and a text it still
    fails on gets the status ``error`` with the reason: one odd text never sinks a run.
    With ``units``, classified rows also get their store key (:func:`store.clue_key`),
    computed here so that the normalisation runs in the workers.
    """
    screened = [_safe_screen(t) for t in texts]
    results = [Result(s[0], s[1]) for s in screened]
    todo = [i for i, s in enumerate(screened) if s[0] in CLASSIFIED]
    if not todo:
        return results
    try:
        _classify(model, todo, screened, texts, results)
    except Exception:
        for i in todo:
            try:
                _classify(model, [i], screened, texts, results)
            except Exception as exc:
                results[i] = Result("error", f"could not be classified ({exc.__class__.__name__}: {exc})",
                                    needs_review=True)
    if units is not None:
        for i in todo:
            if results[i].attention:
                try:
                    results[i].key = _clue_key(units[i], screened[i][3])
                except Exception as exc:
                    results[i] = Result("error", f"its unit could not be read ({exc.__class__.__name__})",
                                        needs_review=True)
        done = [i for i in todo if results[i].key]
        canon = canonicals_of_normalized([screened[i][3] for i in done])
        sigs = signatures(canon)
        for j, i in enumerate(done):
            results[i].thash, results[i].sig, results[i].canon = text_hash(canon[j]), sigs[j].tobytes(), canon[j]
    return results


_worker_model: TwoHeadModel | None = None


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when its parent dies (even by kill -9), so no worker
    outlives a killed triage; elsewhere the pool's own shutdown has to do."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _init_worker(model: TwoHeadModel | None, segmenter: str, parent: int = 0) -> None:
    global _worker_model
    if parent and sys.platform.startswith("linux"):
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's SIGTERM handler is not ours
    # a batch allocates hundreds of thousands of short-lived strings and lists, none in
    # cycles: collecting the young generation that often only costs time (~3 % measured)
    gc.set_threshold(50_000, 20, 100)
    if model is not None:
        _worker_model = model
    set_segmenter(segmenter)


#: one batch of work: raw texts, and their units when store keys are wanted
Work = tuple[list[str], list[str] | None]


def _work(texts: list[str], units: list[str] | None) -> list[Result]:
    assert _worker_model is not None
    return classify_texts(_worker_model, texts, units)


def _ready() -> int:
    return os.getpid()


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = None
    with contextlib.suppress(OSError, ValueError):
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    if quota is None:
        with contextlib.suppress(OSError, ValueError):
            limit = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
            if int(limit) > 0:
                quota = int(limit) / int(period)
    if quota:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


class Classifier:
    """Classify batches of texts in order, in this process or in worker processes.

    Use as a context manager: with ``workers > 1`` the workers are started on entry
    (forked, so they share the loaded model and dictionary), before the caller starts any
    thread of its own (such as a progress bar).
    """

    def __init__(self, model: TwoHeadModel, workers: int = 1) -> None:
        self.model = model
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._frozen = False

    def __enter__(self) -> Classifier:
        global _worker_model
        set_segmenter(current_segmenter())  # load the dictionary once, before forking
        if self.workers > 1:
            method = START_METHOD
            _worker_model = self.model  # inherited by forked workers; pickled for spawn
            gc.collect()
            gc.freeze()  # the collector then never writes to inherited objects: their pages stay shared
            self._frozen = True
            try:
                self._pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context(method),
                    initializer=_init_worker,
                    initargs=(None if method == "fork" else self.model, current_segmenter(), os.getpid()),
                )
                self._result(self._pool.submit(_ready))  # with fork, every worker starts now
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        global _worker_model
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        _worker_model = None

    @staticmethod
    def _result(future: Future[Any]) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            raise ClueTriageError(
                "a worker process died (out of memory or killed?); try again with fewer --workers"
            ) from None

    def map(self, batches: Iterable[Work]) -> Iterator[list[Result]]:
        """Results of each batch of (texts, units), in the order of the batches."""
        if self._pool is None:
            for texts, units in batches:
                yield classify_texts(self.model, texts, units)
            return
        window: deque[Future[list[Result]]] = deque()
        limit = IN_FLIGHT_PER_WORKER * self.workers
        try:
            for texts, units in batches:
                window.append(self._pool.submit(_work, texts, units))
                if len(window) >= limit:
                    yield self._result(window.popleft())
            while window:
                yield self._result(window.popleft())
        finally:
            for pending in window:
                pending.cancel()


def classify_batches(model: TwoHeadModel, batches: Iterable[list[str]], workers: int = 1) -> Iterator[list[Result]]:
    """Results of each batch of texts, in order (see :class:`Classifier`)."""
    with Classifier(model, workers) as classifier:
        yield from classifier.map((texts, None) for texts in batches)


# -- the run --------------------------------------------------------------------------


@dataclass
class TriageStart:
    """What a run is about to do: given to ``on_start`` once the input has been checked."""

    run_id: int
    input: Path
    output: Path
    encoding: str | None
    rows: int | None  # exact for CSV and JSONL, an estimate for Excel, None if unknown
    model_version: str
    workers: int
    warnings: list[str] = field(default_factory=list)  # e.g. the user dictionary changed since training
    notices: list[str] = field(default_factory=list)  # e.g. no unit column: recusal cannot be applied


@dataclass
class TriageSummary:
    run_id: int
    input: Path
    output: Path
    encoding: str | None
    model_version: str
    workers: int = 1
    rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)
    needs_review: int = 0
    seconds: float = 0.0
    unit_column: str | None = None
    no_unit: int = 0  # clues with no unit: recusal cannot be applied to them
    unresolved_units: Counter[str] = field(default_factory=Counter)  # written unit -> clues, not in the directory
    directory_units: int = 0  # entries in the unit directory
    round_name: str | None = None
    round_units: frozenset[str] = frozenset()  # unit keys the round covers
    outside_round: Counter[str] = field(default_factory=Counter)  # resolved unit name -> clues, not in the round
    repeats: int = 0  # clues that repeat an earlier report (this run or the store)

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def not_ok(self) -> int:
        """Rows whose status is not ``ok`` (not classified, or classified and flagged)."""
        return self.rows - self.statuses.get("ok", 0)


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


def _check_output(cf: ClueFile, output: Path) -> None:
    fmt = output_format(output)
    check_output_folder(output)
    if output.resolve() == cf.path.resolve() or (output.exists() and os.path.samefile(output, cf.path)):
        raise InputError("output would overwrite the input; choose another -o", path=output)
    if output.is_dir():
        raise InputError("is a folder; give a file name for the output", path=output)
    if fmt == "xlsx" and cf.row_count is not None and cf.row_count >= EXCEL_MAX_ROWS:
        raise InputError(f"{cf.row_count:,} rows do not fit in .xlsx; write .csv or .jsonl", path=output)


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
    round_name: str | None = None,
    on_start: Callable[[TriageStart], None] | None = None,
    progress: Callable[[int], None] | None = None,
    headers: str | None = None,
) -> TriageSummary:
    """Triage a clue file into an output file and record the run in the store.

    Every input row appears exactly once in the output, in input order. The input is
    checked before the run starts; the output is written to a temporary file and renamed
    at the end. If anything fails, no output file is left (an existing one is untouched)
    and the run is marked failed in the store with its predictions removed.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the CPUs available). Inputs of one batch run in-process.
    round_name : str, optional
        The round the run belongs to (it must be open); default: the open round, if any.
    on_start : callable, optional
        Called once with a :class:`TriageStart` when the work begins (row count, encoding).
    progress : callable, optional
        Called with the number of rows done after each batch.
    headers : {"zh", "en"}, optional
        Headers of the added columns: Chinese, with needs-review as 是/否 (the default for
        .xlsx output), or the column codes with yes/no (the default for .csv and .jsonl).

    Example
    -------
    >>> summary = triage_file(resolve_home(), "clues.csv", "clues.triaged.xlsx")  # doctest: +SKIP
    """
    started = time.perf_counter()
    if headers is not None:
        check_header_style(headers)
    cf = open_clue_file(input_path, text_col=text_col, id_col=id_col, unit_col=unit_col)
    output = Path(output_path) if output_path else default_output(cf.path)
    chinese = headers == "zh" if headers is not None else output_format(output) == "xlsx"
    _check_output(cf, output)
    loaded: LoadedModel = Registry(home.models).load(version, predict_only=True)
    routing = routing or load_routing()
    workers = max(1, workers or available_cpus())
    if cf.row_count is not None:
        workers = min(workers, max(1, math.ceil(cf.row_count / BATCH_SIZE)))
    input_sha256 = sha256_file(cf.path)
    db = connect(home.db_path)
    try:
        with transaction(db, "starting a triage run"):
            chosen = round_for_triage(db, round_name)
            run_id = int(
                db.execute(
                    "INSERT INTO runs (started, status, model_version, input_path, input_sha256, pid, process, "
                    "output_path, round_id) VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (now(), loaded.version, str(cf.path.resolve()), input_sha256, os.getpid(), process_token(),
                     str(output.resolve()), chosen.round_id if chosen else None),
                ).lastrowid or 0
            )
        summary = TriageSummary(run_id, cf.path, output, cf.encoding, loaded.version, workers)
        if chosen is not None:
            summary.round_name, summary.round_units = chosen.name, frozenset(chosen.unit_keys)

        def complete() -> None:  # the output is on disk and about to be renamed into place
            with transaction(db, f"finishing triage run {run_id}"):
                db.execute("UPDATE runs SET status = 'complete', finished = ?, row_count = ? WHERE run_id = ?",
                           (now(), summary.rows, run_id))

        try:
            _run(db, cf, loaded, routing, summary, on_start, progress, complete, chinese)
            summary.seconds = time.perf_counter() - started
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
            with contextlib.suppress(sqlite3.Error, ClueTriageError), transaction(db, f"ending triage run {run_id}"):
                if db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0] == "running":
                    discard_run(db, run_id, status)
            if isinstance(exc, sqlite3.OperationalError):
                raise store_error(exc, home.db_path) from None
            raise
    finally:
        db.close()
    return summary


def _run(
    db: sqlite3.Connection,
    cf: ClueFile,
    loaded: LoadedModel,
    routing: Routing,
    summary: TriageSummary,
    on_start: Callable[[TriageStart], None] | None,
    progress: Callable[[int], None] | None,
    complete: Callable[[], None] | None = None,
    chinese: bool = False,
) -> None:
    columns = list(cf.columns)
    own_id = cf.id_col == "id"  # the input's id column is the output's: filled, not repeated
    added = [f"triage_{c}" if c in columns else c for c in ADDED_COLUMNS if not (c == "id" and own_id)]
    if chinese:  # a Chinese header the input already has keeps the code
        added = [ADDED_HEADERS_ZH[c] if ADDED_HEADERS_ZH.get(c, c) not in columns else c for c in added]
    id_at = columns.index("id") if own_id else None
    pending: deque[list[Row]] = deque()
    if STORE_EVERY + BATCH_SIZE > repeats.WINDOW // 2:
        # the window drops its older half at once; an exact repeat of a dropped clue is found
        # in the store only if that clue was written first
        raise RuntimeError(f"STORE_EVERY ({STORE_EVERY}) + BATCH_SIZE ({BATCH_SIZE}) must be at most half the "
                           f"repeat window ({repeats.WINDOW})")
    store = _StoreWriter(db, summary.run_id, load_directory(db))
    summary.unit_column, summary.directory_units = cf.unit_col, len(store.directory.units)
    text_col, unit_col = cf.text_col, cf.unit_col

    def work() -> Iterator[Work]:
        for batch in _batches(cf.rows(), BATCH_SIZE):
            pending.append(batch)
            texts = [r.values[text_col] for r in batch]
            yield texts, ([r.values[unit_col].strip() for r in batch] if unit_col else [""] * len(batch))

    # workers are forked first: they inherit no open output file and no caller's thread
    xlsx = output_format(summary.output) == "xlsx"
    with Classifier(loaded.model, summary.workers) as classifier, \
            TableWriter(summary.output, columns + added, before_replace=complete) as writer:
        if on_start:
            notices = []
            if unit_col is None:
                notices.append(f"no unit column (looked for {', '.join(UNIT_COLUMNS)}); recusal cannot be applied "
                                "to these clues; name the column with --unit-col")
            on_start(TriageStart(summary.run_id, cf.path, summary.output, cf.encoding, cf.row_count,
                                 loaded.version, summary.workers, loaded.warnings, notices))
        # read after the workers are forked: they do not need it, and pages inherited from it
        # would stay mapped in them as the run changes it (a second copy of the window)
        grouper = Grouper.from_store(db)
        for results in classifier.map(work()):
            batch = pending.popleft()
            for row, res in zip(batch, results, strict=True):
                if row.note:
                    res.detail = f"{res.detail}; {row.note}" if res.detail else row.note
            rows = [(row, res, _fields(cf, row, res, loaded.version, routing),
                     store.resolve(row.values[unit_col].strip() if unit_col else "") if res.attention else None)
                    for row, res in zip(batch, results, strict=True)]
            clues, at = [], []  # repeat grouping, one call per batch
            for i, (_, res, fields, unit) in enumerate(rows):
                if unit is not None and res.key:
                    at.append(i)
                    clues.append(Clue(res.key, fields[0], unit.key, res.thash, np.frombuffer(res.sig, dtype=np.uint32),
                                      res.canon))
            placements: dict[int, Placed] = dict(zip(at, grouper.place(clues), strict=True))
            for i, (row, res, fields, unit) in enumerate(rows):
                placed = placements.get(i)
                if placed is not None:
                    fields[GROUP_AT:GROUP_AT + 2] = [placed.group, placed.repeat_of]
                values = [row.values[c] for c in columns]
                if xlsx:
                    cut = [c for c, v in zip(columns, values, strict=True) if len(v) > EXCEL_CELL_LIMIT]
                    if cut:
                        note = f"column {', '.join(cut)} cut at {EXCEL_CELL_LIMIT:,} characters (the .xlsx cell limit)"
                        fields[DETAIL_AT] = f"{fields[DETAIL_AT]}; {note}" if fields[DETAIL_AT] else note
                shown = fields
                if chinese:
                    shown = fields.copy()
                    shown[NEEDS_AT] = YES_NO_ZH.get(shown[NEEDS_AT], shown[NEEDS_AT])
                if id_at is not None:
                    values[id_at] = shown[0]
                    writer.write_values(values + shown[1:])
                else:
                    writer.write_values(values + shown)
                store.add(cf, row, res, fields, unit, placed)
                _tally(summary, res, unit, placed)
            store.flush(force=False)
            if progress:
                progress(len(batch))
        store.flush(force=True)


def _fields(cf: ClueFile, row: Row, res: Result, version: str, routing: Routing) -> list[Any]:
    """The values of ``ADDED_COLUMNS`` for one row."""
    clue_id = (row.values[cf.id_col].strip() if cf.id_col else "") or str(row.number)
    if not res.attention:
        return [clue_id, "", "", "", "", "", "", "yes" if res.needs_review else "no", "", "", "", version,
                res.status, res.detail, "", ""]
    return [
        clue_id,
        res.attention,
        display_name(res.attention),
        round(res.attention_conf, 4) if res.attention_conf is not None else "",
        res.area,
        display_name(res.area, short=True),  # the short names of the sheets and the summary
        round(res.area_conf, 4) if res.area_conf is not None else "",
        "yes" if res.needs_review else "no",
        round(res.familiarity, 3) if res.familiarity is not None else "",
        "、".join(res.terms),
        routing.handover(res.attention, res.area),
        version,
        res.status,
        res.detail,
        "",  # group_id and repeat_of: filled in by the run, which sees the store
        "",
    ]


class _StoreWriter:
    """Predictions and clues of a run, written in a few large transactions (every
    ``STORE_EVERY`` rows): one commit per small batch would spend the run waiting on disk."""

    def __init__(self, db: sqlite3.Connection, run_id: int, directory: Directory) -> None:
        self.db, self.run_id, self.directory = db, run_id, directory
        self.clues: list[tuple[Any, ...]] = []
        self.predictions: list[tuple[Any, ...]] = []
        self.signatures: list[tuple[Any, ...]] = []
        self._resolve = lru_cache(maxsize=4096)(directory.resolve)

    def resolve(self, unit: str) -> Resolution:
        return self._resolve(unit)

    def add(self, cf: ClueFile, row: Row, res: Result, fields: list[Any], unit: Resolution | None,
            placed: Placed | None) -> None:
        """Queue one row; ``unit`` and ``placed`` are given for a classified row."""
        clue_id, key = fields[0], None
        if res.attention:
            written = row.values[cf.unit_col].strip() if cf.unit_col else ""
            key = res.key or clue_key(written, row.values[cf.text_col])
            resolved = unit.key if unit is not None else self._resolve(written).key
            self.clues.append((key, clue_id, written, resolved, row.values[cf.text_col], self.run_id,
                               placed.group if placed else None))
            if placed is not None:
                self.signatures.append((key, res.thash, res.sig, res.canon))
        self.predictions.append(
            (self.run_id, row.number, key, clue_id, res.status, res.attention or None, res.attention_conf,
             res.area or None, res.area_conf, res.margin, int(res.needs_review), *(fields[i] for i in _STORED_AT))
        )

    def _new_clues(self) -> list[tuple[Any, ...]]:
        """This batch's clues not yet in the store, once each (the store refuses a key twice)."""
        fresh = {c[0]: c for c in reversed(self.clues)}  # the first row of a clue wins
        for (key,) in rows_in(self.db, "SELECT clue_key FROM clues WHERE clue_key IN ({})", list(fresh)):
            fresh.pop(key, None)
        return [c for c in self.clues if fresh.get(c[0]) is c]

    def flush(self, force: bool) -> None:
        if not self.predictions or (not force and len(self.predictions) < STORE_EVERY):
            return
        with transaction(self.db, f"triage run {self.run_id}"):
            self.db.executemany("INSERT INTO clues (clue_key, clue_id, unit, unit_key, text, first_run, group_key) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", self._new_clues())
            # derived data, not part of the audit trail: a clue stored before grouping gets its signature now
            self.db.executemany("INSERT OR IGNORE INTO clue_signatures (clue_key, text_hash, signature, canon) "
                                "VALUES (?, ?, ?, ?)", self.signatures)
            self.db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                self.predictions)
        self.clues.clear()
        self.predictions.clear()
        self.signatures.clear()


def _tally(summary: TriageSummary, res: Result, unit: Resolution | None, placed: Placed | None) -> None:
    summary.rows += 1
    if placed is not None and placed.repeat_of:
        summary.repeats += 1
    if unit is not None and unit.unit is not None and summary.round_units and unit.key not in summary.round_units:
        summary.outside_round[unit.unit.name] += 1
    if unit is not None and not unit.resolved:
        if unit.how == "empty":
            summary.no_unit += 1
        else:
            summary.unresolved_units[unit.written] += 1
    summary.statuses[res.status] += 1
    if res.attention:
        summary.cells[(res.attention, res.area)] += 1
    if res.needs_review:
        summary.needs_review += 1
