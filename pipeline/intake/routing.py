"""Hand-over (移交去向) from the editable rule table ``data/routing.toml``."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from ..labels import AREA, ATTENTION
from ..paths import ROUTING_PATH


@dataclass(frozen=True)
class Rule:
    attention: str
    area: str
    handover: str

    def matches(self, attention: str, area: str) -> bool:
        return self.attention in ("*", attention) and self.area in ("*", area)


@dataclass(frozen=True)
class Routing:
    rules: tuple[Rule, ...]

    def handover(self, attention: str, area: str) -> str:
        """The receiving body for a clue with these labels."""
        for rule in self.rules:
            if rule.matches(attention, area):
                return rule.handover
        return ""

    def bodies(self) -> list[str]:
        """Receiving bodies in rule order, each once."""
        return list(dict.fromkeys(rule.handover for rule in self.rules))


@lru_cache(maxsize=4)
def load_routing(path: str | os.PathLike[str] = ROUTING_PATH) -> Routing:
    """Read and check the rule table; every label combination must reach some body."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("routing table not found", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML ({exc})", path=path) from None
    rules = []
    for number, raw in enumerate(data.get("rule", []), 1):
        att, area, body = raw.get("attention", "*"), raw.get("area", "*"), str(raw.get("handover", "")).strip()
        if att not in ("*", *ATTENTION) or area not in ("*", *AREA) or not body:
            raise InputError(f"rule {number} needs attention, area (codes or *) and a handover name", path=path)
        rules.append(Rule(att, area, body))
    routing = Routing(tuple(rules))
    missing = [f"{a}/{b}" for a in ATTENTION for b in AREA if not routing.handover(a, b)]
    if missing:
        raise InputError(f"no rule covers {', '.join(missing)}", path=path)
    return routing
