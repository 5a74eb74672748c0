"""The unit directory (被巡察单位名录): names, aliases, kind and parent of inspected units.

Clue files name units the way their writers do: 东城分局, 某市生態環境局東城分局, a typo.
Triage, recusal (回避) and the per-unit report work on the *resolved* unit: the directory
entry a written name stands for. A name resolves, in this order, by

1. its normalised form (width folded, Traditional → Simplified, spaces dropped; an exact
   match is a special case) equal to an entry's name or one of its aliases;
2. being the end of exactly one entry's name (东城分局 → 某市生态环境局东城分局), when at
   least three characters long.

An unresolved name is kept as written (its normalised form is its key) and counted. Adding
entries re-resolves the clues and recusals already stored, so a unit added after a triage
still protects a recused reviewer. Call :func:`add_unit`, :func:`import_units`,
:func:`list_units` and :func:`load_directory`.
"""

from __future__ import annotations

import difflib
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..store.store import now, transaction, unit_key
from ..text.normalize import lookup_key

NAME_COLUMNS = ("name", "单位名称", "名称", "单位", "被巡察单位")
ALIAS_COLUMNS = ("aliases", "alias", "别名", "简称")
KIND_COLUMNS = ("kind", "类型", "单位类型")
PARENT_COLUMNS = ("parent", "上级单位", "上级")
SUFFIX_MIN = 3
_SPLIT = re.compile(r"[、,，;；|/]+")


@dataclass(frozen=True)
class Unit:
    name: str
    key: str
    kind: str = ""
    parent: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    written: str
    key: str  # the entry's key when resolved, else the written name's normalised form
    unit: Unit | None
    how: str  # 'name', 'alias', 'suffix', 'unresolved' or 'empty'

    @property
    def resolved(self) -> bool:
        return self.unit is not None


@dataclass
class Directory:
    """The directory in memory: every name and alias by normalised key."""

    units: dict[str, Unit] = field(default_factory=dict)  # key -> unit
    aliases: dict[str, str] = field(default_factory=dict)  # alias key -> unit key

    def __bool__(self) -> bool:
        return bool(self.units)

    def resolve(self, written: str) -> Resolution:
        """The directory entry a written unit name stands for (see the module docstring)."""
        key = unit_key(written)
        if not key:
            return Resolution(written, "", None, "empty")
        if key in self.units:
            return Resolution(written, key, self.units[key], "name")
        if key in self.aliases:
            target = self.aliases[key]
            return Resolution(written, target, self.units[target], "alias")
        if len(key) >= SUFFIX_MIN:
            ends = {k for k in self.units if k.endswith(key)} | {t for a, t in self.aliases.items() if a.endswith(key)}
            if len(ends) == 1:
                target = ends.pop()
                return Resolution(written, target, self.units[target], "suffix")
        return Resolution(written, key, None, "unresolved")

    def suggest(self, written: str, n: int = 3) -> list[str]:
        """The entries whose names (or aliases) are nearest to a name that did not resolve."""
        names = {u.key: u.name for u in self.units.values()}
        names.update({a: self.units[t].name for a, t in self.aliases.items()})
        close = difflib.get_close_matches(unit_key(written), list(names), n=n * 2, cutoff=0.5)
        return list(dict.fromkeys(names[k] for k in close))[:n]

    def is_known(self, key: str) -> bool:
        """True when a stored unit key is a directory entry."""
        return key in self.units


def load_directory(db: sqlite3.Connection) -> Directory:
    directory = Directory()
    aliases: dict[str, list[str]] = {}
    for row in db.execute("SELECT alias_key, alias, unit_key FROM unit_aliases ORDER BY created, alias"):
        directory.aliases[row["alias_key"]] = row["unit_key"]
        aliases.setdefault(row["unit_key"], []).append(row["alias"])
    for row in db.execute("SELECT * FROM units ORDER BY name"):
        directory.units[row["unit_key"]] = Unit(row["name"], row["unit_key"], row["kind"], row["parent"],
                                                tuple(aliases.get(row["unit_key"], ())))
    return directory


def list_units(db: sqlite3.Connection) -> list[Unit]:
    """Every directory entry with its aliases, by name."""
    return sorted(load_directory(db).units.values(), key=lambda u: u.name)


def _add(db: sqlite3.Connection, name: str, aliases: Iterable[str], kind: str, parent: str) -> Unit:
    name = name.strip()
    key = unit_key(name)
    if not key:
        raise InputError("a unit needs a name")
    directory = load_directory(db)
    if key in directory.aliases:
        raise InputError(f"{name!r} is already an alias of {directory.units[directory.aliases[key]].name!r}")
    existing = directory.units.get(key)
    if existing is None:
        db.execute("INSERT INTO units VALUES (?, ?, ?, ?, ?)", (key, name, kind.strip(), parent.strip(), now()))
    elif (kind and kind != existing.kind) or (parent and parent != existing.parent):
        db.execute("UPDATE units SET kind = COALESCE(NULLIF(?, ''), kind), parent = COALESCE(NULLIF(?, ''), parent) "
                   "WHERE unit_key = ?", (kind.strip(), parent.strip(), key))
    for alias in aliases:
        alias = alias.strip()
        akey = unit_key(alias)
        if not akey or akey == key:
            continue
        if akey in directory.units:
            raise InputError(f"alias {alias!r} of {name!r} is itself a unit in the directory")
        owner = directory.aliases.get(akey)
        if owner is not None and owner != key:
            raise InputError(f"alias {alias!r} already stands for {directory.units[owner].name!r}")
        if owner is None:  # the directory is part of the record: an alias is added once
            db.execute("INSERT INTO unit_aliases VALUES (?, ?, ?, ?)", (akey, alias, key, now()))
        directory.aliases[akey] = key
    return Unit(name, key, kind, parent)


def _reresolve(db: sqlite3.Connection) -> int:
    """Point stored clues and recusals whose written names the directory did not know at the
    entries those names now resolve to; return the number of clues that changed. A clue or
    recusal already on an entry stays there (the store's guards allow no other change)."""
    directory = load_directory(db)
    changed = 0
    for (written,) in db.execute("SELECT DISTINCT unit FROM clues").fetchall():
        res = directory.resolve(written)
        if res.resolved:
            changed += db.execute("UPDATE clues SET unit_key = ? WHERE unit = ? AND unit_key != ? "
                                  "AND unit_key NOT IN (SELECT unit_key FROM units)",
                                  (res.key, written, res.key)).rowcount
    for row in db.execute("SELECT reviewer_id, unit_key, unit FROM recusals").fetchall():
        res = directory.resolve(row["unit"])
        if res.resolved and res.key != row["unit_key"] and not directory.is_known(row["unit_key"]):
            db.execute("UPDATE OR IGNORE recusals SET unit_key = ? WHERE reviewer_id = ? AND unit_key = ?",
                       (res.key, row["reviewer_id"], row["unit_key"]))
    return changed


def add_unit(db: sqlite3.Connection, name: str, aliases: Sequence[str] = (), kind: str = "", parent: str = "") -> Unit:
    """Add a unit (or aliases, kind, parent to an existing one) and re-resolve stored clues."""
    with transaction(db):
        _add(db, name, aliases, kind, parent)
        _reresolve(db)
    return load_directory(db).units[unit_key(name)]


@dataclass(frozen=True)
class UnitRow:
    name: str
    aliases: tuple[str, ...] = ()
    kind: str = ""
    parent: str = ""


def read_unit_file(path: str | os.PathLike[str]) -> list[UnitRow]:
    """Units from a file: .csv or .xlsx with a name column (``name``/``单位名称``/…) and
    optional ``aliases`` (separated by 、 , ; |), ``kind`` and ``parent`` columns; or .txt
    with one name per line."""
    from .io import open_clue_file

    path = Path(path)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise InputError("file not found", path=path)
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
        return [UnitRow(n) for n in names if n]
    cf = None
    for column in NAME_COLUMNS:
        try:
            cf = open_clue_file(path, text_col=column)
            break
        except InputError as exc:
            if "no column" not in str(exc) and "no text column" not in str(exc):
                raise
    if cf is None:
        raise InputError(f"no unit name column (looked for {', '.join(NAME_COLUMNS)})", path=path)

    def pick(names: Sequence[str]) -> str | None:
        wanted = {lookup_key(n) for n in names}
        return next((c for c in cf.columns if lookup_key(c) in wanted), None)

    alias_col, kind_col, parent_col = pick(ALIAS_COLUMNS), pick(KIND_COLUMNS), pick(PARENT_COLUMNS)
    rows = []
    for row in cf.rows():
        name = row.values[cf.text_col].strip()
        if not name:
            continue
        aliases = tuple(a.strip() for a in _SPLIT.split(row.values[alias_col]) if a.strip()) if alias_col else ()
        rows.append(UnitRow(name, aliases, row.values[kind_col].strip() if kind_col else "",
                            row.values[parent_col].strip() if parent_col else ""))
    return rows


@dataclass
class UnitImport:
    units: int = 0  # entries in the file
    added: int = 0  # new directory entries
    clues_resolved: int = 0  # stored clues now pointing at an entry


def import_units(db: sqlite3.Connection, path: str | os.PathLike[str]) -> UnitImport:
    """Add every unit of a file (see :func:`read_unit_file`), all or nothing."""
    rows = read_unit_file(path)
    result = UnitImport(units=len(rows))
    with transaction(db):
        before = {r[0] for r in db.execute("SELECT unit_key FROM units")}
        for row in rows:
            _add(db, row.name, row.aliases, row.kind, row.parent)
        result.added = len({r[0] for r in db.execute("SELECT unit_key FROM units")} - before)
        result.clues_resolved = _reresolve(db)
    return result


def unit_warnings(db: sqlite3.Connection, written: Iterable[str]) -> list[str]:
    """A message for each written unit name that resolves to no directory entry, with the
    nearest names (for ``reviewers add --recuse`` and ``rounds start``)."""
    directory = load_directory(db)
    messages = []
    for name in written:
        if directory.resolve(name).resolved:
            continue
        near = directory.suggest(name)
        if not directory:
            messages.append(f"unit {name!r}: the unit directory is empty, so it cannot be checked "
                            "(add units with: clue-triage units add / units import)")
        else:
            messages.append(f"unit {name!r} is not in the unit directory"
                            + (f"; did you mean: {'、'.join(near)}?" if near else "; add it with: clue-triage units add"))
    return messages

