"""The labeled corpus (``data/clues.jsonl``): loading, validation and splits."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..labels import AREA, ATTENTION
from ..paths import CORPUS_PATH

SPLITS = ("train", "dev", "test")
SOURCES = ("信訪舉報", "個別談話", "調閱資料", "財務審計", "職能處室", "選人用人檢查", "現場檢查")
SCRIPTS = ("simplified", "traditional")
FIELDS = ("id", "text", "attention", "area", "source", "script", "unit", "split")
#: Wave 2 (issue 9): every line also says its register; grounded clues name the public page
#: whose facts they restate, and counter-examples say which shortcut they break.
EXTRA_FIELDS = ("register", "source_url", "counter")
#: Registers: how a clue is written. The first seven are the intake voices of the first
#: release (one per ``source``); the last six are restated from public material (wave 2).
REGISTER_OF_SOURCE = {
    "信訪舉報": "letter", "個別談話": "talk_note", "調閱資料": "file_check", "財務審計": "finance_check",
    "職能處室": "division_lead", "選人用人檢查": "selection_check", "現場檢查": "site_check",
}
GROUNDED_REGISTERS = ("feedback_line", "case_notice", "citizen_message", "inspection_case",
                      "audit_finding", "media_report")
REGISTERS = (*REGISTER_OF_SOURCE.values(), *GROUNDED_REGISTERS)


@dataclass(frozen=True)
class Clue:
    """One labeled clue."""

    id: str
    text: str
    attention: str
    area: str
    source: str
    script: str
    unit: str
    split: str
    register: str = ""
    source_url: str = ""
    counter: str = ""

    def label(self, head: str) -> str:
        return str(getattr(self, head))


def load_corpus(path: str | os.PathLike[str] = CORPUS_PATH) -> list[Clue]:
    """Read and validate a corpus file; a bad line is an :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError("corpus file not found", path=path)
    allowed = {
        "attention": ATTENTION, "area": AREA, "source": SOURCES, "script": SCRIPTS, "split": SPLITS,
    }
    clues, seen = [], set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON ({exc.msg})", path=path, row=number) from None
            missing = [f for f in FIELDS if not isinstance(obj.get(f), str) or not obj.get(f)]
            if missing:
                raise InputError(f"missing field(s) {', '.join(missing)}", path=path, row=number)
            for name, values in allowed.items():
                if obj[name] not in values:
                    raise InputError(
                        f"{name} {obj[name]!r} not one of {', '.join(values)}", path=path, row=number, column=name
                    )
            if obj["id"] in seen:
                raise InputError(f"duplicate id {obj['id']!r}", path=path, row=number, column="id")
            seen.add(obj["id"])
            register = obj.get("register") or REGISTER_OF_SOURCE[obj["source"]]
            if register in GROUNDED_REGISTERS and not str(obj.get("source_url") or "").startswith("http"):
                raise InputError(f"register {register} needs the source_url it restates", path=path, row=number,
                                 column="source_url")
            if register not in REGISTERS:
                raise InputError(f"register {register!r} not one of {', '.join(REGISTERS)}", path=path, row=number,
                                 column="register")
            clues.append(Clue(**{f: obj[f] for f in FIELDS}, register=register,
                              source_url=str(obj.get("source_url") or ""), counter=str(obj.get("counter") or "")))
    if not clues:
        raise InputError("corpus is empty", path=path)
    return clues


def split(clues: Sequence[Clue], *names: str) -> list[Clue]:
    """The clues of the given split(s), in file order."""
    return [c for c in clues if c.split in names]


# -- shortcuts: cues that must not give a label away (issue 9) --------------------------

#: Opening formulas of the first release's registers; each gave the area away (e.g.
#: 大气处提供 → policy 95/95). Matched on the Simplified text.
OPENINGS: dict[str, str] = {
    "X处提供 / 执法支队提供 / 督察办提供": r"^.{0,8}?(?:处|执法支队|督察办)提供",
    "选人用人检查发现": r"^选人用人(?:专项)?检查发现",
    "财务审计发现 / 专项审计发现 / 审计发现": r"^(?:财务|专项)?审计发现",
    "谈话中": r"^(?:在)?谈话中",
    "有干部反映 / 谈到 / 提到": r"^有干部(?:反映|谈到|提到|说|认为)",
    "各位领导好": r"^各位领导",
    "调阅 / 查阅": r"^(?:调阅|查阅)",
}
SUGGESTION_CLOSE = r"(?:建议|希望|请|恳请|呼吁)[^。！？!?]*[。！？!?]?\s*$"
DATED = r"\d{4}\s?年|\d{1,2}\s?月\s?\d{1,2}\s?[日号]"


@dataclass(frozen=True)
class Shortcut:
    """How purely a surface cue predicts one label in a corpus."""

    cue: str
    head: str
    n: int
    label: str  # the label the cue most often goes with
    purity: float  # share of cue items with that label


def shortcuts(clues: Sequence[Clue]) -> list[Shortcut]:
    """Label purity of each cue the first release's corpus leaked (a person named surname+某,
    a suggestion closing, a date, each opening formula)."""
    import re
    from collections import Counter

    from ..text.normalize import to_simplified
    from ..text.segment import PERSON_REF

    texts = [to_simplified(c.text) for c in clues]

    def purity(cue: str, head: str, hits: list[int], label: str | None = None) -> Shortcut:
        counts = Counter(clues[i].label(head) for i in hits)
        chosen = label or (counts.most_common(1)[0][0] if counts else "")
        return Shortcut(cue, head, len(hits), chosen, counts[chosen] / len(hits) if hits else 0.0)

    person = re.compile(PERSON_REF)
    close = re.compile(SUGGESTION_CLOSE)
    dated = re.compile(DATED)
    out = [
        purity("surname+某 named", "attention", [i for i, t in enumerate(texts) if person.search(t)], "further"),
        purity("suggestion closing", "attention", [i for i, t in enumerate(texts) if close.search(t[-60:])], "reference"),
        purity("dated", "attention", [i for i, t in enumerate(texts) if dated.search(t)], "further"),
    ]
    for name, pattern in OPENINGS.items():
        rx = re.compile(pattern)
        out.append(purity(f"opening {name}", "area", [i for i, t in enumerate(texts) if rx.search(t)]))
    return out
