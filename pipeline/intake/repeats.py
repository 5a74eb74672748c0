"""Repeat clues (同一问题多次反映): exact and near-duplicate texts grouped across runs.

Two clues are one matter when their normalised texts are equal (punctuation and spaces
ignored), or when the Jaccard similarity of their sets of character bigrams is at least
:data:`THRESHOLD`. Candidates are found with MinHash signatures and locality-sensitive
hashing (LSH, :data:`BANDS` bands of :data:`ROWS` values), so a new clue is compared with a
handful of earlier clues, not all of them; a candidate whose estimated similarity is
neither clearly above nor clearly below the threshold is checked on the exact bigram sets
(a 64-value estimate alone would miss a third of the repeats just above the threshold).
Near duplicates are grouped only within one unit (or when either unit is unknown): a
template sentence about two units is two matters.

Everything per clue is done with numpy for a whole batch at once: the signatures
(:func:`signatures`, one hash per bigram) and the LSH lookup (:class:`_Bands`, sorted
arrays and ``searchsorted``); only candidates that survive the estimate reach Python.
``bench/group_bench.py`` measures the speed. Signatures and groups are kept in the store so
later runs group with earlier ones. Triage computes signatures in its workers and calls
:meth:`Grouper.place` once per batch; :func:`group_texts` groups a plain list.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..text.normalize import normalize

NUM_PERM = 64
BANDS, ROWS = 32, 2  # BANDS * ROWS == NUM_PERM: a pair at Jaccard 0.4 is a candidate with p = 0.996
THRESHOLD = 0.40  # Jaccard of the bigram sets from which two clues are one matter
#: a band bucket shared by more clues than this is made of very common bigrams and says
#: nothing (a pair at the threshold shares about 5 of 32 bands); it is no longer searched
CROWDED = 16
BIGRAM_CACHE = 10_000  # bigram arrays kept for the exact check (about 2 kB each)
TEXT_WINDOW = 20_000  # texts of the latest clues kept in memory (older ones are read from the store)
SURE, FLOOR = 0.60, 0.25  # estimates above SURE are taken as they are, below FLOOR dropped; between, checked exactly
_MIX = np.uint64(0x9E3779B97F4A7C15)  # multiply-shift hash of a bigram to 32 bits
_BIN_BITS = 6  # 2**6 == NUM_PERM bins
_VALUE_MASK = (1 << (32 - _BIN_BITS)) - 1
_BAND_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
                     dtype=np.uint64)[:ROWS]
EMPTY = 0xFFFFFFFF  # a signature value of a text without bigrams
_NOISE = re.compile(r"[\W_]+")  # punctuation, symbols, spaces: not part of what a clue says


def canonical(text: str) -> str:
    """The form of a text that repeats are compared in: normalised (width, Traditional →
    Simplified), without punctuation, symbols or spaces."""
    return canonical_of_normalized(normalize(text))


def canonical_of_normalized(normalized: str) -> str:
    """:func:`canonical` of a text that is already normalised (triage has it)."""
    return _NOISE.sub("", normalized)


def text_hash(canonical_text: str) -> str:
    """Key of an exact duplicate: the hash of the canonical text."""
    return hashlib.sha256(canonical_text.encode()).hexdigest()[:20]


def signatures(canonical_texts: Sequence[str]) -> np.ndarray:
    """MinHash signatures (``len(texts) × NUM_PERM``, uint32) of the character bigrams of
    canonical texts, by one-permutation hashing: each bigram is hashed once, the top six
    bits choose one of the 64 bins and each bin keeps its smallest value; an empty bin
    takes the value of the next non-empty bin to its right, offset by the distance
    ("densification", so two texts' signatures stay comparable bin by bin). One hash per
    bigram instead of 64 makes it about three times faster than classic MinHash, with the
    same results on the tests' paraphrase table and corpus. A text of fewer than two
    characters has no bigram; its row is all ``EMPTY`` and it is grouped by exact text only."""
    n = len(canonical_texts)
    out = np.full((n, NUM_PERM), np.uint32(EMPTY), dtype=np.uint32)
    rows = [i for i, text in enumerate(canonical_texts) if len(text) >= 2]
    if not rows:
        return out
    lengths = np.array([len(canonical_texts[i]) for i in rows], dtype=np.int64)
    codes = np.frombuffer("".join(canonical_texts[i] for i in rows).encode("utf-32-le"), dtype=np.uint32)
    codes = codes.astype(np.uint64)
    # a bigram is one 42-bit number (two code points); one multiply-shift hashes it to 32 bits
    pairs = (codes[:-1] << np.uint64(21)) | codes[1:]
    keep = np.ones(len(pairs), dtype=bool)
    keep[np.cumsum(lengths)[:-1] - 1] = False  # no bigram across two texts
    hashed = ((pairs[keep] * _MIX) >> np.uint64(32)).astype(np.uint32)
    owner = np.repeat(np.asarray(rows, dtype=np.int64), lengths - 1)
    bins = (hashed >> np.uint32(32 - _BIN_BITS)).astype(np.int64)
    np.minimum.at(out.reshape(-1), owner * NUM_PERM + bins, hashed & np.uint32(_VALUE_MASK))
    empty = out == EMPTY
    empty[np.setdiff1d(np.arange(n), rows)] = False  # rows without bigrams stay EMPTY
    distance = 1
    while distance < NUM_PERM and empty.any():
        source = np.roll(out, -distance, axis=1)
        take = empty & (source != EMPTY)
        out[take] = source[take] + np.uint32(distance << (32 - _BIN_BITS))
        empty &= ~take
        distance += 1
    return out


def band_keys(sigs: np.ndarray) -> np.ndarray:
    """One 64-bit key per band of each signature (``n × BANDS``): clues sharing any band key
    are candidates."""
    bands = sigs.reshape(len(sigs), BANDS, ROWS).astype(np.uint64)
    return (bands * _BAND_MIX).sum(axis=2, dtype=np.uint64)




class LazyCanonical(str):
    """A stored clue's raw text, put in :func:`canonical` form only if the exact check needs it."""


class _Bands:
    """LSH buckets as sorted numpy arrays, one pair (keys, items) per band, in two levels:
    a large ``main`` level and a ``recent`` one that takes each batch (cheap to insert into)
    and is merged into ``main`` when it grows past :data:`RECENT`. A whole batch is looked
    up with ``searchsorted``; no Python loop per clue or per band entry."""

    RECENT = 16_384

    def __init__(self) -> None:
        empty_keys, empty_items = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        self.main = [(empty_keys, empty_items) for _ in range(BANDS)]
        self.recent = [(empty_keys, empty_items) for _ in range(BANDS)]

    @staticmethod
    def _insert(level: tuple[np.ndarray, np.ndarray], keys: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(keys, kind="stable")
        keys, items = keys[order], items[order]
        at = np.searchsorted(level[0], keys, side="right")
        return np.insert(level[0], at, keys), np.insert(level[1], at, items)

    def add(self, keys: np.ndarray, items: np.ndarray) -> None:
        """Add items (``n``) with their band keys (``n × BANDS``)."""
        for band in range(BANDS):
            self.recent[band] = self._insert(self.recent[band], keys[:, band], items)
        if len(self.recent[0][0]) > self.RECENT:
            for band in range(BANDS):
                self.main[band] = self._insert(self.main[band], *self.recent[band])
                self.recent[band] = (self.recent[band][0][:0], self.recent[band][1][:0])

    def pairs(self, keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, item) for every item sharing a band key with a query, uncrowded
        buckets only, each pair once; ``queries`` are the queries' own item numbers."""
        found_q, found_i = [], []
        for band in range(BANDS):
            wanted = keys[:, band]
            for level_keys, level_items in (self.main[band], self.recent[band]):
                if not len(level_keys):
                    continue
                lo = np.searchsorted(level_keys, wanted, side="left")
                count = np.searchsorted(level_keys, wanted, side="right") - lo
                count[count > CROWDED] = 0  # a bucket of very common bigrams says nothing
                total = int(count.sum())
                if not total:
                    continue
                q = np.repeat(np.arange(len(wanted)), count)
                starts = np.repeat(lo - (np.cumsum(count) - count), count)
                found_q.append(q)
                found_i.append(level_items[starts + np.arange(total)])
        if not found_q:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        q, items = np.concatenate(found_q), np.concatenate(found_i)
        earlier = items < queries[q]  # a clue groups with clues placed before it
        combined = np.sort((q[earlier].astype(np.int64) << 32) | items[earlier])
        if len(combined):
            combined = combined[np.concatenate(([True], combined[1:] != combined[:-1]))]
        return combined >> 32, combined & 0xFFFFFFFF


class RepeatIndex:
    """Earlier clues by exact text hash and by LSH band key; clues are placed a batch at a
    time (:meth:`place_batch`), in order, each with the group of the most similar earlier
    clue of the same matter."""

    def __init__(self, fetch: Callable[[int], str] | None = None) -> None:
        self.by_text: dict[str, str] = {}  # text hash -> group
        self.fetch = fetch  # the raw text of an item no longer held in memory
        self._bands = _Bands()
        self._sigs = np.empty((1024, NUM_PERM), dtype=np.uint32)
        self._units = np.empty(1024, dtype=np.int32)  # unit numbers (0: unknown) of the items
        self._unit_ids: dict[str, int] = {"": 0}
        self.groups: list[str] = []
        #: texts (canonical or LazyCanonical), for the exact check; with ``fetch``, only those of
        #: the latest TEXT_WINDOW items (older ones are fetched from the store when needed)
        self._texts: dict[int, str] = {}
        self._bigrams: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.groups)

    def _grow(self, n: int) -> np.ndarray:
        """Item numbers for ``n`` new items, with room for them."""
        first = len(self.groups)
        while first + n > len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
            self._units = np.concatenate([self._units, np.empty_like(self._units)])
        return np.arange(first, first + n, dtype=np.int64)

    def _bigram_set(self, item: int) -> np.ndarray:
        found = self._bigrams.get(item)
        if found is None:
            if len(self._bigrams) >= BIGRAM_CACHE:
                self._bigrams.clear()  # bounded memory: sets are rebuilt when needed again
            text = self._texts.get(item)
            if text is None:
                text = LazyCanonical(self.fetch(item) if self.fetch else "")
            found = self._bigrams[item] = bigrams(canonical(text) if isinstance(text, LazyCanonical) else text)
        return found

    def load(self, thashes: Sequence[str], units: Sequence[str], sigs: np.ndarray, groups: Sequence[str]) -> None:
        """Add clues whose groups are known (from the store; their texts are fetched if needed)."""
        items = self._grow(len(groups))
        self._sigs[items] = sigs
        self._units[items] = [self._unit_ids.setdefault(u, len(self._unit_ids)) for u in units]
        self.groups.extend(groups)
        for thash, group in zip(thashes, groups, strict=True):
            self.by_text.setdefault(thash, group)
        self._add_bands(sigs, items)

    def _add_bands(self, sigs: np.ndarray, items: np.ndarray) -> None:
        has = (sigs != EMPTY).any(axis=1)  # no bigram: grouped by exact text only
        if has.any():
            self._bands.add(band_keys(sigs[has]), items[has])

    def place_batch(self, thashes: Sequence[str], units: Sequence[str], sigs: np.ndarray, texts: Sequence[str],
                    new_groups: Sequence[str]) -> list[tuple[str, float]]:
        """Place clues in order: each joins the group of an earlier clue with the same text,
        else of the most similar earlier clue (Jaccard ≥ THRESHOLD, same or unknown unit),
        else ``new_groups[i]``. Returns (group, similarity) per clue."""
        n = len(thashes)
        items = self._grow(n)
        self._sigs[items] = sigs
        self._units[items] = [self._unit_ids.setdefault(u, len(self._unit_ids)) for u in units]
        self.groups.extend(new_groups)
        self._texts.update(zip(items.tolist(), texts, strict=True))
        if self.fetch is not None and len(self._texts) > TEXT_WINDOW + TEXT_WINDOW // 2:
            oldest = int(items[-1]) - TEXT_WINDOW
            self._texts = {i: t for i, t in self._texts.items() if i > oldest}
        self._add_bands(sigs, items)
        q, cand = self._bands.pairs(band_keys(sigs), items)
        if len(q):
            uq, uc = self._units[items[q]], self._units[cand]
            same = (uq == uc) | (uq == 0) | (uc == 0)
            q, cand = q[same], cand[same]
            estimates = (self._sigs[items[q]] == self._sigs[cand]).sum(axis=1) / NUM_PERM
            keep = estimates >= FLOOR
            q, cand, estimates = q[keep], cand[keep], estimates[keep]
        bounds = np.searchsorted(q, np.arange(n + 1)) if len(q) else np.zeros(n + 1, dtype=np.int64)
        out: list[tuple[str, float]] = []
        for i in range(n):
            group = self.by_text.get(thashes[i])
            found: tuple[str, float] | None = (group, 1.0) if group is not None else None
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            if found is None and hi > lo:
                found = self._best(cand[lo:hi].tolist(), estimates[lo:hi].tolist(), texts[i], int(items[i]))
            result = found or (new_groups[i], 1.0)
            self.groups[int(items[i])] = result[0]
            self.by_text.setdefault(thashes[i], result[0])
            out.append(result)
        return out

    def _best(self, candidates: list[int], estimates: list[float], text: str, item: int) -> tuple[str, float] | None:
        best: tuple[str, float] | None = None
        mine: np.ndarray | None = self._bigrams.get(item)
        for other, estimate in sorted(zip(candidates, estimates, strict=True), key=lambda p: -p[1]):
            if best is not None and estimate <= best[1] and estimate < SURE:
                continue
            similarity = estimate
            if estimate < SURE:
                if mine is None:
                    mine = self._bigram_set(item)  # kept: this clue is a candidate of later ones
                similarity = jaccard(mine, self._bigram_set(other))
            if similarity >= THRESHOLD and (best is None or similarity > best[1]):
                best = (self.groups[other], similarity)
        return best


def bigrams(canonical_text: str) -> np.ndarray:
    """The distinct bigrams of a canonical text, as sorted 42-bit numbers (compact: about
    a tenth of the memory of a set of strings)."""
    codes = np.frombuffer(canonical_text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return np.unique((codes[:-1] << np.uint64(21)) | codes[1:])


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two results of :func:`bigrams`."""
    if not len(a) or not len(b):
        return 0.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def group_texts(texts: Sequence[str], units: Sequence[str] | None = None) -> list[int]:
    """Group numbers (0, 1, … in order of first appearance) of texts grouped by matter,
    without a store: the grouping triage does, for one list (tests and the benchmark)."""
    return group_canonical([canonical(t) for t in texts], units)


def group_canonical(canon: Sequence[str], units: Sequence[str] | None = None, batch: int = 500) -> list[int]:
    """:func:`group_texts` of texts already in :func:`canonical` form."""
    index = RepeatIndex()
    numbers: dict[str, int] = {}
    out: list[int] = []
    for lo in range(0, len(canon), batch):
        part = list(canon[lo:lo + batch])
        placed = index.place_batch([text_hash(t) for t in part],
                                   list(units[lo:lo + batch]) if units is not None else [""] * len(part),
                                   signatures(part), part, [str(lo + j) for j in range(len(part))])
        out.extend(numbers.setdefault(group, len(numbers)) for group, _ in placed)
    return out


@dataclass(frozen=True)
class Placed:
    group: str  # the clue key of the group's first clue
    repeat_of: str  # the first clue's id when this row repeats an earlier report, else ''
    similarity: float


@dataclass(frozen=True)
class Clue:
    """What grouping needs of one classified row (computed in triage's workers)."""

    key: str
    clue_id: str
    unit_key: str
    thash: str
    sig: np.ndarray
    text: str  # canonical form


class Grouper:
    """Groups the clues of a triage run with each other and with every clue in the store.

    Load once per run (:meth:`from_store`); call :meth:`place` with the classified rows of
    each batch, in input order.
    """

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self.db = db
        self.index = RepeatIndex(self._fetch if db is not None else None)
        self.keys: list[str] = []  # clue key of each index item
        self.known: dict[str, str] = {}  # clue key -> group
        self.first_id: dict[str, str] = {}  # group -> clue id of its first clue
        self.seen: set[str] = set()  # clue keys seen in this run

    def _fetch(self, item: int) -> str:
        assert self.db is not None
        row = self.db.execute("SELECT text FROM clues WHERE clue_key = ?", (self.keys[item],)).fetchone()
        return row[0] if row else ""  # not yet stored: no exact check (the window holds recent clues)

    @classmethod
    def from_store(cls, db: sqlite3.Connection) -> Grouper:
        grouper = cls(db)
        rows = db.execute("SELECT c.clue_key, c.unit_key, c.group_key, s.text_hash, s.signature "
                          "FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key ORDER BY c.rowid").fetchall()
        if rows:
            sigs = np.frombuffer(b"".join(r["signature"] for r in rows), dtype=np.uint32).reshape(len(rows), NUM_PERM)
            groups = [r["group_key"] or r["clue_key"] for r in rows]
            grouper.index.load([r["text_hash"] for r in rows], [r["unit_key"] for r in rows], sigs, groups)
            grouper.keys.extend(r["clue_key"] for r in rows)
            grouper.known.update(zip((r["clue_key"] for r in rows), groups, strict=True))
        for r in db.execute("SELECT c.clue_key, c.clue_id FROM clues c WHERE c.clue_key = c.group_key "
                            "OR c.group_key IS NULL"):
            grouper.first_id.setdefault(r["clue_key"], r["clue_id"])
        return grouper

    def place(self, clues: Sequence[Clue]) -> list[Placed]:
        """Group the classified rows of one batch, in input order."""
        new = self._new(clues)
        if new:
            placed = self.index.place_batch([c.thash for c in new], [c.unit_key for c in new],
                                            np.stack([c.sig for c in new]), [c.text for c in new], [c.key for c in new])
            self.keys.extend(c.key for c in new)
            for clue, (group, _) in zip(new, placed, strict=True):
                self.known[clue.key] = group
                self.first_id.setdefault(group, clue.clue_id)
        out = []
        for clue in clues:
            group = self.known[clue.key]
            first = group == clue.key and clue.key not in self.seen
            self.seen.add(clue.key)
            out.append(Placed(group, "" if first else self.first_id.get(group, ""), 1.0))
        return out

    def _new(self, clues: Sequence[Clue]) -> list[Clue]:
        seen: set[str] = set()
        new = []
        for clue in clues:
            if clue.key not in self.known and clue.key not in seen:
                seen.add(clue.key)
                new.append(clue)
        return new
