"""The labeled corpus (``data/clues.jsonl``): loading, validation and splits."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .labels import AREA, ATTENTION
from .paths import CORPUS_PATH

SPLITS = ("train", "dev", "test")
SOURCES = ("信訪舉報", "個別談話", "調閱資料", "財務審計", "職能處室", "選人用人檢查", "現場檢查")
SCRIPTS = ("simplified", "traditional")
FIELDS = ("id", "text", "attention", "area", "source", "script", "unit", "split")


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
            clues.append(Clue(**{f: obj[f] for f in FIELDS}))
    if not clues:
        raise InputError("corpus is empty", path=path)
    return clues


def split(clues: Sequence[Clue], *names: str) -> list[Clue]:
    """The clues of the given split(s), in file order."""
    return [c for c in clues if c.split in names]
