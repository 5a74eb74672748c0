"""Features: word 1–2-grams, character 1–3-grams, or both, hashed and TF-IDF weighted.

A clue is segmented once (:func:`prepare`); every head's pipeline starts from the same
:class:`Prepared` documents, so two heads never segment the same text twice.

Features are hashed (:class:`~sklearn.feature_extraction.FeatureHasher`): the model file
stores no list of the words and character pairs it was trained on, transforms are fast,
and :func:`feature_index` recovers the column of any feature string to explain a
prediction. Hashing is not anonymisation: with the model file, one can test whether a
given word had weight in training, so model files are as confidential as the clues
(owner-only, like everything in the home).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import murmurhash3_32

from .normalize import normalize
from .segment import CLASS_TOKENS, mask, segment

FEATURE_KINDS = ("word", "char", "word+char", "char2", "word+char2")
N_FEATURES = 2**18
_PLACEHOLDER_CHARS = {name: chr(0xE000 + i) for i, name in enumerate(CLASS_TOKENS)}
CHAR_CLASS_TOKENS = {ch: CLASS_TOKENS[name] for name, ch in _PLACEHOLDER_CHARS.items()}


class Prepared(NamedTuple):
    """A clue as the model sees it: normalised text and its tokens."""

    text: str
    tokens: tuple[str, ...]


def prepare(texts: Iterable[str], normalized: bool = False) -> list[Prepared]:
    """Normalise (unless already done) and segment each text once."""
    out = []
    for text in texts:
        norm = text if normalized else normalize(text)
        out.append(Prepared(norm, tuple(segment(norm))))
    return out


def _char_source(text: str) -> str:
    masked = mask(text)
    for name, ch in _PLACEHOLDER_CHARS.items():
        masked = masked.replace(f" {name} ", ch)
    return "".join(masked.split())


def extract(doc: Prepared, kind: str) -> list[str]:
    """Feature strings of one document: ``w:`` word n-grams, ``c:`` character n-grams."""
    feats: list[str] = []
    if kind.startswith("word"):
        toks = doc.tokens
        feats.extend("w:" + t for t in toks)
        feats.extend(f"w:{a} {b}" for a, b in zip(toks, toks[1:], strict=False))
    if kind != "word":
        chars = _char_source(doc.text)
        for n in (1, 2) if kind.endswith("char2") else (1, 2, 3):
            feats.extend("c:" + chars[i : i + n] for i in range(len(chars) - n + 1))
    return feats


def feature_index(feature: str, n_features: int = N_FEATURES) -> int:
    """Column of ``feature`` in a :class:`FeatureHasher` output (same hash, seed 0)."""
    return abs(murmurhash3_32(feature, seed=0)) % n_features


class ClueFeatures(TransformerMixin, BaseEstimator):
    """Turn :class:`Prepared` documents into lists of feature strings.

    Parameters
    ----------
    kind : {"word", "char", "word+char", "char2", "word+char2"}
        Word 1–2-grams over jieba tokens, character 1–3-grams (``char2``: 1–2-grams) over the
        masked text, or both.
    """

    def __init__(self, kind: str = "word") -> None:
        self.kind = kind

    def fit(self, docs: Sequence[Prepared], y: object = None) -> ClueFeatures:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        self.n_docs_ = len(docs)
        return self

    def transform(self, docs: Sequence[Prepared]) -> list[list[str]]:
        return [extract(doc, self.kind) for doc in docs]


def display_feature(feature: str, normalized: str, original: str) -> str:
    """A feature as the user wrote it: class tokens kept, words in the clue's own script."""
    body = feature[2:]
    if feature.startswith("c:"):
        body = "".join(CHAR_CLASS_TOKENS.get(ch, ch) for ch in body)
    if body in CLASS_TOKENS.values() or any(tok in body for tok in CLASS_TOKENS.values()):
        return body.replace(" ", "")
    joined = body.replace(" ", "")
    return _in_original_script(joined, normalized, original) or joined


def _in_original_script(term: str, normalized: str, original: str) -> str | None:
    if normalized == original:
        return term
    from unicodedata import normalize as unicode_normalize

    from .normalize import to_simplified

    folded = unicode_normalize("NFKC", original)
    simplified = to_simplified(folded)
    if len(simplified) != len(folded):
        return None
    at = simplified.find(term)
    return folded[at : at + len(term)] if at >= 0 else None
