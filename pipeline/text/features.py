"""What a clue is to the model: normalised text, tokens, masked form (segmented once).

A clue is normalised, masked and segmented once (:func:`prepare`); both heads start from
the same :class:`Prepared` documents. :mod:`pipeline.model.vectorize` turns them into feature
keys; :class:`ScriptMap` shows a term in the script the user wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from .normalize import fold, to_simplified
from .segment import CLASS_TOKENS, mask, segment_masked

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


def char_source(doc: Prepared) -> str:
    """The masked text with each placeholder as one private-use character, spaces removed."""
    masked = doc.masked or mask(doc.text)
    if "MASK" in masked:
        masked = _PLACEHOLDER_RE.sub(lambda m: _PLACEHOLDER_CHARS[m.group(1)], masked)
    return "".join(masked.split())


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


def is_shown(token: str) -> bool:
    """Whether a word may stand in the key terms: no bare placeholder (``<人名>``), no single
    character (mostly function words and fragments)."""
    return len(token) > 1 and token not in _CLASS_TOKEN_SET


_CLASS_TOKEN_SET = frozenset(CLASS_TOKENS.values())


def display_term(words: tuple[str, ...], script: ScriptMap) -> str | None:
    """A word or an adjacent word pair as the user wrote it (in the clue's own script).

    A pair of tokens that the text does not hold side by side (punctuation or a stop word
    fell between them) is ``None``: it is not something the user wrote, and shown joined it
    would be a made-up word, in Simplified even in a Traditional clue."""
    joined = "".join(words)
    if len(words) > 1 and joined not in script.normalized.lower():  # tokens are lower-cased
        return None
    return script.original_form(joined) or joined
