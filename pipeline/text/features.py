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
    """Finds a term (lower-cased Simplified tokens) in the user's own width-folded text, to
    show it as written: in the user's script and case."""

    def __init__(self, normalized: str, folded: str) -> None:
        self.normalized, self.folded = normalized, folded
        self.lower = normalized.lower()
        # OpenCC t2s and lower() are character for character here: a span of one is a span of the other
        self.aligned = len(normalized) == len(folded) == len(self.lower)

    def shown(self, words: tuple[str, ...]) -> str | None:
        """``words`` as the user wrote them, or None for a pair the text does not hold side by
        side (a quotation mark or a space between the two words still counts, and is left out)."""
        joined = "".join(words)
        at = self.lower.find(joined)
        spans = [(at, at + len(joined))] if at >= 0 else []
        if not spans and len(words) == 2:
            found = re.search(re.escape(words[0]) + _PAIR_GAP + re.escape(words[1]), self.lower)
            if found:
                spans = [(found.start(), found.start() + len(words[0])), (found.end() - len(words[1]), found.end())]
        if not spans:
            return None if len(words) > 1 else joined
        source = self.folded if self.aligned else self.normalized
        return "".join(source[start:end] for start, end in spans)


#: what may stand between the two words of a pair the user wrote: one quotation mark or space
_PAIR_GAP = "[\\s\"'“”‘’「」『』《》]"


def is_shown(token: str) -> bool:
    """Whether a word may stand in the key terms: no bare placeholder (``<人名>``), no single
    character (mostly function words and fragments)."""
    return len(token) > 1 and token not in _CLASS_TOKEN_SET


_CLASS_TOKEN_SET = frozenset(CLASS_TOKENS.values())


def display_term(words: tuple[str, ...], script: ScriptMap) -> str | None:
    """A word or an adjacent word pair as the user wrote it (the clue's own script and case).

    A pair of tokens that the text does not hold side by side (a comma or a stop word fell
    between them) is ``None``: it is not something the user wrote, and shown joined it would
    be a made-up word, in Simplified even in a Traditional clue. See :meth:`ScriptMap.shown`."""
    return script.shown(words)
