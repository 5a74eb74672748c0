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
(:func:`signatures`, one hash per bigram), the LSH lookup (:class:`_Chains`, a chained hash
table in flat arrays whose keys are recomputed from the signatures), the estimates, and the
exact checks of all of a batch's uncertain pairs (:func:`bigram_rows`, a few row-wise
sorts for the batch); Python only walks the batch once to give each clue its group. Per
stored clue the index keeps numpy arrays only (about 350 bytes; ``bench/group_bench.py --memory``); texts
and clue ids of the latest :data:`TEXT_WINDOW` clues are kept, older ones are read from
the store when an exact check or a repeat needs them (texts in canonical form, stored next
to the signatures: not normalised again). ``bench/group_bench.py`` measures the
speed. Signatures and groups are kept in the store so later runs group with earlier ones.

The index holds the latest :data:`WINDOW` clues at most (:class:`Grouper`: two generations
of ``WINDOW // 2``; when a batch does not fit, the older one is dropped), so its memory is
bounded (about 100 MB) however large the store grows. The trade-off: **a near repeat of a
clue older than the latest** ``WINDOW // 2`` **to** ``WINDOW`` **clues is not grouped with
it** (250,000 clues are years of an inspection office's intake). Exact repeats (the same
canonical text) are always grouped: a text not in the index is looked up in the store by
its hash, and a stored clue that comes again keeps its stored group.
Triage computes canonical texts and signatures in its workers and calls
:meth:`Grouper.place` once per batch; :func:`group_texts` groups a plain list.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..store.store import rows_in
from ..text.normalize import normalize

NUM_PERM = 64
BANDS, ROWS = 32, 2  # BANDS * ROWS == NUM_PERM (two 16-bit values make a band's uint32): a pair at Jaccard 0.4 is a candidate with p = 0.996
THRESHOLD = 0.40  # Jaccard of the bigram sets from which two clues are one matter
#: a band bucket shared by more clues than this is made of very common bigrams and says
#: nothing (a pair at the threshold shares about 5 of 32 bands); it is no longer searched
CROWDED = 16
#: clues the index holds for near-repeat search: two generations of WINDOW // 2, the older
#: dropped when the window is full (about 100 MB; exact repeats are found in the store)
WINDOW = 250_000
TEXT_WINDOW = 20_000  # texts of the latest clues kept in memory (older ones are read from the store)
#: texts of older clues kept after they were read back (the least recently used go first):
#: the clues that match often are read and normalised once
READ_BACK_CACHE = 4096
#: slots of the band table to start with (4 MB): no rehash before 4M band entries (125,000 clues)
BAND_SLOT_BITS = 20
#: arrays that fill up grow by a quarter (not double): less room left empty, and a smaller
#: spike while the old and the new array are both held
GROWTH = 1.25
_CROWDED_BITS = 20  # a 1 MB filter in front of the crowded keys: most keys are not, and are not searched
SURE, FLOOR = 0.60, 0.25  # estimates above SURE are taken as they are, below FLOOR dropped; between, checked exactly
_MIX = np.uint64(0x9E3779B97F4A7C15)  # multiply-shift hash of a bigram to 32 bits
_BIN_BITS = 6  # 2**6 == NUM_PERM bins
_VALUE_MASK = (1 << (32 - _BIN_BITS)) - 1
EMPTY = 0xFFFFFFFF  # a signature value of a text without bigrams
_NOISE = re.compile(r"[\W_]+")  # punctuation, symbols, spaces: not part of what a clue says


def canonical(text: str) -> str:
    """The form of a text that repeats are compared in: normalised (width, Traditional →
    Simplified), without punctuation, symbols or spaces."""
    return canonical_of_normalized(normalize(text))


def canonical_of_normalized(normalized: str) -> str:
    """:func:`canonical` of a text that is already normalised (triage has it)."""
    return _NOISE.sub("", normalized)


def canonicals_of_normalized(normalized: Sequence[str]) -> list[str]:
    """:func:`canonical_of_normalized` of many texts at once (what triage's workers do per
    batch): the batch's code points looked up in a table of the kept ones, instead of one
    regular-expression pass per text (about three times faster)."""
    codes = np.frombuffer("".join(normalized).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    keep = _kept_in_bmp()[np.minimum(codes, 0xFFFF)]
    astral = np.flatnonzero(codes > 0xFFFF)  # rare (emoji and the like): asked one by one
    keep[astral] = [_NOISE.match(chr(c)) is None for c in codes[astral].tolist()]
    ends = np.cumsum(np.fromiter(map(len, normalized), dtype=np.int64, count=len(normalized)))
    kept = np.concatenate([[0], np.cumsum(keep)])[ends].tolist()  # code points kept up to each text's end
    joined = codes[keep].tobytes().decode("utf-32-le")
    return [joined[a:b] for a, b in itertools.pairwise([0, *kept])]


@functools.cache
def _kept_in_bmp() -> np.ndarray:
    """Whether :data:`_NOISE` keeps each code point of the BMP (built once per process, 12 ms)."""
    every = "".join(map(chr, range(1 << 16)))
    table = np.zeros(1 << 16, dtype=bool)
    table[np.frombuffer(_NOISE.sub("", every).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)] = True
    return table


def text_hash(canonical_text: str) -> str:
    """Key of an exact duplicate: the hash of the canonical text."""
    return hashlib.sha256(canonical_text.encode()).hexdigest()[:20]


def signatures(canonical_texts: Sequence[str]) -> np.ndarray:
    """MinHash signatures (``len(texts) × NUM_PERM``, uint32) of the character bigrams of
    canonical texts, by one-permutation hashing: each bigram is hashed once, the top six
    bits choose one of the 64 bins and each bin keeps its smallest value; an empty bin
    takes the value of the next non-empty bin to its right (going round past the last
    bin), offset by the distance ("densification", so two texts' signatures stay comparable bin by bin). One hash per
    bigram instead of 64 makes it about three times faster than classic MinHash, with the
    same results on the tests' paraphrase table and corpus. A text of fewer than two
    characters has no bigram; its row is all ``EMPTY`` and it is grouped by exact text only."""
    n = len(canonical_texts)
    lengths = np.fromiter(map(len, canonical_texts), dtype=np.int64, count=n)
    out = np.full((n + 1, NUM_PERM), np.uint32(EMPTY), dtype=np.uint32)  # row n: bigrams across two texts
    if not (lengths >= 2).any():
        return out[:n]
    codes = np.frombuffer("".join(canonical_texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    # a bigram is one 42-bit number (two code points); one multiply-shift hashes it to 32 bits
    hashed = ((((codes[:-1] << np.uint64(21)) | codes[1:]) * _MIX) >> np.uint64(32)).astype(np.uint32)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)[:-1]
    ends = np.cumsum(lengths)[:-1] - 1
    owner[ends[(ends >= 0) & (ends < len(owner))]] = n  # no bigram across two texts: the spare row takes it
    slots = owner * NUM_PERM + (hashed >> np.uint32(32 - _BIN_BITS))
    np.minimum.at(out.reshape(-1), slots, hashed & np.uint32(_VALUE_MASK))
    out = out[:n]
    # densification, all empty bins at once: the nearest filled bin to the right in the flat
    # array, or (past the row's end) the row's first filled bin
    full = out != EMPTY
    empty = ~full
    empty[~full.any(axis=1)] = False  # rows without bigrams stay EMPTY
    gaps = np.flatnonzero(empty)
    if len(gaps):
        filled = np.flatnonzero(full)
        flat = out.reshape(-1)
        source = filled[np.minimum(np.searchsorted(filled, gaps), len(filled) - 1)]
        row_start = gaps - gaps % NUM_PERM
        wrap = (source < gaps) | (source >= row_start + NUM_PERM)
        source[wrap] = filled[np.searchsorted(filled, row_start[wrap])]
        distance = source - gaps + np.where(wrap, NUM_PERM, 0)
        flat[gaps] = flat[source] + (distance.astype(np.uint32) << np.uint32(32 - _BIN_BITS))
    return out


class _Chains:
    """Entries by key, in a chained hash table made of flat numpy arrays: ``head`` (the
    latest entry of each slot) and ``next`` (the entry linked before it, ``-1`` at the end,
    ``UNLINKED`` for an entry not in the table). Keys are not stored: ``key_of(entries)``
    recomputes them (from the signatures, or from an array of hashes), so an entry costs
    4 bytes plus its share of the slots. Inserting and looking up a whole batch are a few
    numpy operations per step along the chains; no Python per clue, and no cost that grows
    with the number of entries (unlike inserting into sorted arrays)."""

    UNLINKED = -2
    LOAD = 4  # entries per slot before the slots double
    REHASH_CHUNK = 1 << 18  # entries rehashed at a time (temporaries of about 15 MB)

    def __init__(self, key_of: Callable[[np.ndarray], np.ndarray], bits: int = 12) -> None:
        self.key_of = key_of
        self.head = np.full(1 << bits, -1, dtype=np.int32)
        self.next = np.full(1024, self.UNLINKED, dtype=np.int32)
        self.linked = 0

    def reserve(self, entries: int, most: int | None = None) -> None:
        """Room for entry numbers below ``entries`` (and, growing, for no more than ``most``)."""
        if entries > len(self.next):
            grown = np.full(_capacity(entries, len(self.next), most), self.UNLINKED, dtype=np.int32)
            grown[:len(self.next)] = self.next
            self.next = grown

    def nbytes(self) -> int:
        return self.head.nbytes + self.next.nbytes

    def link(self, entries: np.ndarray) -> None:
        """Add entries (ascending numbers, each above every linked one)."""
        if not len(entries):
            return
        self.linked += len(entries)
        if self.linked > self.LOAD * len(self.head):
            self._rehash()
        self._link(entries.astype(np.int64), self.key_of(entries))

    def _link(self, entries: np.ndarray, keys: np.ndarray) -> None:
        slots = (keys & np.uint64(len(self.head) - 1)).astype(np.int64)
        order = _stable_order(slots)
        slots, entries = slots[order], entries[order]
        first = np.ones(len(slots), dtype=bool)
        first[1:] = slots[1:] != slots[:-1]
        previous = np.empty(len(entries), dtype=np.int64)
        previous[1:] = entries[:-1]
        self.next[entries] = np.where(first, self.head[slots], previous)
        last = np.ones(len(slots), dtype=bool)
        last[:-1] = first[1:]
        self.head[slots[last]] = entries[last]

    def _rehash(self) -> None:
        size = len(self.head)
        while self.linked > self.LOAD * size:
            size *= 2
        self.head = np.full(size, -1, dtype=np.int32)
        # a chunk of entries at a time, in ascending order: the same chains as linking all of
        # them at once, without temporaries of 8 bytes per linked entry (a 500 MB peak at
        # 600,000 clues: 32 band entries each)
        for lo in range(0, len(self.next), self.REHASH_CHUNK):
            entries = np.flatnonzero(self.next[lo:lo + self.REHASH_CHUNK] != self.UNLINKED) + lo
            if len(entries):
                self._link(entries, self.key_of(entries))

    def drop(self, below: int) -> None:
        """Forget the entries below ``below``; entry ``e`` becomes ``e - below``. A chain runs
        from newer to older entries (entries are linked in ascending order), so a chain that
        reaches a forgotten entry ends there. In place, a chunk at a time."""
        if below <= 0:
            return
        size = len(self.next)
        for lo in range(below, size, self.REHASH_CHUNK):
            part = self.next[lo:lo + self.REHASH_CHUNK]
            self.next[lo - below:lo - below + len(part)] = _renumbered(part, below)
        self.next[max(size - below, 0):] = self.UNLINKED
        for lo in range(0, len(self.head), self.REHASH_CHUNK):
            self.head[lo:lo + self.REHASH_CHUNK] = _renumbered(self.head[lo:lo + self.REHASH_CHUNK], below)
        self.linked = int(np.count_nonzero(self.next != self.UNLINKED))

    def find(self, keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query position, entry) of the entries with each query's key, and the number found
        per query; a query stops after ``limit + 1`` entries (a crowded key)."""
        keys = keys.astype(np.uint64)
        current = self.head[(keys & np.uint64(len(self.head) - 1)).astype(np.int64)].astype(np.int64)
        queries = np.arange(len(keys))
        counts = np.zeros(len(keys), dtype=np.int64)
        found_q, found_e = [], []
        while len(queries):
            alive = current >= 0
            queries, current = queries[alive], current[alive]
            if not len(queries):
                break
            hit = self.key_of(current) == keys[queries]
            found_q.append(queries[hit])
            found_e.append(current[hit])
            counts[queries[hit]] += 1
            current = self.next[current].astype(np.int64)
            alive = counts[queries] <= limit
            queries, current = queries[alive], current[alive]
        if not found_q:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), counts
        return np.concatenate(found_q), np.concatenate(found_e), counts

    def find_all(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, entry) of all the entries with each query's key: :meth:`find`
        without a limit, for keys known to have few entries (fewer steps per link)."""
        keys = keys.astype(np.uint64)
        current = self.head[(keys & np.uint64(len(self.head) - 1)).astype(np.int64)]
        queries = np.flatnonzero(current >= 0)
        current = current[queries].astype(np.int64)
        found_q, found_e = [], []
        while len(queries):
            hit = self.key_of(current) == keys[queries]
            found_q.append(queries[hit])
            found_e.append(current[hit])
            current = self.next[current]
            alive = current >= 0
            queries, current = queries[alive], current[alive].astype(np.int64)
        if not found_q:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(found_q), np.concatenate(found_e)


def _renumbered(links: np.ndarray, below: int) -> np.ndarray:
    """Links of a :class:`_Chains` with entries below ``below`` forgotten: later entries
    renumbered, forgotten ones the end of their chain (``-1``), ``UNLINKED`` kept."""
    return np.where(links >= below, links - below, np.minimum(links, -1)).astype(np.int32)


def _band_keys(values: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """The LSH key (uint64 holding 32 bits) of band ``bands`` whose ``ROWS`` 16-bit signature
    values are packed in ``values`` (uint32)."""
    whole = (bands.astype(np.uint64) << np.uint64(32)) | values.astype(np.uint64)
    return (whole * _MIX) >> np.uint64(32)


def _hash64(hex_text: str) -> int:
    """64 bits of a hexadecimal hash (a text hash or a clue key) as a number."""
    return int(hex_text[:16], 16)


def _hash64s(hex_texts: Sequence[str]) -> np.ndarray:
    """:func:`_hash64` of many hashes at once (uint64)."""
    if all(len(h) >= 16 for h in hex_texts):
        return np.frombuffer(bytes.fromhex("".join([h[:16] for h in hex_texts])), dtype=">u8").astype(np.uint64)
    return np.array([_hash64(h) for h in hex_texts], dtype=np.uint64)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values (``np.unique`` of numpy 2 hashes integers first: slower here)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _distinct_pairs(a: np.ndarray, b: np.ndarray, a_below: int, b_below: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs (``a[k]``, ``b[k]``), ordered by ``a`` then ``b``: each pair packed
    in one number and sorted, in 32 bits when they fit (twice as fast to sort as 64)."""
    shift = max(b_below - 1, 1).bit_length()
    wide = (max(a_below - 1, 1).bit_length() + shift) > 32
    dtype: type[np.unsignedinteger] = np.uint64 if wide else np.uint32
    packed = _distinct(np.left_shift(a.astype(dtype), shift, dtype=dtype) | b.astype(dtype))
    low = np.bitwise_and(packed, (1 << shift) - 1, dtype=dtype)
    return np.right_shift(packed, shift, dtype=dtype).astype(np.int64), low.astype(np.int64)


def _member(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in ``sorted_values`` (sorted, distinct)."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")``: for keys below 2**32 (band keys and slots), each
    key packed with its position in one uint64 and sorted (about 1.5 times faster than a
    stable argsort here); wider keys take the stable argsort."""
    if len(keys) >= 1 << 32 or (keys.dtype.itemsize > 4 and len(keys) and int(keys.max()) >= 1 << 32):
        return np.argsort(keys, kind="stable")
    packed = np.left_shift(keys.astype(np.uint64), np.uint64(32)) | np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _first_of_each(keys: np.ndarray) -> np.ndarray:
    """For each position, the first position with the same key (positions in order)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.empty(len(keys), dtype=np.int64)
    first[order] = order[np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))]
    return first


class RepeatIndex:
    """Earlier clues by exact text hash and by LSH band key, in compact numpy arrays (about
    350 bytes per clue: 16 bits of each signature value, the chains of the band and hash
    tables, unit and group numbers); clues are placed a batch at a time
    (:meth:`place_batch`), in order, each in the group of the most similar earlier clue of
    the same matter. Groups are item numbers (the group's first clue), or ``-1 - i`` for the
    ``i``-th name in :attr:`foreign` (a stored group whose first clue is not in the index).

    Texts are needed only for the exact check: those of the latest :data:`TEXT_WINDOW`
    items are kept; older ones come from ``fetch`` (item numbers → canonical texts)."""

    def __init__(self, fetch: Callable[[list[int]], list[str]] | None = None) -> None:
        self.fetch = fetch
        self.size = 0
        self._sigs = np.empty((1024, NUM_PERM), dtype=np.uint16)  # low 16 bits: equality is all that is used
        self._has = np.empty(1024, dtype=bool)  # has bigrams (else grouped by exact text only)
        self._units = np.empty(1024, dtype=np.int32)  # unit numbers (0: unknown)
        self._hashes = np.empty(1024, dtype=np.uint64)  # 64 bits of each text hash
        self.groups = np.empty(1024, dtype=np.int32)
        self._unit_ids: dict[str, int] = {"": 0}
        self._bands = _Chains(self._entry_keys, bits=BAND_SLOT_BITS)
        self._exact = _Chains(lambda items: self._hashes[items])  # only the first item of each text
        self._crowded = np.empty(0, dtype=np.uint32)  # band keys linked CROWDED + 1 times (sorted)
        self._crowded_bits = np.zeros(1 << _CROWDED_BITS, dtype=bool)  # by the keys' top bits: maybe crowded
        self._texts: dict[int, str] = {}
        self._read_back: OrderedDict[int, str] = OrderedDict()  # LRU of texts from ``fetch``
        #: text hashes → group numbers of clues no longer (or not) in the index, asked for the
        #: texts that are not in it (set by a grouper whose window has dropped clues)
        self.older: Callable[[list[str]], dict[str, int]] | None = None
        self.most: int | None = None  # the most items it will hold, when known: arrays grow no further

    def __len__(self) -> int:
        return self.size

    def nbytes(self) -> int:
        """Memory of the per-item arrays and tables (the text window not counted)."""
        arrays = (self._sigs, self._has, self._units, self._hashes, self.groups, self._crowded)
        return sum(a.nbytes for a in arrays) + self._bands.nbytes() + self._exact.nbytes()

    def _entry_keys(self, entries: np.ndarray) -> np.ndarray:
        # entry = item * BANDS + band: the band's two 16-bit values are the entry-th uint32
        values = self._sigs[:self.size].view(np.uint32).reshape(-1)[entries]
        return _band_keys(values, entries % BANDS)

    def _grow(self, n: int) -> np.ndarray:
        """Item numbers for ``n`` new items, with room for them."""
        first = self.size
        capacity = len(self._sigs)
        if first + n > capacity:
            capacity = _capacity(first + n, capacity, self.most)
            for name in ("_sigs", "_has", "_units", "_hashes", "groups"):
                setattr(self, name, _resized(getattr(self, name), capacity, first))
        self.size = first + n
        self._bands.reserve(self.size * BANDS, self.most * BANDS if self.most else None)
        self._exact.reserve(self.size, self.most)
        return np.arange(first, first + n, dtype=np.int64)

    def drop(self, below: int, groups: np.ndarray) -> None:
        """Forget the items below ``below``: item ``i`` becomes ``i - below``, and the groups
        of the remaining items become ``groups`` (numbered after the drop: a group whose first
        clue is forgotten is a foreign number). Arrays are moved in place, a chunk at a time."""
        if below <= 0:
            return
        left = self.size - below
        for name in ("_sigs", "_has", "_units", "_hashes"):
            _shift_down(getattr(self, name), below, left)
        self.groups[:left] = groups
        self.size = left
        self._bands.drop(below * BANDS)
        # the exact table links the first item of each text: built again, so that a text
        # whose first item was dropped is found at its first remaining one
        capacity = len(self._exact.next)
        self._exact = _Chains(lambda items: self._hashes[items])
        self._exact.reserve(capacity)
        self._exact.link(np.flatnonzero(_first_of_each(self._hashes[:left]) == np.arange(left)))
        self._texts = {i - below: t for i, t in self._texts.items() if i >= below}
        self._read_back = OrderedDict((i - below, t) for i, t in self._read_back.items() if i >= below)

    def _unit_numbers(self, units: Sequence[str]) -> list[int]:
        return [self._unit_ids.setdefault(u, len(self._unit_ids)) for u in units]

    def _add(self, hashes: np.ndarray, units: Sequence[str], sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store new items; returns their numbers and, per item, the first earlier item with
        the same text (``-1``: none)."""
        items = self._grow(len(hashes))
        self._sigs[items] = sigs & 0xFFFF
        self._has[items] = (sigs != EMPTY).any(axis=1)
        self._units[items] = self._unit_numbers(units)
        self._hashes[items] = hashes
        q, found, _ = self._exact.find(hashes, limit=0)
        same = np.full(len(items), -1, dtype=np.int64)
        same[q] = found
        first = _first_of_each(hashes)  # duplicates within the batch
        inside = (same < 0) & (first != np.arange(len(items)))
        same[inside] = items[first[inside]]
        self._exact.link(items[same < 0])
        return items, same

    def load(self, thashes: Sequence[str], units: Sequence[str], sigs: np.ndarray, groups: np.ndarray) -> None:
        """Add clues whose groups are known (item numbers or foreign numbers, see the class)."""
        items, _ = self._add(_hash64s(thashes), units, sigs)
        self.groups[items] = groups
        self._candidates(items)  # links the band entries; stored groups are not revisited

    def _is_crowded(self, keys: np.ndarray) -> np.ndarray:
        """Whether each band key was linked CROWDED + 1 times: the filter first, the sorted
        keys only for those it lets through."""
        crowded = self._crowded_bits[(keys >> np.uint64(32 - _CROWDED_BITS)).astype(np.int64)]
        crowded[crowded] = _member(self._crowded, keys[crowded].astype(np.uint32))
        return crowded

    def _candidates(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query position, earlier item) sharing an uncrowded band key, each pair once, and
        link the items' band entries (a key is linked at most ``CROWDED + 1`` times: a
        crowded bucket is never searched, so later entries need no room in it)."""
        has = np.flatnonzero(self._has[items])
        entries = (items[has, None] * BANDS + np.arange(BANDS)).reshape(-1)
        if not len(entries):
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        keys = self._entry_keys(entries)
        # a crowded key is neither searched nor linked again: its chain is not walked
        crowded = self._is_crowded(keys)
        walk = np.flatnonzero(~crowded)
        fq, fe = self._bands.find_all(keys[walk])  # an uncrowded key has at most CROWDED entries
        fq = walk[fq]
        earlier_counts = np.full(len(keys), CROWDED + 1, dtype=np.int64)
        earlier_counts[walk] = np.bincount(fq, minlength=len(keys))[walk] if len(fq) else 0
        # entries of this batch with the same key (ordered by entry: earlier items first)
        order = _stable_order(keys)  # entries ascend
        sorted_keys = keys[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
        start_at = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - start_at  # earlier entries of the batch with this key
        total = earlier_counts + rank
        uncrowded = total <= CROWDED
        self._bands.link(entries[uncrowded])
        filled = _distinct(keys[total == CROWDED].astype(np.uint32))  # linked now for the (CROWDED + 1)-th time
        if len(filled):
            self._crowded = np.insert(self._crowded, np.searchsorted(self._crowded, filled), filled)
            self._crowded_bits[(filled >> np.uint32(32 - _CROWDED_BITS)).astype(np.int64)] = True
        keep = uncrowded[fq]
        q_parts, c_parts = [fq[keep], ], [fe[keep] // BANDS]
        inner = uncrowded & (rank > 0)
        if inner.any():
            sorted_pos = np.empty(len(order), dtype=np.int64)
            sorted_pos[order] = np.arange(len(order))
            who = np.flatnonzero(inner)
            r = rank[who]
            base = np.repeat(start_at[sorted_pos[who]], r)
            offsets = np.arange(int(r.sum())) - np.repeat(np.cumsum(r) - r, r)
            q_parts.append(np.repeat(who, r))
            c_parts.append(entries[order[base + offsets]] // BANDS)
        q = has[np.concatenate(q_parts) // BANDS]
        cand = np.concatenate(c_parts)
        return _distinct_pairs(q, cand, len(items), self.size)

    def place_batch(self, thashes: Sequence[str], units: Sequence[str], sigs: np.ndarray,
                    texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Place clues in order: each joins the group of an earlier clue with the same text,
        else of the most similar earlier clue (Jaccard ≥ THRESHOLD, same or unknown unit),
        else starts its own group (its item number). Returns the items' group numbers and
        similarities."""
        n = len(thashes)
        items, same = self._add(_hash64s(thashes), units, sigs)
        self._texts.update(zip(items.tolist(), texts, strict=True))
        if self.fetch is not None and len(self._texts) > TEXT_WINDOW + TEXT_WINDOW // 2:
            oldest = min(int(items[-1]) - TEXT_WINDOW, int(items[0]) - 1)  # the batch's own texts stay
            self._texts = {i: t for i, t in self._texts.items() if i > oldest}
        q, cand = self._candidates(items)
        best, similarity = self._best(items, q, cand)
        # the same text as a clue outside the index (older than the window): its stored group
        outside = np.zeros(n, dtype=bool)
        outside_group = np.zeros(n, dtype=np.int64)
        if self.older is not None and (same < 0).any():
            ask = np.flatnonzero(same < 0).tolist()
            found = self.older([thashes[i] for i in ask])
            for i in ask:
                group = found.get(thashes[i])
                if group is not None:
                    outside[i], outside_group[i] = True, group
            best[outside] = -1
        # each clue joins the group of an earlier item (same text, else the most similar) or
        # starts its own; an earlier item of this batch is followed to the clue it joined
        joins = np.where(same >= 0, same, np.where(best >= 0, best, items))
        sims = np.where((same < 0) & (best >= 0), similarity, 1.0)
        inside = joins >= items[0]
        root = np.where(inside, joins - items[0], np.arange(n))
        while True:
            further = root[root]
            if (further == root).all():
                break
            root = further
        end = joins[root]
        groups = np.where(end >= items[0], items[root], self.groups[np.minimum(end, items[0] - 1).clip(0)])
        groups = np.where(outside[root], outside_group[root], groups).astype(np.int32)
        self.groups[items] = groups
        return groups, sims

    def _best(self, items: np.ndarray, q: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query, the most similar candidate at or above THRESHOLD (``-1``: none) and
        its similarity: the MinHash estimate above SURE, else the exact Jaccard of the
        bigram sets (computed for all such pairs of the batch at once)."""
        n = len(items)
        best, similarity = np.full(n, -1, dtype=np.int64), np.zeros(n)
        if not len(q):
            return best, similarity
        uq, uc = self._units[items[q]], self._units[cand]
        keep = (uq == uc) | (uq == 0) | (uc == 0)
        q, cand = q[keep], cand[keep]
        estimates = (self._sigs[items[q]] == self._sigs[cand]).sum(axis=1) / NUM_PERM
        keep = estimates >= FLOOR
        q, cand, sims = q[keep], cand[keep], estimates[keep]
        # a pair estimated below the best estimate above SURE of its query cannot win: not checked
        sure = np.zeros(n)
        np.maximum.at(sure, q, np.where(sims >= SURE, sims, 0.0))
        check = (sims < SURE) & (sims > sure[q])
        sims[(sims < SURE) & ~check] = 0.0
        if check.any():
            sims[check] = self._jaccards(items[q[check]], cand[check])
        keep = sims >= THRESHOLD
        q, cand, sims = q[keep], cand[keep], sims[keep]
        if len(q):
            order = np.lexsort((cand, -sims, q))  # per query: most similar first, then the earliest
            q, cand, sims = q[order], cand[order], sims[order]
            first = np.ones(len(q), dtype=bool)
            first[1:] = q[1:] != q[:-1]
            best[q[first]], similarity[q[first]] = cand[first], sims[first]
        return best, similarity

    def _jaccards(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact Jaccard similarity of the bigram sets of item pairs (``a[k]``, ``b[k]``)."""
        needed = np.unique(np.concatenate([a, b]))
        texts = self._texts_of(needed.tolist())
        values, offsets = bigram_rows(texts)
        la, lb = np.searchsorted(needed, a), np.searchsorted(needed, b)
        common = np.zeros(len(a), dtype=np.int64)
        lengths = np.diff(offsets)
        for lo in range(0, len(a), 1 << 20):  # pair numbers fit in the 22 bits above a bigram
            sl = slice(lo, lo + (1 << 20))
            common[sl] = _common_counts(values, offsets, la[sl], lb[sl])
        size_a, size_b = lengths[la], lengths[lb]
        union = size_a + size_b - common
        return np.where((size_a > 0) & (size_b > 0), common / np.maximum(union, 1), 0.0)

    def _texts_of(self, items: list[int]) -> list[str]:
        cache = self._read_back
        out, missing = [], []
        for i in items:
            text = self._texts.get(i)
            if text is None:
                text = cache.get(i)
                if text is None:
                    missing.append(i)
                else:
                    cache.move_to_end(i)
            out.append(text)
        if missing and self.fetch is not None:
            fetched = dict(zip(missing, self.fetch(missing), strict=True))
            cache.update(fetched)
            while len(cache) > READ_BACK_CACHE:
                cache.popitem(last=False)
        else:
            fetched = {}
        return [fetched.get(i, "") if text is None else text for i, text in zip(items, out, strict=True)]


def _common_counts(values: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sizes of the intersections of rows ``a[k]`` and ``b[k]`` of :func:`bigram_rows`: each
    side's elements tagged with their pair number are sorted already (rows are sorted, pair
    numbers increase), so one ``searchsorted`` of one side in the other finds the shared ones."""
    tagged = []
    for rows in (a, b):
        starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
        total = int(lengths.sum())
        at = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
        tagged.append((np.repeat(np.arange(len(rows), dtype=np.uint64), lengths) << np.uint64(42)) | values[at])
    left, right = tagged
    if not len(left) or not len(right):
        return np.zeros(len(a), dtype=np.int64)
    at = np.minimum(np.searchsorted(right, left), len(right) - 1)
    shared = left[right[at] == left]
    return np.bincount((shared >> np.uint64(42)).astype(np.int64), minlength=len(a))


def bigram_rows(canonical_texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bigrams` of many texts at once: the values of all rows (each row sorted) and
    the offsets of the rows (``len(texts) + 1``). Each row is sorted on its own: rows of
    about the same length are padded to one width (a power of two) and sorted along the
    rows, many short sorts that are several times faster than one sort of the whole batch;
    a batch of BMP characters only (the usual case) is sorted in 32 bits."""
    n = len(canonical_texts)
    lengths = np.fromiter(map(len, canonical_texts), dtype=np.int64, count=n)
    counts = np.maximum(lengths - 1, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    if not counts.any():
        return np.empty(0, dtype=np.uint64), offsets
    codes = np.frombuffer("".join(canonical_texts).encode("utf-32-le"), dtype=np.uint32)
    narrow = int(codes.max()) < 1 << 16
    if narrow:
        pairs = (codes[:-1] << np.uint32(16)) | codes[1:]
    else:
        wide = codes.astype(np.uint64)
        pairs = (wide[:-1] << np.uint64(21)) | wide[1:]
    pad = pairs.dtype.type(np.iinfo(pairs.dtype).max)
    starts = np.cumsum(lengths) - lengths
    widths = np.left_shift(1, np.ceil(np.log2(np.maximum(counts, 8))).astype(np.int64))
    widths[counts == 0] = 0
    padded = np.concatenate([pairs, np.full(int(widths.max()), pad)])
    blocks = []
    for width in np.unique(widths[widths > 0]).tolist():
        rows = np.flatnonzero(widths == width)
        block = np.lib.stride_tricks.sliding_window_view(padded, width)[starts[rows]]
        block[np.arange(width) >= counts[rows, None]] = pad  # the next texts' bigrams
        block.sort(axis=1)
        first = np.empty(block.shape, dtype=bool)
        first[:, 0] = True
        np.not_equal(block[:, 1:], block[:, :-1], out=first[:, 1:])  # the first of equal bigrams
        first &= np.arange(width) < counts[rows, None]  # not the padding (sorted last)
        counts[rows] = first.sum(axis=1)
        blocks.append((rows, block[first]))
    offsets[1:] = np.cumsum(counts)
    values = np.empty(int(offsets[-1]), dtype=pairs.dtype)
    for rows, distinct in blocks:
        of_row = counts[rows]
        values[np.repeat(offsets[rows] - (np.cumsum(of_row) - of_row), of_row) + np.arange(len(distinct))] = distinct
    if not narrow:
        return values, offsets
    wide = values.astype(np.uint64)  # to the 42-bit form of bigrams(): the order is the same
    return ((wide >> np.uint64(16)) << np.uint64(21)) | (wide & np.uint64(0xFFFF)), offsets


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
    numbers: dict[int, int] = {}
    out: list[int] = []
    for lo in range(0, len(canon), batch):
        part = list(canon[lo:lo + batch])
        groups, _ = index.place_batch([text_hash(t) for t in part],
                                      list(units[lo:lo + batch]) if units is not None else [""] * len(part),
                                      signatures(part), part)
        out.extend(numbers.setdefault(int(g), len(numbers)) for g in groups)
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


#: clue keys → (clue id, raw text) or (clue id, raw text, canonical text or None) of clues
#: the grouper no longer holds in memory: a canonical text given is used as it is, else the
#: raw text is normalised (the store keeps canonical texts of clues grouped since m024)
Lookup = Callable[[list[str]], dict[str, tuple[str, ...]]]


class Grouper:
    """Groups the clues of a triage run with each other and with the clues in the store.

    Load once per run (:meth:`from_store`); call :meth:`place` with the classified rows of
    each batch, in input order. Per clue it keeps numpy arrays only (the clue key, 10
    bytes; a flag; the index's arrays); the clue ids and texts of the latest
    :data:`TEXT_WINDOW` clues are kept, older ones are read through ``lookup`` (the
    store). Without ``lookup`` everything is kept (a plain list of clues).

    The index holds at most the latest ``window`` clues (:data:`WINDOW`, two generations of
    ``window // 2``): when a batch would not fit, the older generation is dropped, so near
    repeats are found among at least the latest ``window // 2`` clues and at most the latest
    ``window``. With the store (``db``), an exact repeat of an older clue is still found
    there (by text hash), and a stored clue that comes again keeps its stored group; without
    it, clues the window dropped are forgotten. Triage writes its clues to the store every
    ``STORE_EVERY`` rows, far fewer than ``window // 2``: every clue dropped is in the store.
    """

    def __init__(self, lookup: Lookup | None = None, window: int | None = None,
                 db: sqlite3.Connection | None = None) -> None:
        self.lookup = lookup
        self.window = WINDOW if window is None else window
        self.db = db
        self.index = RepeatIndex(self._fetch_texts if lookup is not None else None)
        self.index.most = self.window
        self._keys = np.empty((1024, 10), dtype=np.uint8)  # clue key of each item (20 hex digits)
        self._key64 = np.empty(1024, dtype=np.uint64)
        self._seen = np.empty(1024, dtype=bool)  # seen in this run
        #: 64-bit key hashes (sorted) of clues seen in this run that the window dropped: a
        #: clue that comes again after that is read back from the store, and is still a repeat
        self._seen_gone = np.zeros(0, dtype=np.uint64)
        self._known = _Chains(lambda items: self._key64[items])
        self._ids: dict[int, str] = {}  # clue id of the latest items
        self._foreign: dict[str, int] = {}  # stored group keys whose first clue is not in the index
        self._foreign_names: list[str] = []
        self._partial = False  # the store holds grouped clues the index does not

    @classmethod
    def from_store(cls, db: sqlite3.Connection, chunk: int = 5_000, window: int | None = None) -> Grouper:
        """The grouper of a run: the latest ``window`` grouped clues in the store, read
        ``chunk`` rows at a time (older ones are looked up in the store when needed). Small
        chunks: linking a chunk's band entries takes temporary arrays of its size (a
        250,000-clue window read 50,000 at a time peaked at 728 MB, 5,000 at a time 221 MB)."""
        grouper = cls(lambda keys: _stored(db, keys), window, db)
        since = db.execute("SELECT c.rowid FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key "
                           "ORDER BY c.rowid DESC LIMIT 1 OFFSET ?", (grouper.window - 1,)).fetchone()
        if since is not None and db.execute("SELECT 1 FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key "
                                            "WHERE c.rowid < ? LIMIT 1", since).fetchone():
            grouper._outside_the_index()
        cursor = db.execute(f"SELECT {_SIGNATURE_COLUMNS} FROM clue_signatures s JOIN clues c ON c.clue_key = s.clue_key "
                            "WHERE c.rowid >= ? ORDER BY c.rowid", (since[0] if since else 0,))
        while rows := cursor.fetchmany(chunk):
            grouper._load(rows)
        return grouper

    def _load(self, rows: list[tuple]) -> None:
        """Add stored clues (rows of :data:`_SIGNATURE_COLUMNS`) with their stored groups."""
        sigs = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.uint32).reshape(len(rows), NUM_PERM)
        first = len(self.index)
        self.index.load([r[3] for r in rows], [r[1] for r in rows], sigs, np.zeros(len(rows), dtype=np.int32))
        items = self._add_keys([r[0] for r in rows], first)
        self._seen[items] = False
        self.index.groups[items] = self._group_numbers([r[2] or r[0] for r in rows])

    def _outside_the_index(self) -> None:
        """From now on, look clues not in the index up in the store (if there is one)."""
        self._partial = self.db is not None
        if self._partial:
            self.index.older = self._older_groups

    def _older_groups(self, thashes: list[str]) -> dict[str, int]:
        """Group numbers of the earliest stored clue with each text hash, where there is one."""
        assert self.db is not None
        found = {thash: group for thash, group, _ in rows_in(
            self.db, "SELECT s.text_hash, COALESCE(c.group_key, c.clue_key), MIN(c.rowid) FROM clue_signatures s "
            "JOIN clues c ON c.clue_key = s.clue_key WHERE s.text_hash IN ({}) GROUP BY s.text_hash", thashes)}
        if not found:
            return {}
        return dict(zip(found, self._group_numbers(list(found.values())).tolist(), strict=True))

    def _forget(self, below: int) -> None:
        """Drop the items below ``below`` (the older generation of the window): later items
        are renumbered, a group whose first clue is dropped is named by its key (a foreign
        group), and foreign names no longer used are forgotten."""
        size = len(self.index)
        self._seen_gone = np.union1d(self._seen_gone, self._key64[:below][self._seen[:below]])
        groups = self.index.groups[below:size].astype(np.int64)
        gone = (groups >= 0) & (groups < below)
        if gone.any():
            firsts = _distinct(groups[gone])
            numbers = self._foreign_numbers(self._names(firsts.tolist()))
            groups[gone] = numbers[np.searchsorted(firsts, groups[gone])]
        groups[groups >= below] -= below
        foreign = groups < 0
        used = _distinct(-1 - groups[foreign])
        renumber = np.full(len(self._foreign_names), -1, dtype=np.int64)
        renumber[used] = np.arange(len(used))
        groups[foreign] = -1 - renumber[-1 - groups[foreign]]
        self._foreign_names = [self._foreign_names[i] for i in used.tolist()]
        self._foreign = {name: i for i, name in enumerate(self._foreign_names)}
        self.index.drop(below, groups.astype(np.int32))
        left = size - below
        for array in (self._keys, self._key64, self._seen):
            _shift_down(array, below, left)
        self._known.drop(below)
        self._ids = {i - below: v for i, v in self._ids.items() if i >= below}
        self._outside_the_index()

    def _add_keys(self, keys: Sequence[str], first: int, key64: np.ndarray | None = None) -> np.ndarray:
        items = np.arange(first, first + len(keys), dtype=np.int64)
        size = first + len(keys)
        if size > len(self._key64):
            capacity = _capacity(size, len(self._key64), self.window)
            self._keys = _resized(self._keys, capacity, first)
            self._key64 = _resized(self._key64, capacity, first)
            self._seen = _resized(self._seen, capacity, first)
        self._keys[items] = np.frombuffer(bytes.fromhex("".join(keys)), dtype=np.uint8).reshape(len(keys), 10)
        self._key64[items] = _hash64s(keys) if key64 is None else key64
        self._known.reserve(size, self.window)
        self._known.link(items)
        return items

    def _items_of(self, keys: Sequence[str]) -> np.ndarray:
        """Item number of each clue key (``-1``: not in the index)."""
        return self._items_of_hashes(_hash64s(keys))

    def _items_of_hashes(self, key64: np.ndarray) -> np.ndarray:
        out = np.full(len(key64), -1, dtype=np.int64)
        q, found, _ = self._known.find(key64, limit=0)
        out[q] = found
        return out

    def _group_numbers(self, group_keys: Sequence[str]) -> np.ndarray:
        numbers = self._items_of(group_keys)
        missing = np.flatnonzero(numbers < 0)
        numbers[missing] = self._foreign_numbers([group_keys[i] for i in missing.tolist()])
        return numbers.astype(np.int32)

    def _foreign_numbers(self, names: Sequence[str]) -> np.ndarray:
        """Group numbers of groups named by key whose first clue is not in the index."""
        for name in names:
            if name not in self._foreign:
                self._foreign[name] = len(self._foreign_names)
                self._foreign_names.append(name)
        return np.array([-1 - self._foreign[name] for name in names], dtype=np.int64)

    def _names(self, groups: Sequence[int]) -> list[str]:
        """The key of each group: its first clue's key, or a stored group key (one hexadecimal
        conversion for the whole batch)."""
        hexed = self._keys[np.asarray(groups, dtype=np.int64).clip(0)].tobytes().hex()
        return [hexed[20 * k:20 * k + 20] if g >= 0 else self._foreign_names[-1 - g] for k, g in enumerate(groups)]

    def _fetch_texts(self, items: list[int]) -> list[str]:
        assert self.lookup is not None
        names = self._names(items)
        stored = self.lookup(names)
        return [_canonical_of(stored[name]) if name in stored else "" for name in names]

    def place(self, clues: Sequence[Clue]) -> list[Placed]:
        """Group the classified rows of one batch, in input order."""
        if len(self.index) + len(clues) > self.window:
            self._forget(len(self.index) - min(len(self.index), self.window // 2))
        key64 = _hash64s([c.key for c in clues])
        items = self._items_of_hashes(key64)
        if self._partial and (items < 0).any():  # clues stored before the window: their stored groups
            assert self.db is not None
            missing = np.flatnonzero(items < 0)
            rows = _signature_rows(self.db, list(dict.fromkeys(clues[j].key for j in missing.tolist())))
            if rows:
                self._load(rows)
                items[missing] = self._items_of_hashes(key64[missing])
                back = items[missing]
                back = back[back >= 0]
                if len(back) and len(self._seen_gone):  # seen earlier in this run, before the window dropped it
                    self._seen[back] |= _member(self._seen_gone, self._key64[back])
        new = np.flatnonzero(items < 0)
        if len(new):
            first = _first_of_each(key64[new])
            is_first = first == np.arange(len(new))
            fresh = new[is_first].tolist()  # a key twice in the batch: placed once
            start = len(self.index)
            self.index.place_batch([clues[j].thash for j in fresh], [clues[j].unit_key for j in fresh],
                                   np.stack([clues[j].sig for j in fresh]), [clues[j].text for j in fresh])
            placed = self._add_keys([clues[j].key for j in fresh], start, key64[fresh])
            self._seen[placed] = False
            self._ids.update(zip(placed.tolist(), (clues[j].clue_id for j in fresh), strict=True))
            if self.lookup is not None and len(self._ids) > TEXT_WINDOW + TEXT_WINDOW // 2:
                oldest = min(int(placed[-1]) - TEXT_WINDOW, int(placed[0]) - 1)
                self._ids = {i: v for i, v in self._ids.items() if i > oldest}
            of_new = np.empty(len(new), dtype=np.int64)
            of_new[is_first] = placed
            items[new] = of_new[first]
        groups = self.index.groups[items]
        distinct = sorted(set(groups.tolist()))
        ids = self._first_ids(distinct)
        names = dict(zip(distinct, self._names(distinct), strict=True))
        # a group starts at its first clue, the first time that clue is seen in this run
        seen = self._seen[items] | (_first_of_each(items) != np.arange(len(items)))
        self._seen[items] = True
        starts = (groups == items) & ~seen
        return [Placed(names[group], "" if start else ids.get(group, ""), 1.0)
                for group, start in zip(groups.tolist(), starts.tolist(), strict=True)]

    def _first_ids(self, groups: list[int]) -> dict[int, str]:
        """The clue id of each group's first clue (the clue whose key names the group)."""
        out = {g: self._ids[g] for g in groups if g in self._ids}
        missing = [g for g in groups if g not in out]
        if missing and self.lookup is not None:
            names = self._names(missing)
            stored = self.lookup(names)
            out.update((g, stored[name][0]) for g, name in zip(missing, names, strict=True) if name in stored)
        return out


def _capacity(needed: int, current: int, most: int | None = None) -> int:
    """Rows to give an array that must hold ``needed`` and holds ``current``: :data:`GROWTH`
    times more, but no more than ``most`` (the most it will hold, when known)."""
    grown = int(current * GROWTH)
    return max(needed, grown if most is None else min(grown, most))


def _shift_down(array: np.ndarray, below: int, left: int) -> None:
    """Move rows ``below … below + left`` of ``array`` to ``0 … left``, in place, in chunks
    no longer than the shift (so no chunk overlaps the one it is copied to)."""
    for lo in range(0, left, below):
        array[lo:min(lo + below, left)] = array[below + lo:below + min(lo + below, left)]


def _resized(array: np.ndarray, capacity: int, used: int) -> np.ndarray:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


def _canonical_of(stored: tuple[str, ...]) -> str:
    """The canonical text of a clue read back: stored, else computed from its raw text."""
    return stored[2] if len(stored) > 2 and stored[2] is not None else canonical(stored[1])


#: what :meth:`Grouper._load` reads of a stored clue
_SIGNATURE_COLUMNS = "c.clue_key, c.unit_key, c.group_key, s.text_hash, s.signature"


def _signature_rows(db: sqlite3.Connection, keys: list[str]) -> list[tuple]:
    """Rows of :data:`_SIGNATURE_COLUMNS` of the grouped clues among ``keys``, in stored order."""
    rows = rows_in(db, f"SELECT c.rowid, {_SIGNATURE_COLUMNS} FROM clue_signatures s "
                       "JOIN clues c ON c.clue_key = s.clue_key WHERE c.clue_key IN ({})", keys)
    return [tuple(row)[1:] for row in sorted(rows, key=lambda row: row[0])]  # sqlite3.Row does not compare


def _stored(db: sqlite3.Connection, keys: list[str]) -> dict[str, tuple[str, ...]]:
    """Clue id, text and canonical text (None: not stored) of stored clues, by clue key."""
    return {key: (clue_id, text, canon) for key, clue_id, text, canon in rows_in(
        db, "SELECT c.clue_key, c.clue_id, c.text, s.canon FROM clues c "
        "LEFT JOIN clue_signatures s ON s.clue_key = c.clue_key WHERE c.clue_key IN ({})", list(dict.fromkeys(keys)))}
