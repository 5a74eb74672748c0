"""Repeat clues (同一问题多次反映): exact and near-duplicate texts grouped across runs.

Two clues are one matter when their normalised texts are equal (punctuation and spaces
ignored), or when the Jaccard similarity of their sets of character bigrams is at least
:data:`THRESHOLD`. Similarity is estimated with MinHash signatures and candidates are found
with locality-sensitive hashing (LSH, :data:`BANDS` bands of :data:`ROWS` values), so a new
clue is compared with a handful of earlier clues, not all of them. Near duplicates are
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
BANDS, ROWS = 16, 4  # BANDS * ROWS == NUM_PERM; candidates above Jaccard ≈ (1/16)^(1/4) = 0.5
THRESHOLD = 0.5  # estimated Jaccard of bigram sets to call two clues one matter
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


Bucket = int | list[int]


class RepeatIndex:
    """Earlier clues by exact text hash and by LSH band key.

    Signatures live in one growing uint32 matrix; a band bucket holds one item index (a
    list only when several items share it), so an index of 100,000 clues stays small.
    """

    def __init__(self) -> None:
        self.by_text: dict[str, str] = {}  # text hash -> group
        self.buckets: list[dict[int, Bucket]] = [{} for _ in range(BANDS)]
        self._sigs = np.empty((1024, NUM_PERM), dtype=np.uint32)
        self.groups: list[str] = []
        self.units: list[str] = []

    def __len__(self) -> int:
        return len(self.groups)

    def add(self, thash: str, unit_key: str, sig: np.ndarray, keys: Sequence[int], group: str) -> None:
        self.by_text.setdefault(thash, group)
        if int(sig[0]) == EMPTY and not (sig != EMPTY).any():
            return
        item = len(self.groups)
        if item == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.empty_like(self._sigs)])
        self._sigs[item] = sig
        self.groups.append(group)
        self.units.append(unit_key)
        for bucket, key in zip(self.buckets, keys, strict=True):
            held = bucket.get(key)
            if held is None:
                bucket[key] = item
            elif isinstance(held, list):
                held.append(item)
            else:
                bucket[key] = [held, item]

    def find(self, thash: str, unit_key: str, sig: np.ndarray, keys: Sequence[int]) -> tuple[str, float] | None:
        """The group of the most similar earlier clue of the same matter, or None."""
        group = self.by_text.get(thash)
        if group is not None:
            return group, 1.0
        candidates: set[int] = set()
        for bucket, key in zip(self.buckets, keys, strict=True):
            held = bucket.get(key)
            if held is None:
                continue
            if isinstance(held, list):
                candidates.update(held)
            else:
                candidates.add(held)
        items = [i for i in candidates if not (unit_key and self.units[i] and self.units[i] != unit_key)]
        if not items:
            return None
        similarity = (self._sigs[items] == sig).sum(axis=1) / NUM_PERM
        best = int(np.argmax(similarity))
        if similarity[best] < THRESHOLD:
            return None
        return self.groups[items[best]], float(similarity[best])


EMPTY = 0xFFFFFFFF


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
        found = index.find(thash, unit, sigs[i], keys[i])
        group = found[0] if found else str(i)
        index.add(thash, unit, sigs[i], keys[i], group)
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
        rows = db.execute("SELECT c.clue_key, c.clue_id, c.unit_key, c.group_key, s.text_hash, s.signature "
                          "FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key ORDER BY c.rowid").fetchall()
        if rows:
            sigs = np.frombuffer(b"".join(r["signature"] for r in rows), dtype=np.uint32).reshape(len(rows), NUM_PERM)
            keys = band_keys(sigs).tolist()
            for r, sig, k in zip(rows, sigs, keys, strict=True):
                group = r["group_key"] or r["clue_key"]
                grouper.known[r["clue_key"]] = group
                if group == r["clue_key"]:
                    grouper.first_id[group] = r["clue_id"]
                grouper.index.add(r["text_hash"], r["unit_key"], sig, k, group)
        for r in db.execute("SELECT c.clue_key, c.clue_id FROM clues c WHERE c.clue_key = c.group_key "
                            "OR c.group_key IS NULL"):
            grouper.first_id.setdefault(r["clue_key"], r["clue_id"])
        return grouper

    def place(self, key: str, clue_id: str, unit_key: str, thash: str, sig: np.ndarray, keys: Sequence[int]) -> Placed:
        group = self.known.get(key)
        similarity = 1.0
        if group is None:
            found = self.index.find(thash, unit_key, sig, keys)
            group, similarity = found if found else (key, 1.0)
            self.known[key] = group
            self.first_id.setdefault(group, clue_id)
            self.index.add(thash, unit_key, sig, keys, group)
        first = group == key and key not in self.seen
        self.seen.add(key)
        return Placed(group, "" if first else self.first_id.get(group, ""), similarity)
