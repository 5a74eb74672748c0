"""Features as 64-bit keys, a fitted vocabulary, TF-IDF, and how familiar a clue is.

Every feature of a clue — a word, a pair of adjacent words, a character, a pair of
adjacent characters — becomes a 64-bit key: words through a keyed BLAKE2b digest
(memoised: a clue's words repeat across a batch), characters and pairs through integer
mixing in numpy, so a batch of clues turns into keys without building one string per
character n-gram. :class:`Vocabulary` keeps the sorted keys seen in training and maps a
batch onto its columns through a hash table (a pandas index of the keys): a probe or two per
key instead of the ~18 dependent memory reads of a binary search over the whole vocabulary.

Why a fitted vocabulary and not a plain hashing trick (what the first release did with
``FeatureHasher(2**18)``):

- *no collisions*: at 2^18 columns a third of the training features shared a column with
  another; 64-bit keys practically never do;
- *unseen features are dropped*: an n-gram never seen in training has no weight, but in a
  hashed TF-IDF row it still took a share of the row's norm (22 % on the corpus test split,
  about 35 % on text from registers the model was not trained on) and so shrank every known
  weight. Here a row is normalised over the features the model knows;
- *familiarity for free*: the share of a clue's features that the vocabulary knows tells
  how far the clue is from anything seen in training (:attr:`Batch.familiarity`).

The model file keeps the keys (digests), never the words: it holds no readable list of
clue words. Keys are not anonymisation — with the model file one can test whether a given
word was seen in training — so model files are as confidential as the clues.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ..text.features import Prepared, char_source

FEATURE_KINDS = ("word", "char", "word+char")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
# a distinct tag per kind of feature, so a character never collides with a word
_TAG_CHAR1 = np.uint64(0x1000000000000)
_TAG_CHAR2 = np.uint64(0x2000000000000000)
_TAG_WORD2 = np.uint64(0x5BD1E9955BD1E995)
_SALT = b"clue-triage/v2"


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class _WordKeys(dict[str, int]):
    """token -> 64-bit key (a memo: a clue's words repeat across a batch)."""

    def __missing__(self, token: str) -> int:
        key = self[token] = int.from_bytes(
            hashlib.blake2b(token.encode("utf-8"), digest_size=8, key=_SALT).digest(), "little")
        return key


_word_keys = _WordKeys()


def word_key(token: str) -> int:
    """The 64-bit key of one word (memoised, bounded)."""
    if len(_word_keys) > 500_000:  # a long run's vocabulary must not grow without end
        _word_keys.clear()
    return _word_keys[token]


def word_pair_key(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Keys of adjacent word pairs from the keys of their two words."""
    with np.errstate(over="ignore"):
        return _mix(first * _GOLD ^ (second + _TAG_WORD2))


@dataclass
class Words:
    """The word layer of a batch: every token in order, its document and its key."""

    tokens: list[str]
    rows: np.ndarray  # int64
    keys: np.ndarray  # uint64


@dataclass
class Keys:
    """All feature keys of a batch, as parallel arrays (row of the document, key)."""

    rows: np.ndarray  # int64
    keys: np.ndarray  # uint64
    n_docs: int
    words: Words | None = None  # kept for explanations; None for character-only features


def batch_keys(docs: Sequence[Prepared], kind: str = "word+char") -> Keys:
    """Feature keys of every document of a batch, computed batch-wide in numpy."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    rows_parts: list[np.ndarray] = []
    keys_parts: list[np.ndarray] = []
    n = len(docs)
    words = None
    if kind != "char":
        lengths = np.fromiter((len(d.tokens) for d in docs), dtype=np.int64, count=n)
        tokens = [t for d in docs for t in d.tokens]
        if len(_word_keys) > 500_000:  # a long run's vocabulary must not grow without end
            _word_keys.clear()
        keys = np.fromiter(map(_word_keys.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        same = rows[:-1] == rows[1:]
        rows_parts += [rows, rows[:-1][same]]
        keys_parts += [keys, word_pair_key(keys[:-1][same], keys[1:][same])]
        words = Words(tokens, rows, keys)
    if kind != "word":
        sources = [char_source(d) for d in docs]
        lengths = np.fromiter((len(s) + 1 for s in sources), dtype=np.int64, count=n)
        # one separator (code point 0) closes every document: pairs across it are dropped
        points = np.frombuffer("\0".join(sources).encode("utf-32-le") + b"\0\0\0\0", dtype=np.uint32).astype(np.uint64)
        rows = np.repeat(np.arange(n, dtype=np.int64), lengths)
        real = points != 0
        pair = real[:-1] & real[1:]
        rows_parts += [rows[real], rows[:-1][pair]]
        keys_parts += [
            _mix(points[real] | _TAG_CHAR1),
            _mix(((points[:-1][pair] << np.uint64(21)) | points[1:][pair]) | _TAG_CHAR2),
        ]
    if not rows_parts:
        return Keys(np.zeros(0, np.int64), np.zeros(0, np.uint64), n)
    return Keys(np.concatenate(rows_parts), np.concatenate(keys_parts), n, words)


Counts = tuple[np.ndarray, np.ndarray, sparse.csr_matrix]  # what :func:`counted` returns


def counted(keys: Keys) -> Counts:
    """(the distinct keys, sorted; each key's index among them; the count of each distinct
    key in each document, documents × distinct keys, each row's columns sorted). The
    costliest step of fitting a vocabulary: a caller that needs it for the same keys twice
    (a vocabulary and :func:`held_out_familiarity`) passes it to both."""
    distinct = np.unique(keys.keys)
    at = np.searchsorted(distinct, keys.keys)
    counts = sparse.coo_matrix((np.ones(len(at)), (keys.rows, at)), shape=(keys.n_docs, max(len(distinct), 1))).tocsr()
    counts.sum_duplicates()
    return distinct, at, counts


def held_out_familiarity(keys: Keys, fold_of: np.ndarray, min_df: int = 1, count: Counts | None = None) -> np.ndarray:
    """Each document's familiarity (see :attr:`Batch.familiarity`) against a vocabulary fitted
    on the documents of the other folds (``fold_of``: each document's fold, 0…k-1): the same
    values as fitting one :class:`Vocabulary` per fold, from one count of the keys. A key is
    known to fold f's vocabulary when at least ``min_df`` documents outside f have it.
    ``count``: :func:`counted` of ``keys``, if the caller has it."""
    n = keys.n_docs
    distinct, at, counts = count if count is not None else counted(keys)
    folds = int(fold_of.max()) + 1 if n else 1
    rows = np.repeat(np.arange(n), np.diff(counts.indptr))  # one entry per (document, key)
    df = np.bincount(counts.indices, minlength=len(distinct))
    df_fold = np.bincount(counts.indices * folds + fold_of[rows], minlength=len(distinct) * folds)
    known = df[at] - df_fold[at * folds + fold_of[keys.rows]] >= min_df
    seen = np.bincount(keys.rows[known], minlength=n)
    total = np.bincount(keys.rows, minlength=n)
    return np.divide(seen, total, out=np.zeros(n), where=total > 0)


@dataclass
class Batch:
    """A batch as the classifiers see it."""

    matrix: sparse.csr_matrix  # TF-IDF rows over the vocabulary, l2-normalised
    familiarity: np.ndarray  # share of each document's feature occurrences the vocabulary knows
    columns: np.ndarray | None = None  # column of each of the batch's keys (-1: unknown), in Keys order


class Vocabulary:
    """The feature keys seen in training, their IDF, and the TF-IDF transform.

    Parameters
    ----------
    kind : {"word", "char", "word+char"}
    binary : bool
        Term presence (1/0) instead of sublinear term frequency (1 + log tf).
    min_df : int
        Keep keys seen in at least this many training documents.
    """

    def __init__(self, kind: str = "word+char", binary: bool = False, min_df: int = 1) -> None:
        self.kind = kind
        self.binary = binary
        self.min_df = min_df
        self.keys_: np.ndarray = np.zeros(0, np.uint64)
        self.idf_: np.ndarray = np.zeros(0)
        self._index: pd.Index | None = None

    @property
    def size(self) -> int:
        return len(self.keys_)

    def fit(self, keys: Keys) -> Vocabulary:
        """Learn the keys seen in training and their document frequencies."""
        self._fit(keys)
        return self

    def _fit(self, keys: Keys, count: Counts | None = None) -> tuple[np.ndarray, sparse.csr_matrix, bool]:
        """Fit; return each key's column among the distinct keys, the counts per (document,
        column), and whether every distinct key was kept (then those are the vocabulary's
        columns and ``counts`` is what :meth:`transform` would count)."""
        distinct, at, counts = count if count is not None else counted(keys)
        df = np.bincount(counts.indices, minlength=len(distinct))  # each (document, key) once
        keep = df >= self.min_df
        self.keys_ = distinct[keep]
        self.idf_ = np.log((1.0 + keys.n_docs) / (1.0 + df[keep])) + 1.0
        self._index = None
        return at, counts, bool(keep.all()) and len(distinct) > 0

    def fit_transform(self, keys: Keys, count: Counts | None = None) -> Batch:
        """:meth:`fit` then :meth:`transform` of the same keys (the same matrix), counting once
        (``count``: :func:`counted` of ``keys``, if the caller has it)."""
        at, counts, every = self._fit(keys, count)
        if not every:
            return self.transform(keys)
        n = keys.n_docs
        total = np.bincount(keys.rows, minlength=n)
        familiarity = np.divide(total, total, out=np.zeros(n), where=total > 0)
        return self._tfidf(counts, familiarity, at)

    def _lookup(self) -> pd.Index:
        """The vocabulary's keys as a pandas index: its hash table (pandas' khash, built on
        first use) finds a key's column in one probe or two. Built once, before workers
        fork, so they share it; twice as fast as the sorted-bucket search it replaced."""
        if self._index is None:
            self._index = pd.Index(self.keys_, dtype=np.uint64, copy=False)
            self._index.get_indexer(self.keys_[:1])  # builds the hash table now
        return self._index

    def columns_of(self, keys: np.ndarray) -> np.ndarray:
        """Column of each key, or -1 where the vocabulary does not know it."""
        if not self.size or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        return self._lookup().get_indexer(keys).astype(np.int64, copy=False)

    def transform(self, keys: Keys) -> Batch:
        """TF-IDF rows over the known keys; unknown keys are dropped (and counted)."""
        n, size = keys.n_docs, max(self.size, 1)
        at = self.columns_of(keys.keys)
        known = at >= 0
        seen = np.bincount(keys.rows[known], minlength=n)
        total = np.bincount(keys.rows, minlength=n)
        familiarity = np.divide(seen, total, out=np.zeros(n), where=total > 0)
        # counts per (document, column): coo → csr sums duplicates and sorts columns per row
        counts = sparse.coo_matrix((np.ones(int(known.sum())), (keys.rows[known], at[known])), shape=(n, size)).tocsr()
        counts.sum_duplicates()
        return self._tfidf(counts, familiarity, at)

    def _tfidf(self, counts: sparse.csr_matrix, familiarity: np.ndarray, at: np.ndarray) -> Batch:
        n, size = counts.shape
        cols = counts.indices
        rows = np.repeat(np.arange(n), np.diff(counts.indptr))
        tf = np.ones(len(cols)) if self.binary else 1.0 + np.log(counts.data)
        values = tf * self.idf_[cols] if self.size else tf
        norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n))
        values = values / np.where(norms > 0, norms, 1.0)[rows]
        matrix = sparse.csr_matrix((values, cols, counts.indptr), shape=(n, size))
        return Batch(matrix, familiarity, at)

    # -- arrays, for a model file that cannot run code ---------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}keys": self.keys_, f"{prefix}idf": self.idf_}

    def config(self) -> dict[str, object]:
        return {"kind": self.kind, "binary": self.binary, "min_df": self.min_df}

    @classmethod
    def from_arrays(cls, config: dict[str, object], arrays: dict[str, np.ndarray], prefix: str) -> Vocabulary:
        vocab = cls(str(config["kind"]), bool(config["binary"]), int(config["min_df"]))  # type: ignore[call-overload]
        vocab.keys_ = np.asarray(arrays[f"{prefix}keys"], dtype=np.uint64)
        vocab.idf_ = np.asarray(arrays[f"{prefix}idf"], dtype=float)
        vocab._lookup()
        return vocab
