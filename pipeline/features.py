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

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import murmurhash3_32

from .normalize import fold, to_simplified
from .segment import CLASS_TOKENS, mask, segment_masked

FEATURE_KINDS = ("word", "char", "word+char", "char2", "word+char2", "word+bigram")
N_FEATURES = 2**18
_PLACEHOLDER_CHARS = {name: chr(0xE000 + i) for i, name in enumerate(CLASS_TOKENS)}


class Prepared(NamedTuple):
    """A clue as the model sees it: normalised text, its tokens, and its masked form."""

    text: str
    tokens: tuple[str, ...]
    masked: str = ""
    folded: str = ""  # the user's characters, width-folded (see normalize.fold); "" if unknown


def prepare_one(normalized: str, folded: str = "") -> Prepared:
    """Mask and segment one normalised text (masking once serves words and characters)."""
    masked = mask(normalized)
    return Prepared(normalized, tuple(segment_masked(masked)), masked, folded)


def prepare(texts: Iterable[str], normalized: bool = False) -> list[Prepared]:
    """Normalise (unless already done) and segment each text once."""
    out = []
    for text in texts:
        if normalized:
            out.append(prepare_one(text))
        else:
            folded = fold(text)
            out.append(prepare_one(to_simplified(folded), folded))
    return out


_PLACEHOLDER_RE = re.compile(" (" + "|".join(CLASS_TOKENS) + ") ")


def _char_source(doc: Prepared) -> str:
    """The masked text with each placeholder as one private-use character, spaces removed."""
    masked = doc.masked or mask(doc.text)
    if "MASK" in masked:
        masked = _PLACEHOLDER_RE.sub(lambda m: _PLACEHOLDER_CHARS[m.group(1)], masked)
    return "".join(masked.split())


def extract(doc: Prepared, kind: str) -> list[str]:
    """Feature strings of one document: ``w:``-prefixed word n-grams, bare character n-grams."""
    feats: list[str] = []
    if kind.startswith("word"):
        feats.extend(_word_features(doc.tokens))
    if kind != "word":
        # character n-grams go unprefixed (cheaper); word features all start with "w:"
        chars = _char_source(doc)
        for n in (2,) if kind.endswith("bigram") else (1, 2) if kind.endswith("char2") else (1, 2, 3):
            feats.extend(chars if n == 1 else [chars[i : i + n] for i in range(len(chars) - n + 1)])
    return feats


def feature_index(feature: str, n_features: int = N_FEATURES) -> int:
    """Column of ``feature`` in a :class:`FeatureHasher` output (same hash, seed 0)."""
    h = murmurhash3_32(feature, seed=0)
    if h == -(2**31):  # FeatureHasher's definition of abs(-2**31) % n
        return (2**31 - 1 - (n_features - 1)) % n_features
    return abs(h) % n_features


class ClueFeatures(TransformerMixin, BaseEstimator):
    """Turn :class:`Prepared` documents into lists of feature strings.

    Parameters
    ----------
    kind : {"word", "char", "word+char", "char2", "word+char2", "word+bigram"}
        Word 1–2-grams over jieba tokens, character 1–3-grams (``char2``: 1–2-grams;
        ``bigram``: 2-grams only) over the masked text, or both.
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


def _word_features(tokens: Sequence[str]) -> list[str]:
    return ["w:" + t for t in tokens] + [f"w:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


def word_columns(docs: Sequence[Prepared], n_features: int = N_FEATURES) -> list[dict[int, str]]:
    """Per document, ``{column: word feature}`` for its single-word features (the terms an
    explanation shows), hashing each distinct word of the batch once."""
    column_of = {t: feature_index("w:" + t, n_features) for t in {t for doc in docs for t in doc.tokens}}
    maps = []
    for doc in docs:
        names: dict[int, str] = {}
        for t in doc.tokens:
            names.setdefault(column_of[t], "w:" + t)
        maps.append(names)
    return maps


class ScriptMap:
    """Finds a Simplified term in the user's own (width-folded) text, to show it as written."""

    def __init__(self, normalized: str, folded: str) -> None:
        self.normalized, self.folded = normalized, folded
        self.aligned = len(normalized) == len(folded)  # OpenCC t2s is character for character here

    def original_form(self, term: str) -> str | None:
        if self.normalized == self.folded:
            return term
        if not self.aligned:
            return None
        at = self.normalized.find(term)
        return self.folded[at : at + len(term)] if at >= 0 else None


def display_feature(feature: str, script: ScriptMap) -> str:
    """A word feature (``w:…``) as the user wrote it: class tokens kept, words in the clue's
    own script."""
    body = feature.removeprefix("w:")
    if any(tok in body for tok in CLASS_TOKENS.values()):
        return body.replace(" ", "")
    joined = body.replace(" ", "")
    return script.original_form(joined) or joined
