"""The label contract (``shared/LABELS.md``): codes, Chinese names, and parsing.

Codes are stable identifiers; Chinese names are what users see. :func:`parse_label`
accepts a code or a name in Simplified or Traditional characters, with or without
full-width characters, so a reviewer can type either into a spreadsheet.
"""

from __future__ import annotations

from .errors import InputError
from .text.normalize import lookup_key

ATTENTION: tuple[str, ...] = ("further", "aware", "reference")
AREA: tuple[str, ...] = ("policy", "discipline", "organization", "rectification")
HEADS: dict[str, tuple[str, ...]] = {"attention": ATTENTION, "area": AREA}

#: Simplified display names (outputs are in Simplified, like the normalised text).
NAMES: dict[str, str] = {
    "further": "进一步了解关注类",
    "aware": "了解关注类",
    "reference": "参考类",
    "policy": "落实党的路线方针政策和党中央重大决策部署",
    "discipline": "落实全面从严治党战略部署",
    "organization": "落实新时代党的组织路线",
    "rectification": "落实巡视巡察整改",
}

#: Short area names used in tables and drop-down lists where space is tight.
SHORT_NAMES: dict[str, str] = {
    "further": "进一步了解关注类",
    "aware": "了解关注类",
    "reference": "参考类",
    "policy": "政策落实",
    "discipline": "从严治党",
    "organization": "组织路线",
    "rectification": "巡察整改",
}


def display_name(code: str, short: bool = False) -> str:
    """Chinese name of a label code."""
    return (SHORT_NAMES if short else NAMES)[code]


def _aliases() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for head, codes in HEADS.items():
        table[head] = {}
        for code in codes:
            for alias in (code, NAMES[code], SHORT_NAMES[code]):
                table[head][lookup_key(alias)] = code
    # common shorthand seen in office spreadsheets
    table["attention"][lookup_key("进一步了解")] = "further"
    table["attention"][lookup_key("了解")] = "aware"
    table["attention"][lookup_key("参考")] = "reference"
    return table


_ALIASES: dict[str, dict[str, str]] | None = None


def parse_label(head: str, value: str) -> str:
    """Return the label code for ``value`` under ``head``.

    >>> parse_label("attention", "進一步了解關注類")
    'further'

    Raises :class:`InputError` listing the allowed values when nothing matches.
    """
    global _ALIASES
    if head not in HEADS:
        raise InputError(f"unknown head {head!r}; use one of: {', '.join(HEADS)}")
    if _ALIASES is None:
        _ALIASES = _aliases()
    code = _ALIASES[head].get(lookup_key(str(value)))
    if code is None:
        # the same names as the review sheet's drop-down list, then the codes
        allowed = "、".join(SHORT_NAMES[c] for c in HEADS[head]) + f" (or the codes {', '.join(HEADS[head])})"
        shown = str(value) if len(str(value)) <= 20 else str(value)[:20] + "…"  # never echo a pasted clue
        raise InputError(f"unknown {head} label {shown!r}; allowed: {allowed}")
    return code
