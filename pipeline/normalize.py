"""Text normalisation: full/half width, Traditional → Simplified, control characters.

Run before segmentation because jieba's dictionary is Simplified: on Traditional text it
falls back to single characters (jieba issues 25, 67). The original text is kept by callers
for display; :func:`normalize` is only what the model sees.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

import opencc

_T2S = opencc.OpenCC("t2s")
# C0/C1 controls except tab/newline, zero-width and bidi marks, BOM
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_SPACE = re.compile(r"\s+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def to_simplified(text: str) -> str:
    """Traditional → Simplified with OpenCC's ``t2s`` table (character and phrase level)."""
    return _T2S.convert(text)


def normalize(text: str) -> str:
    """Return the form of ``text`` the model sees.

    NFKC folds full-width letters, digits and punctuation (``２０２３年``, ``，``) to their
    half-width forms; invisible and control characters are dropped; any run of whitespace
    becomes one space; Traditional characters become Simplified.
    """
    return _T2S.convert(fold(text))


def fold(text: str) -> str:
    """Everything :func:`normalize` does except Traditional → Simplified: the user's own
    characters, width-folded and cleaned (explanations are shown in this form)."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    return _SPACE.sub(" ", text).strip()


def lookup_key(text: str) -> str:
    """How names typed by people are compared (column headers, label names): width-folded,
    Simplified, trimmed, lower-case, so 線索內容 matches 线索内容 and ＦＵＲＴＨＥＲ matches further."""
    return _T2S.convert(unicodedata.normalize("NFKC", str(text))).strip().lower()


def han_count(text: str, at_most: int | None = None) -> int:
    """Number of CJK ideographs in ``text`` (counting stops at ``at_most`` when given)."""
    if at_most is None:
        return len(_HAN.findall(text))
    return sum(1 for _ in itertools.islice(_HAN.finditer(text), at_most))


def is_traditional(text: str) -> bool:
    """True when ``text`` contains characters that OpenCC converts to Simplified."""
    folded = unicodedata.normalize("NFKC", text)
    return _T2S.convert(folded) != folded
