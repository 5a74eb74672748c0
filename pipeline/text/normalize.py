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
# C0/C1 controls except tab/newline, zero-width and bidi marks, BOM, lone surrogates (a
# JSON "\ud800" escape: they cannot be encoded, so OpenCC and the store would fail on them)
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ud800-\udfff]")
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


#: Full-width ASCII forms and the ideographic space, each replaced by its compatibility
#: decomposition (one starter character, itself stable) before NFKC: NFKC is unchanged by it
#: (NFKC(s) = NFC(NFKD(s)), and NFKD(s) is the same string either way), but afterwards
#: Chinese text is usually already in NFKC, which ``unicodedata.normalize`` sees by a quick
#: check instead of decomposing and recomposing every character (four times faster on clues,
#: whose punctuation is full width).
_FULL_WIDTH = {chr(c): unicodedata.normalize("NFKD", chr(c)) for c in [*range(0xFF01, 0xFF5F), 0x3000]}
_FULL_WIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")


def _half_width(match: re.Match[str]) -> str:
    return _FULL_WIDTH[match.group()]


def fold(text: str) -> str:
    """Everything :func:`normalize` does except Traditional → Simplified: the user's own
    characters, width-folded and cleaned (explanations are shown in this form)."""
    text = unicodedata.normalize("NFKC", _FULL_WIDTH_RE.sub(_half_width, text))
    text = _INVISIBLE.sub("", text)
    return _SPACE.sub(" ", text).strip()


def lookup_key(text: str) -> str:
    """How names typed by people are compared (column headers, label names): width-folded,
    Simplified, trimmed, lower-case and without invisible characters
    (:func:`fold_identifier`), so 線索內容 matches 线索内容 and ＦＵＲＴＨＥＲ matches further."""
    return _T2S.convert(fold_identifier(str(text))).lower()


#: Unicode's Default_Ignorable_Code_Point set (soft hyphen, zero-width and bidi marks, word
#: joiners, Hangul fillers, variation selectors, tags …): characters that show as nothing, so
#: two names that differ only by them look identical to a person
_IGNORABLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_IDENTIFIER_DROP = frozenset(("Cc", "Cf", "Cn", "Co", "Cs"))


def fold_identifier(text: str) -> str:
    """The one form in which identifiers typed by people are compared: unit names (for
    recusal) and reviewer ids.

    Width and compatibility forms are folded (NFKC), case is folded, and everything
    invisible is removed: format characters (Unicode category Cf: soft hyphen, zero-width
    space, word joiner, bidi controls, tags), variation selectors, Hangul fillers, controls
    and unassigned code points; runs of whitespace become one space, trimmed at the ends. ``"Ｚｈａｎｇ\u200b"`` and ``"zhang"`` fold to
    the same string, so they are one reviewer; a unit name with a zero-width space inside is
    the same unit. Traditional → Simplified is not done here (:func:`store.unit_key` adds it).
    """
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = unicodedata.normalize("NFKC", _IGNORABLE.sub("", text))
    kept = "".join(ch for ch in text if unicodedata.category(ch) not in _IDENTIFIER_DROP and not _IGNORABLE.match(ch))
    return _SPACE.sub(" ", kept).strip()


def han_count(text: str, at_most: int | None = None) -> int:
    """Number of CJK ideographs in ``text`` (counting stops at ``at_most`` when given)."""
    if at_most is None:
        return len(_HAN.findall(text))
    return sum(1 for _ in itertools.islice(_HAN.finditer(text), at_most))


def _common_hanzi() -> frozenset[str]:
    """GB2312 level 1: the 3,755 most common Simplified characters."""
    chars = set()
    for lead in range(0xB0, 0xD8):
        for trail in range(0xA1, 0xFF):
            try:
                chars.add(bytes((lead, trail)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return frozenset(chars)


_COMMON_HANZI = _common_hanzi()
_COMMON_RE = re.compile("[" + "".join(sorted(_COMMON_HANZI)) + "]")
_HAN_RUN = re.compile(_HAN.pattern + "+")
_COMMON_RUN = re.compile("[" + "".join(sorted(c for c in _COMMON_HANZI if _HAN.match(c))) + "]+")
GARBLED_MIN_HAN = 6
GARBLED_BELOW = 0.75


def common_share(normalized: str, at_most: int = 400) -> tuple[float, int]:
    """(share of the first ``at_most`` CJK ideographs that are common Simplified characters,
    how many ideographs were looked at) for Simplified text (:func:`normalize` first).

    Real clues, Simplified or converted from Traditional, score 0.97 or more on the corpus;
    UTF-8 read as GBK (mojibake such as 鍙嶆槧) scores 0.42 or less: the bytes of common
    characters become rare ones."""
    head = normalized[: 3 * at_most]
    # counted as the length a text loses when its runs of ideographs (or of common ones) are
    # removed: two regex passes over runs, no list of one-character strings
    n = len(head) - len(_HAN_RUN.sub("", head))
    if n > at_most:  # only the first ``at_most`` ideographs count
        hans = "".join(_HAN.findall(head)[:at_most])
        return len(_COMMON_RE.findall(hans)) / len(hans), len(hans)
    if not n:
        return 1.0, 0
    return (len(head) - len(_COMMON_RUN.sub("", head))) / n, n


def looks_garbled(normalized: str) -> bool:
    """True when the text looks like mojibake: enough ideographs, too few of them common."""
    share, n = common_share(normalized)
    return n >= GARBLED_MIN_HAN and share < GARBLED_BELOW


def is_traditional(text: str) -> bool:
    """True when ``text`` contains characters that OpenCC converts to Simplified."""
    folded = unicodedata.normalize("NFKC", text)
    return _T2S.convert(folded) != folded
