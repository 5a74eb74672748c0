"""Versions, champion history, promotion and rollback."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.model.registry import Registry


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


def test_repeated_rollbacks_walk_back_through_the_history(three_versions):
    three_versions.promote("v2")
    three_versions.promote("v3")
    assert three_versions.rollback() == "v2"
    assert three_versions.rollback() == "v1"
    with pytest.raises(InputError, match="no earlier champion"):
        three_versions.rollback()


def test_promoting_the_champion_again_is_refused(three_versions):
    with pytest.raises(InputError, match="already the champion"):
        three_versions.promote("v1")


def test_promotion_is_refused_if_the_champion_changed_meanwhile(three_versions):
    three_versions.promote("v2")
    with pytest.raises(InputError, match="champion changed to v2 meanwhile"):
        three_versions.promote("v3", expected_champion="v1")


@pytest.mark.parametrize("name", ["../../outside", "v1/../v1", "latest", "v01x"])
def test_only_version_names_are_accepted(model_home, name):
    with pytest.raises(InputError, match="not a model version"):
        Registry(model_home.models).load(name)


def test_an_unregistered_version_folder_is_never_read(model_home, monkeypatch):
    """A folder dropped into models/ with a self-consistent manifest is still refused."""
    import json
    import shutil

    import numpy as np

    shutil.copytree(model_home.models / "v1", model_home.models / "v9")
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("read")))
    manifest = json.loads((model_home.models / "v9" / "manifest.json").read_text())
    manifest["version"] = "v9"
    (model_home.models / "v9" / "manifest.json").write_text(json.dumps(manifest))
    from pipeline.errors import ModelIntegrityError

    with pytest.raises(ModelIntegrityError, match="not registered"):
        Registry(model_home.models).load("v9")


def test_a_lost_registry_file_is_an_integrity_error_not_an_empty_registry(model_home):
    from pipeline.errors import ModelIntegrityError

    (model_home.models / "registry.json").unlink()
    with pytest.raises(ModelIntegrityError, match="registry.json is missing"):
        Registry(model_home.models).champion()


def test_rollback_without_an_earlier_champion_is_an_error(model_home):
    with pytest.raises(InputError, match="no earlier champion"):
        Registry(model_home.models).rollback()


def test_unknown_version_is_an_error(model_home):
    with pytest.raises(InputError, match="no model version 'v9'"):
        Registry(model_home.models).load("v9")


def test_a_half_written_version_is_never_visible(model_home, monkeypatch):
    """A save that fails leaves no version folder behind."""
    import numpy as np

    registry = Registry(model_home.models)
    loaded = registry.load()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        registry.save(loaded.model, {})
    assert registry.versions() == ["v1"]
    assert not [p for p in model_home.models.iterdir() if p.name.startswith(".incoming")]


def test_model_card_lists_data_scores_and_weaknesses(model_home):
    card = Registry(model_home.models).model_card("v1")
    assert "model v1 (champion)" in card
    assert "attention/further" in card and "known weaknesses" in card
    assert "liblinear tolerance 0.01" in card


def test_a_changed_user_dictionary_is_reported_when_loading(model_home, tmp_path, monkeypatch):
    import pipeline.model.registry as registry_module

    assert Registry(model_home.models).load().warnings == []
    edited = tmp_path / "userdict.txt"
    edited.write_text("巡察 3000 n\n", encoding="utf-8")
    monkeypatch.setattr(registry_module, "USERDICT_PATH", edited)
    warnings = Registry(model_home.models).load().warnings
    assert len(warnings) == 1 and "userdict.txt changed since model v1" in warnings[0]
