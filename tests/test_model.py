"""Train → save → load → predict; integrity checks before unpickling; reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.corpus import load_corpus, split
from pipeline.errors import ModelIntegrityError, NoModelError
from pipeline.features import feature_index, prepare
from pipeline.labels import AREA, ATTENTION
from pipeline.registry import FORMAT_VERSION, Registry
from pipeline.train import review_threshold, train_on_corpus, wilson_lower

SPECIFIC = "反映某縣分局副局長王某2023年春節前收受轄區企業購物卡2萬元，並為該企業環評驗收開綠燈。"
VIEW = "建议加强基层环境监测站人员培训，提高监测数据质量。"


def test_round_trip_predicts_both_heads_with_confidence_and_terms(model_home):
    loaded = Registry(model_home.models).load()
    result = loaded.model.predict(prepare([SPECIFIC, VIEW]), explain=3, originals=[SPECIFIC, VIEW])
    assert result["attention"].labels == ["further", "reference"]
    assert result["area"].labels[0] == "discipline"
    assert set(result["attention"].classes) == set(ATTENTION)
    assert set(result["area"].classes) == set(AREA)
    for head in ("attention", "area"):
        assert np.allclose(result[head].proba.sum(axis=1), 1.0)
        assert ((result[head].confidence > 0) & (result[head].confidence <= 1)).all()
    terms = result["attention"].terms[0] + result["area"].terms[0]
    assert terms and any(t in terms for t in ("購物卡", "收受", "<金额>", "<人名>"))


def test_key_terms_are_shown_in_the_script_the_user_wrote():
    from pipeline.features import ScriptMap, display_feature

    script = ScriptMap("收受购物卡", "收受購物卡")  # normalised, and the user's own characters
    assert display_feature("w:购物卡", script) == "購物卡"
    assert display_feature("w:收受 购物卡", script) == "收受購物卡"
    assert display_feature("w:<金额>", ScriptMap("2万元", "2萬元")) == "<金额>"


def test_traditional_and_simplified_forms_get_the_same_prediction(model_home):
    from pipeline.normalize import to_simplified

    model = Registry(model_home.models).load().model
    a = model.predict(prepare([SPECIFIC]))
    b = model.predict(prepare([to_simplified(SPECIFIC)]))
    assert np.allclose(a["attention"].proba, b["attention"].proba)
    assert np.allclose(a["area"].proba, b["area"].proba)


def test_feature_index_matches_the_hasher():
    from sklearn.feature_extraction import FeatureHasher

    from pipeline.features import N_FEATURES

    hashed = FeatureHasher(n_features=N_FEATURES, input_type="string", alternate_sign=False).transform([["w:购物卡"]])
    assert hashed.indices.tolist() == [feature_index("w:购物卡")]


def test_manifest_says_what_the_model_is(model_home):
    manifest = Registry(model_home.models).manifest("v1")
    assert manifest["format_version"] == FORMAT_VERSION
    assert len(manifest["artifact"]["sha256"]) == 64
    for key in ("examples_sha256", "userdict_sha256", "stopwords_sha256", "corpus_sha256"):
        assert len(manifest["data"][key]) == 64
    assert manifest["labels"] == {"attention": list(ATTENTION), "area": list(AREA)}
    assert {"scikit-learn", "jieba", "opencc", "python"} <= set(manifest["libraries"])
    dev = manifest["metrics"]["dev"]
    assert 0 <= dev["attention_ece"] < 0.1 and 0 <= dev["area_ece"] < 0.1
    assert set(manifest["thresholds"]["needs_review"]) == {"attention", "area"}


def test_model_files_are_owner_only(model_home):
    folder = model_home.models / "v1"
    for path in (folder, folder / "model.joblib", folder / "manifest.json", model_home.models / "registry.json"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_tampered_artifact_is_refused_before_unpickling(model_home, monkeypatch):
    artifact = model_home.models / "v1" / "model.joblib"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    import joblib

    def never(*args, **kwargs):
        raise AssertionError("joblib.load called on an unverified file")

    monkeypatch.setattr(joblib, "load", never)
    with pytest.raises(ModelIntegrityError, match="sha256 .* does not match"):
        Registry(model_home.models).load()


def test_a_manifest_edited_to_match_a_swapped_artifact_is_still_refused(model_home):
    """The registry keeps its own record of each artifact's hash."""
    folder = model_home.models / "v1"
    (folder / "model.joblib").write_bytes(b"not a model")
    manifest = json.loads((folder / "manifest.json").read_text())
    from pipeline.fsutil import sha256_file

    manifest["artifact"]["sha256"] = sha256_file(folder / "model.joblib")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError):
        Registry(model_home.models).load()


def test_unknown_format_version_is_refused(model_home):
    path = model_home.models / "v1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 999
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="format version 999"):
        Registry(model_home.models).load()


def test_no_model_is_a_clear_error(home):
    with pytest.raises(NoModelError, match="clue-triage train"):
        Registry(home.models).load()


def test_same_data_and_seed_give_identical_predictions(small_corpus):
    clues = load_corpus(small_corpus)
    docs = prepare([c.text for c in split(clues, "test")[:60]])
    first = train_on_corpus(clues, seed=3).model.predict(docs)
    second = train_on_corpus(clues, seed=3).model.predict(docs)
    for head in ("attention", "area"):
        assert np.array_equal(first[head].proba, second[head].proba)


@pytest.mark.parametrize(
    ("hits", "n", "low", "high"),
    [(95, 100, 0.90, 0.94), (300, 300, 0.99, 1.0), (0, 10, 0.0, 0.01)],
)
def test_wilson_lower_bound(hits, n, low, high):
    assert low <= wilson_lower(hits, n) <= high


def test_review_threshold_keeps_clues_above_it_right_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.34, 1.0, 2000)
    correct = rng.uniform(0, 1, 2000) < confidence  # calibrated by construction
    t = review_threshold(correct, confidence)
    assert 0.8 < t < 1.0
    assert correct[confidence >= t].mean() >= 0.95


def test_a_saved_model_carries_no_text_of_what_it_predicted(model_home):
    """Feature strings spell a clue out; predicting must leave nothing of it on the model."""
    import pickle

    registry = Registry(model_home.models)
    loaded = registry.load()
    secret = "举报某县环保局副局长收受企业红包秘密内容甲乙丙"
    loaded.model.predict(prepare([secret]), explain=3, originals=[secret])
    blob = pickle.dumps(loaded.model)
    for fragment in ("秘密", "甲乙丙", "红包"):
        assert fragment.encode("utf-8") not in blob

