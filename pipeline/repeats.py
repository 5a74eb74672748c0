"""Repeat clues (同一问题多次反映): exact and near-duplicate texts grouped across runs.

Two clues are one matter when their normalised texts are equal (punctuation and spaces
ignored), or when the Jaccard similarity of their sets of character bigrams is at least
:data:`THRESHOLD`. Candidates are found with MinHash signatures and locality-sensitive
hashing (LSH, :data:`BANDS` bands of :data:`ROWS` values), so a new clue is compared with a
handful of earlier clues, not all of them; a candidate whose estimated similarity is
neither clearly above nor clearly below the threshold is checked on the exact bigram sets
(a 64-value estimate alone would miss a third of the repeats just above the threshold). Near duplicates are
grouped only within one unit (or when either unit is unknown): a template sentence about
two units is two matters.

The signatures are computed with numpy for a whole batch at once (one multiply-shift hash
per permutation over every bigram of the batch), which is what keeps grouping well above
triage speed; ``bench/group_bench.py`` measures it. Signatures and groups are kept in the
store so later runs group with earlier ones. Call :func:`signatures` on texts and
:meth:`RepeatIndex.assign` for each clue in input order.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .normalize import normalize

NUM_PERM = 64
BANDS, ROWS = 32, 2  # BANDS * ROWS == NUM_PERM: a pair at Jaccard 0.4 is a candidate with p = 0.996
THRESHOLD = 0.40  # Jaccard of the bigram sets from which two clues are one matter
#: a band bucket shared by more clues than this is made of very common bigrams and says
#: nothing (a pair at the threshold shares about 5 of 32 bands); it is no longer searched
CROWDED = 16
SURE, FLOOR = 0.60, 0.25  # estimates above SURE are taken as they are, below FLOOR dropped; between, checked exactly
CHUNK_SHINGLES = 50_000  # bigrams hashed at once (memory: CHUNK_SHINGLES * NUM_PERM * 4 bytes)
_rng = np.random.default_rng(20260413)  # fixed: signatures stored by one run are read by the next
_A = _rng.integers(1, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32) | np.uint32(1)  # odd: a permutation
_B = _rng.integers(0, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BAND_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5],
                     dtype=np.uint64)[:ROWS]
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
    canonical texts. A text of fewer than two characters has no bigram; its row is all
    ``0xFFFFFFFF`` and it is grouped by exact text only."""
    n = len(canonical_texts)
    out = np.full((n, NUM_PERM), np.uint32(0xFFFFFFFF), dtype=np.uint32)
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
    shingles = ((pairs[keep] * _MIX) >> np.uint64(32)).astype(np.uint32)
    starts = np.concatenate(([0], np.cumsum(lengths - 1)))
    first = 0  # hash in chunks of whole texts so memory stays bounded
    while first < len(rows):
        last = int(np.searchsorted(starts, starts[first] + CHUNK_SHINGLES, side="right")) - 1
        last = min(max(last, first + 1), len(rows))
        lo, hi = starts[first], starts[last]
        block = shingles[lo:hi, None] * _A[None, :]  # a random permutation of 32-bit values
        block += _B[None, :]  # (both wrap modulo 2**32)
        out[rows[first:last]] = np.minimum.reduceat(block, starts[first:last] - lo, axis=0)
        first = last
    return out


def band_keys(sigs: np.ndarray) -> np.ndarray:
    """One 64-bit key per band of each signature (``n × BANDS``): clues sharing any band key
    are candidates."""
    bands = sigs.reshape(len(sigs), BANDS, ROWS).astype(np.uint64)
    return (bands * _BAND_MIX).sum(axis=2, dtype=np.uint64)




class LazyCanonical(str):
    """A stored clue's raw text, put in :func:`canonical` form only if the exact check needs it."""


class RepeatIndex:
    """Earlier clues by exact text hash and by LSH band key.

    Signatures live in one growing uint32 matrix; a band bucket is a list of item indices,
    no longer grown once it is crowded (:data:`CROWDED`).
    """

    def __init__(self) -> None:
        self.by_text: dict[str, str] = {}  # text hash -> group
        self.buckets: list[dict[int, list[int]]] = [{} for _ in range(BANDS)]
        self._sigs = np.empty((1024, NUM_PERM), dtype=np.uint32)
        self._units = np.empty(1024, dtype=np.int32)  # unit numbers (0: unknown) of the items
        self._unit_ids: dict[str, int] = {"": 0}
        self.groups: list[str] = []
        self.units: list[str] = []
        self.texts: list[str] = []  # canonical texts, for the exact check
        self._bigrams: dict[int, set[str]] = {}

    def __len__(self) -> int:
        return len(self.groups)

    def add(self, thash: str, unit_key: str, sig: np.ndarray, keys: Sequence[int], group: str, text: str) -> None:
        """Index a clue (its text in :func:`canonical` form, or a :class:`LazyCanonical`)."""
        self.by_text.setdefault(thash, group)
        item = self._store(unit_key, sig, group, text)
        if item is not None:
            for bucket, key in zip(self.buckets, keys, strict=True):
                held = bucket.setdefault(key, [])
                if len(held) <= CROWDED:
                    held.append(item)

    def _store(self, unit_key: str, sig: np.ndarray, group: str, text: str) -> int | None:
        if int(sig[0]) == EMPTY and not (sig != EMPTY).any():
            return None  # no bigram: grouped by exact text only
        item = len(self.groups)
        if item == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
            self._units = np.concatenate([self._units, np.empty_like(self._units)])
        self._sigs[item] = sig
        self._units[item] = self._unit_ids.setdefault(unit_key, len(self._unit_ids))
        self.groups.append(group)
        self.units.append(unit_key)
        self.texts.append(text)
        return item

    def _bigram_set(self, item: int) -> set[str]:
        found = self._bigrams.get(item)
        if found is None:
            text = self.texts[item]
            found = self._bigrams[item] = bigrams(canonical(text) if isinstance(text, LazyCanonical) else text)
        return found

    def find(self, thash: str, unit_key: str, sig: np.ndarray, keys: Sequence[int], text: str) -> tuple[str, float] | None:
        """The group of the most similar earlier clue of the same matter, or None."""
        group = self.by_text.get(thash)
        if group is not None:
            return group, 1.0
        candidates: set[int] = set()
        for bucket, key in zip(self.buckets, keys, strict=True):
            held = bucket.get(key)
            if held is not None and len(held) <= CROWDED:
                candidates.update(held)
        return self._best(candidates, unit_key, sig, text) if candidates else None

    def find_and_add(self, thash: str, unit_key: str, sig: np.ndarray, keys: Sequence[int], text: str,
                     new_group: str) -> tuple[str, float] | None:
        """:meth:`find`, then :meth:`add` the clue to the group found (else ``new_group``),
        with one pass over the bands."""
        group = self.by_text.get(thash)
        if group is not None:
            self.add(thash, unit_key, sig, keys, group, text)
            return group, 1.0
        candidates: set[int] = set()
        open_buckets: list[list[int]] = []
        for bucket, key in zip(self.buckets, keys, strict=True):
            held = bucket.setdefault(key, [])
            if len(held) <= CROWDED:
                candidates.update(held)
                open_buckets.append(held)
        found = self._best(candidates, unit_key, sig, text) if candidates else None
        group = found[0] if found else new_group
        self.by_text.setdefault(thash, group)
        item = self._store(unit_key, sig, group, text)
        if item is not None:
            for held in open_buckets:
                held.append(item)
        return found

    def _best(self, candidates: set[int], unit_key: str, sig: np.ndarray, text: str) -> tuple[str, float] | None:
        found = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        unit = self._unit_ids.get(unit_key, -1) if unit_key else 0
        if unit:  # a unit's clues group with clues of the same unit or of an unknown unit
            units = self._units[found]
            found = found[(units == unit) | (units == 0)]
            if not len(found):
                return None
        estimates = (self._sigs[found] == sig).sum(axis=1) / NUM_PERM
        keep = estimates >= FLOOR
        if not keep.any():
            return None
        best: tuple[str, float] | None = None
        mine: set[str] | None = None
        order = np.argsort(-estimates[keep], kind="stable")
        for item, estimate in zip(found[keep][order].tolist(), estimates[keep][order].tolist(), strict=True):
            if best is not None and estimate <= best[1] and estimate < SURE:
                continue
            similarity = estimate
            if estimate < SURE:
                mine = bigrams(canonical(text) if isinstance(text, LazyCanonical) else text) if mine is None else mine
                similarity = jaccard(mine, self._bigram_set(item))
            if similarity >= THRESHOLD and (best is None or similarity > best[1]):
                best = (self.groups[item], similarity)
        return best


EMPTY = 0xFFFFFFFF


def bigrams(canonical_text: str) -> set[str]:
    return {canonical_text[i:i + 2] for i in range(len(canonical_text) - 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def group_texts(texts: Sequence[str], units: Sequence[str] | None = None) -> list[int]:
    """Group numbers (0, 1, … in order of first appearance) of texts grouped by matter,
    without a store: the grouping triage does, for one list (tests and the benchmark)."""
    return group_canonical([canonical(t) for t in texts], units)


def group_canonical(canon: Sequence[str], units: Sequence[str] | None = None) -> list[int]:
    """:func:`group_texts` of texts already in :func:`canonical` form."""
    sigs = signatures(canon)
    keys = band_keys(sigs).tolist()
    index = RepeatIndex()
    numbers: dict[str, int] = {}
    out: list[int] = []
    for i, text in enumerate(canon):
        unit = units[i] if units is not None else ""
        thash = text_hash(text)
        found = index.find_and_add(thash, unit, sigs[i], keys[i], text, str(i))
        group = found[0] if found else str(i)
        out.append(numbers.setdefault(group, len(numbers)))
    return out


@dataclass(frozen=True)
class Placed:
    group: str  # the clue key of the group's first clue
    repeat_of: str  # the first clue's id when this row repeats an earlier report, else ''
    similarity: float


class Grouper:
    """Groups the clues of a triage run with each other and with every clue in the store.

    Load once per run (:meth:`from_store`); call :meth:`place` for each classified row in
    input order. New clues' groups and signatures are returned by :meth:`place` for the
    store writer to save.
    """

    def __init__(self) -> None:
        self.index = RepeatIndex()
        self.known: dict[str, str] = {}  # clue key -> group
        self.first_id: dict[str, str] = {}  # group -> clue id of its first clue
        self.seen: set[str] = set()  # clue keys seen in this run

    @classmethod
    def from_store(cls, db: sqlite3.Connection) -> Grouper:
        grouper = cls()
        rows = db.execute("SELECT c.clue_key, c.clue_id, c.unit_key, c.group_key, c.text, s.text_hash, s.signature "
                          "FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key ORDER BY c.rowid").fetchall()
        if rows:
            sigs = np.frombuffer(b"".join(r["signature"] for r in rows), dtype=np.uint32).reshape(len(rows), NUM_PERM)
            keys = band_keys(sigs).tolist()
            for r, sig, k in zip(rows, sigs, keys, strict=True):
                group = r["group_key"] or r["clue_key"]
                grouper.known[r["clue_key"]] = group
                if group == r["clue_key"]:
                    grouper.first_id[group] = r["clue_id"]
                grouper.index.add(r["text_hash"], r["unit_key"], sig, k, group, LazyCanonical(r["text"]))
        for r in db.execute("SELECT c.clue_key, c.clue_id FROM clues c WHERE c.clue_key = c.group_key "
                            "OR c.group_key IS NULL"):
            grouper.first_id.setdefault(r["clue_key"], r["clue_id"])
        return grouper

    def place(self, key: str, clue_id: str, unit_key: str, thash: str, sig: np.ndarray, keys: Sequence[int],
              text: str) -> Placed:
        """Group one classified clue (``text`` in :func:`canonical` form)."""
        group = self.known.get(key)
        similarity = 1.0
        if group is None:
            found = self.index.find_and_add(thash, unit_key, sig, keys, text, key)
            group, similarity = found if found else (key, 1.0)
            self.known[key] = group
            self.first_id.setdefault(group, clue_id)
        first = group == key and key not in self.seen
        self.seen.add(key)
        return Placed(group, "" if first else self.first_id.get(group, ""), similarity)
