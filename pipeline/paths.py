"""Where things live: the shipped data folder and the state folder ("home").

Shipped defaults (corpus, user dictionary, stop words, routing table, samples) always
resolve to the project's ``data/`` folder, whatever the current directory is. State
(database, models, reports) lives under one home: ``--home``, else ``$CLUE_TRIAGE_HOME``,
else the project folder, so the model registry is the top-level ``models/`` and the
database and reports sit in ``var/``. Everything created there is owner-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
CORPUS_PATH = DATA_DIR / "clues.jsonl"
USERDICT_PATH = DATA_DIR / "userdict.txt"
STOPWORDS_PATH = DATA_DIR / "stopwords.txt"
ALARM_TERMS_PATH = DATA_DIR / "alarm_terms.txt"
ROUTING_PATH = DATA_DIR / "routing.toml"
SAMPLE_PATH = DATA_DIR / "samples" / "sample_clues.csv"
HOME_ENV = "CLUE_TRIAGE_HOME"


@dataclass(frozen=True)
class Home:
    """The state folder and the well-known places inside it."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def var(self) -> Path:
        return self.root / "var"

    @property
    def db_path(self) -> Path:
        return self.var / "clue-triage.db"

    @property
    def reports(self) -> Path:
        return self.var / "reports"

    def ensure(self) -> Home:
        """Create the home's folders, readable by the owner only. A home given with ``--home``
        or ``$CLUE_TRIAGE_HOME`` that already exists is made owner-only too (it holds clue
        text); the project folder, the default home, keeps its mode."""
        for folder in (self.root, self.models, self.var, self.reports):
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folders = [self.models, self.var, self.reports]
        if self.root != PROJECT_ROOT:
            folders.insert(0, self.root)
        for folder in folders:
            if folder.stat().st_mode & 0o077:
                os.chmod(folder, 0o700)
        return self


def resolve_home(home: str | os.PathLike[str] | None = None) -> Home:
    """The home given, else ``$CLUE_TRIAGE_HOME``, else the project folder."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or PROJECT_ROOT
    return Home(Path(chosen).expanduser().resolve())
