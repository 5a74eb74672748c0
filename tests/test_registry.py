"""Versions, champion history, promotion and rollback."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.registry import Registry


@pytest.fixture
def three_versions(model_home):
    """v1 (champion), v2, v3: copies of the trained model registered as new versions."""
    registry = Registry(model_home.models)
    loaded = registry.load("v1")
    for _ in range(2):
        manifest = {k: v for k, v in loaded.manifest.items() if k not in ("version", "artifact", "created")}
        registry.save(loaded.model, manifest)
    return registry


def test_new_versions_are_numbered_and_start_as_candidates(three_versions):
    assert three_versions.versions() == ["v1", "v2", "v3"]
    assert three_versions.champion() == "v1"
    assert [three_versions.status(v) for v in ("v1", "v2", "v3")] == ["champion", "candidate", "candidate"]


def test_promote_then_rollback_keeps_the_history(three_versions):
    three_versions.promote("v3", by="zhang", reason="better on reviewed clues")
    assert three_versions.champion() == "v3"
    assert three_versions.status("v1") == "retired"
    assert three_versions.rollback(by="li", reason="over-flags") == "v1"
    assert three_versions.champion() == "v1"
    actions = [(e["action"], e["version"]) for e in three_versions.history() if e["action"] != "register"]
    assert actions == [("promote", "v1"), ("promote", "v3"), ("rollback", "v1")]
    last = three_versions.history()[-1]
    assert last["by"] == "li" and last["previous"] == "v3" and last["time"]


def test_rollback_without_an_earlier_champion_is_an_error(model_home):
    with pytest.raises(InputError, match="no earlier champion"):
        Registry(model_home.models).rollback()


def test_unknown_version_is_an_error(model_home):
    with pytest.raises(InputError, match="no model version 'v9'"):
        Registry(model_home.models).load("v9")


def test_a_half_written_version_is_never_visible(model_home, monkeypatch):
    """A save that fails leaves no version folder behind."""
    import joblib

    registry = Registry(model_home.models)
    loaded = registry.load()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", boom)
    with pytest.raises(OSError):
        registry.save(loaded.model, {})
    assert registry.versions() == ["v1"]
    assert not [p for p in model_home.models.iterdir() if p.name.startswith(".incoming")]


def test_model_card_lists_data_scores_and_weaknesses(model_home):
    card = Registry(model_home.models).model_card("v1")
    assert "model v1 (champion)" in card
    assert "attention/further" in card and "known weaknesses" in card
