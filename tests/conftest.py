"""Shared fixtures: every test gets its own home; a model is trained once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.paths import CORPUS_PATH, HOME_ENV, Home, resolve_home


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh, empty home for each test (``$CLUE_TRIAGE_HOME`` points at it)."""
    folder = tmp_path / "home"
    monkeypatch.setenv(HOME_ENV, str(folder))
    return resolve_home(folder).ensure()


@pytest.fixture(autouse=True)
def workbooks_reopen(monkeypatch: pytest.MonkeyPatch):
    """Every workbook this code writes during a test is reopened afterwards with openpyxl's
    full reader (issue 11: one illegal character once made every .xlsx unreadable while
    the command exited 0)."""
    from openpyxl import load_workbook

    from pipeline.intake import io as pipeline_io
    from pipeline.review import workbooks

    written: list[Path] = []
    real_save, real_exit = workbooks._save, pipeline_io.TableWriter.__exit__

    def save(book, path):
        real_save(book, path)
        written.append(Path(path))

    def exit_(self, exc_type, exc, tb):
        result = real_exit(self, exc_type, exc, tb)
        if exc_type is None and self.format == "xlsx":
            written.append(self.path)
        return result

    monkeypatch.setattr(workbooks, "_save", save)
    monkeypatch.setattr(pipeline_io.TableWriter, "__exit__", exit_)
    yield
    for path in written:
        if path.exists() and path.stat().st_size < 20_000_000:
            load_workbook(path).close()


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of the corpus (every second train clue, every dev and test clue): fast to train."""
    lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
    kept, train_seen = [], 0
    for line in lines:
        row = json.loads(line)
        if row["split"] == "train":
            train_seen += 1
            if train_seen % 2:
                continue
        kept.append(line)
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Home:
    """A home with one champion model trained on the small corpus (session-wide, read-only)."""
    from pipeline.model.train import train_and_register

    home = resolve_home(tmp_path_factory.mktemp("trained")).ensure()
    train_and_register(home, small_corpus, seed=0)
    return home


@pytest.fixture
def model_home(home: Home, trained_home: Home) -> Home:
    """This test's home, holding a copy of the session's trained model."""
    shutil.copytree(trained_home.models, home.models, dirs_exist_ok=True)
    return home
