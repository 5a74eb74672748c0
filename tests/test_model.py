"""Train → save → load → predict; features, familiarity, explanations, integrity, thresholds."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

from pipeline.errors import ModelIntegrityError, NoModelError
from pipeline.labels import AREA, ATTENTION
from pipeline.model import train
from pipeline.model.corpus import load_corpus, split
from pipeline.model.flags import needs_review
from pipeline.model.registry import FORMAT_VERSION, Registry
from pipeline.model.train import (
    FLAG_BUDGET,
    REVIEWED_GROUP,
    REVIEWED_THRESHOLD_MIN,
    Example,
    calibration_sample,
    choose_review_thresholds,
    examples_from,
    fit_and_calibrate,
    subset,
    train_on_corpus,
)
from pipeline.model.vectorize import Vocabulary, batch_keys, held_out_familiarity
from pipeline.text.features import ScriptMap, display_term, prepare

SPECIFIC = "反映某縣分局副局長王某2023年春節前收受轄區企業購物卡2萬元，並為該企業環評驗收開綠燈。"
VIEW = "建议加强基层环境监测站人员培训，提高监测数据质量。"
PLACEHOLDERS = ("<人名>", "<日期>", "<金额>", "<数字>", "<车牌>", "<编号>")


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
    assert any(t in terms for t in ("購物卡", "收受", "收受購物卡"))


def test_key_terms_are_words_never_placeholders_or_single_characters(model_home):
    model = Registry(model_home.models).load().model
    texts = [c.text for c in load_corpus()[:300]]
    result = model.predict(prepare(texts), explain=3, originals=texts)
    shown = [t for head in ("attention", "area") for terms in result[head].terms for t in terms]
    assert shown
    assert not [t for t in shown if any(p in t for p in PLACEHOLDERS)]
    assert not [t for t in shown if len(t) < 2]


def test_key_terms_are_shown_in_the_script_the_user_wrote():
    script = ScriptMap("收受购物卡", "收受購物卡")  # normalised, and the user's own characters
    assert display_term(("购物卡",), script) == "購物卡"
    assert display_term(("收受", "购物卡"), script) == "收受購物卡"


@pytest.mark.parametrize("folded", ["反映，縣裡的企業", "反映，县里的企业"])
def test_a_word_pair_the_user_did_not_write_together_is_not_a_key_term(folded):
    """Adjacent tokens are not always adjacent text (punctuation and stop words fall between
    them): such a pair was shown joined (反映县里), in Simplified even in a Traditional clue."""
    script = ScriptMap("反映，县里的企业", folded)
    assert display_term(("反映", "县里"), script) is None
    assert display_term(("县里",), script) == folded[3:5]



def test_a_key_term_keeps_the_users_case_and_a_pair_may_have_a_quotation_mark_or_space_between():
    """Tokens are lower-cased Simplified; a term is shown as the user wrote it (PPP, 項目), and
    a pair written with a quotation mark or a space between its words (“三重一大”事项,
    违规 PPP) is still a pair the user wrote, shown without it."""
    assert display_term(("ppp", "项目"), ScriptMap("违规PPP项目", "违规PPP项目")) == "PPP项目"
    assert display_term(("ppp", "项目"), ScriptMap("违规PPP项目", "違規PPP項目")) == "PPP項目"
    assert display_term(("ppp",), ScriptMap("违规PPP项目", "違規PPP項目")) == "PPP"
    quoted = ScriptMap("5项“三重一大”事项未经研究", "5項「三重一大」事項未經研究")
    assert display_term(("三重一大", "事项"), quoted) == "三重一大事項"
    assert display_term(("违规", "ppp"), ScriptMap("违规 PPP 项目", "违规 PPP 项目")) == "违规PPP"
    assert display_term(("5", "事项"), quoted) is None  # more than one character between: not a pair


def test_traditional_and_simplified_forms_get_the_same_prediction(model_home):
    from pipeline.text.normalize import to_simplified

    model = Registry(model_home.models).load().model
    a = model.predict(prepare([SPECIFIC]))
    b = model.predict(prepare([to_simplified(SPECIFIC)]))
    assert np.allclose(a["attention"].proba, b["attention"].proba)
    assert np.allclose(a["area"].proba, b["area"].proba)


def test_features_unseen_in_training_do_not_dilute_the_known_ones(model_home):
    """The first release hashed unseen n-grams into the TF-IDF norm, shrinking every known
    weight; now a row is normalised over known features only, and familiarity drops."""
    model = Registry(model_home.models).load().model
    odd = "ꙮꙮꙮ𓀀𓀁𓀂"  # characters no clue has
    a = model.predict(prepare([SPECIFIC]))
    b = model.predict(prepare([SPECIFIC + odd]))
    assert np.allclose(a["attention"].proba, b["attention"].proba, atol=1e-6)
    assert b["attention"].familiarity[0] < a["attention"].familiarity[0]


def test_keys_of_a_document_do_not_depend_on_its_batch():
    docs = prepare([SPECIFIC, VIEW, "局长多次收受红包"])
    together = batch_keys(docs)
    alone = batch_keys(docs[1:2])
    mine = together.keys[together.rows == 1]
    assert sorted(mine.tolist()) == sorted(alone.keys.tolist())
    part = subset(together, np.array([2, 1]))
    assert part.n_docs == 2 and sorted(part.keys[part.rows == 1].tolist()) == sorted(mine.tolist())


def test_vocabulary_counts_document_frequency_and_normalises_rows():
    docs = prepare(["局长收受红包", "局长收受购物卡", "建议加强培训"])
    keys = batch_keys(docs)
    vocab = Vocabulary().fit(keys)
    batch = vocab.transform(keys)
    assert np.allclose(np.asarray((batch.matrix.multiply(batch.matrix)).sum(axis=1)).ravel(), 1.0)
    assert np.allclose(batch.familiarity, 1.0)
    assert Vocabulary(min_df=2).fit(keys).size < vocab.size


def test_manifest_says_what_the_model_is(model_home):
    manifest = Registry(model_home.models).manifest("v1")
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert manifest["artifact"]["file"] == "model.npz" and len(manifest["artifact"]["sha256"]) == 64
    for key in ("examples_sha256", "userdict_sha256", "stopwords_sha256", "corpus_sha256", "alarm_terms_sha256"):
        assert len(manifest["data"][key]) == 64
    assert manifest["labels"] == {"attention": list(ATTENTION), "area": list(AREA)}
    assert {"scikit-learn", "jieba", "opencc", "python"} <= set(manifest["libraries"])
    assert manifest["solver"] == {"linear_svc_tol": 1e-2}  # a fitting choice the config does not hold
    oor = manifest["metrics"]["out_of_register"]
    assert 0 <= oor["attention_ece"] < 0.1 and 0 <= oor["area_ece"] < 0.1
    assert {"attention", "area"} <= set(manifest["thresholds"]["needs_review"]) <= {"attention", "area", "possible_further"}
    assert "out-of-register" in manifest["thresholds"]["chosen_on"]
    assert 0 < manifest["thresholds"]["familiarity_floor"] < 1
    assert {"letter", "talk_note"} <= set(manifest["registers"])


def test_model_files_are_owner_only(model_home):
    folder = model_home.models / "v1"
    for path in (folder, folder / "model.npz", folder / "manifest.json", model_home.models / "registry.json"):
        assert path.stat().st_mode & 0o077 == 0, path


def test_model_file_holds_arrays_and_json_only(model_home):
    with zipfile.ZipFile(model_home.models / "v1" / "model.npz") as archive:
        names = archive.namelist()
    assert "spec.json.npy" in names and all(n.endswith(".npy") for n in names)
    with np.load(model_home.models / "v1" / "model.npz", allow_pickle=False) as stored:
        assert all(stored[n].dtype != object for n in stored.files)


def test_tampered_artifact_is_refused_before_it_is_read(model_home, monkeypatch):
    artifact = model_home.models / "v1" / "model.npz"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))

    def never(*args, **kwargs):
        raise AssertionError("np.load called on an unverified file")

    monkeypatch.setattr(np, "load", never)
    with pytest.raises(ModelIntegrityError, match="sha256 .* does not match"):
        Registry(model_home.models).load()


class _Planted:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['PLANTED_SENTINEL'], 'w').write('ran')",))


def test_a_planted_pickle_never_runs_even_when_the_registry_is_edited_to_trust_it(model_home, tmp_path, monkeypatch):
    """The registry sits in the same writable home; loading must not be able to run code
    whatever is edited there."""
    sentinel = tmp_path / "sentinel"
    monkeypatch.setenv("PLANTED_SENTINEL", str(sentinel))
    folder = model_home.models / "v1"
    (folder / "model.npz").write_bytes(pickle.dumps(_Planted()))
    from pipeline.fsutil import sha256_file

    digest = sha256_file(folder / "model.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifact"]["sha256"] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry_file = model_home.models / "registry.json"
    state = json.loads(registry_file.read_text())
    state["artifacts"]["v1"] = digest
    registry_file.write_text(json.dumps(state))
    with pytest.raises(ModelIntegrityError, match="not a clue-triage model"):
        Registry(model_home.models).load()
    assert not sentinel.exists()


def test_an_npz_with_object_arrays_is_refused(model_home):
    folder = model_home.models / "v1"
    np.savez(folder / "model.npz", **{"spec.json": np.array([_Planted()], dtype=object)})
    from pipeline.fsutil import sha256_file

    digest = sha256_file(folder / "model.npz")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifact"]["sha256"] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest))
    state = json.loads((model_home.models / "registry.json").read_text())
    state["artifacts"]["v1"] = digest
    (model_home.models / "registry.json").write_text(json.dumps(state))
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


def _office_examples() -> list[Example]:
    """A small corpus (every fifth train clue) and 120 reviewed clues (dev clues as an office
    would have labelled them)."""
    corpus = load_corpus()
    reviewed = [Example(c.text, c.attention, c.area, "review", group=REVIEWED_GROUP) for c in split(corpus, "dev")[:120]]
    return examples_from(split(corpus, "train")[::5]) + reviewed


@pytest.fixture(scope="module")
def office_model():
    """Steps 1–4 on every corpus example and 100 of the 120 reviewed ones (a cap of 100)."""
    examples = _office_examples()
    return examples, fit_and_calibrate(examples, seed=0, calibrate_on=calibration_sample(examples, cap=100),
                                       reviewed_min=100)


def test_calibration_takes_every_corpus_clue_and_a_fixed_sample_of_reviewed_ones_preferred_first():
    examples = _office_examples()
    reviewed = [i for i, e in enumerate(examples) if e.origin == "review"]
    assert calibration_sample(examples) == list(range(len(examples)))  # under the cap: everything
    sample = calibration_sample(examples, prefer=reviewed[:30], cap=50)
    assert [i for i in sample if examples[i].origin != "review"] == [i for i in range(len(examples)) if i < reviewed[0]]
    chosen = [i for i in sample if examples[i].origin == "review"]
    assert len(chosen) == 50 and set(reviewed[:30]) <= set(chosen)
    assert calibration_sample(examples, prefer=reviewed[:30], cap=50) == sample


def test_fits_in_worker_processes_give_the_model_one_process_gives(office_model, monkeypatch):
    """liblinear draws from one random generator per process: fits sharing a process at the
    same time (threads) gave different models from run to run."""
    examples, parallel = office_model
    monkeypatch.setattr(train, "fit_processes", lambda: 1)
    single = fit_and_calibrate(examples, seed=0, calibrate_on=calibration_sample(examples, cap=100), reviewed_min=100)
    docs = prepare([e.text for e in examples[:80]])
    for head in ("attention", "area"):
        assert np.array_equal(single.model.predict(docs)[head].proba, parallel.model.predict(docs)[head].proba)
        assert np.array_equal(single.calibrated.proba[head], parallel.calibrated.proba[head])
    assert single.manifest["thresholds"] == parallel.manifest["thresholds"]


def _boom(*args, **kwargs):
    raise RuntimeError("a fit failed")


@pytest.mark.parametrize("failing", ["_job_member", "_job_fold"])
def test_a_failed_fit_is_raised_and_leaves_no_fit_process_behind(monkeypatch, failing):
    """A member fit failing in the pool, or a fold failing in the fold process, reaches the
    caller as itself, and neither the pool's workers nor the fold process outlive the call
    (they are forked after the patch, so they run the failing function too)."""
    import multiprocessing

    monkeypatch.setattr(train, "fit_processes", lambda: 2)  # the parallel path, even on one CPU
    monkeypatch.setattr(train, failing, _boom)
    examples = examples_from(split(load_corpus(), "train")[::10])
    with pytest.raises(RuntimeError, match="a fit failed"):
        fit_and_calibrate(examples, seed=0)
    assert multiprocessing.active_children() == []


def test_the_parallel_path_gives_the_one_process_model_whatever_the_cpus(monkeypatch):
    """The fold process and the member pool (forced on, so this holds on a one-CPU runner
    too) give exactly the model of one process."""
    examples = examples_from(split(load_corpus(), "train")[::10])
    docs = prepare([e.text for e in examples[:40]])
    monkeypatch.setattr(train, "fit_processes", lambda: 2)
    parallel = fit_and_calibrate(examples, seed=0)
    monkeypatch.setattr(train, "fit_processes", lambda: 1)
    single = fit_and_calibrate(examples, seed=0)
    for head in ("attention", "area"):
        assert np.array_equal(single.model.predict(docs)[head].proba, parallel.model.predict(docs)[head].proba)
        assert np.array_equal(single.calibrated.proba[head], parallel.calibrated.proba[head])
    assert single.manifest["thresholds"] == parallel.manifest["thresholds"]


def test_with_enough_reviewed_clues_the_thresholds_are_chosen_on_them(office_model):
    """"Right ≥ 95 % above the threshold" must hold on the office's own intake: the reviewed
    clues' out-of-fold predictions choose the thresholds, and the manifest says so."""
    examples, outcome = office_model
    cal, th = outcome.calibrated, outcome.manifest["thresholds"]
    assert REVIEWED_THRESHOLD_MIN == 200  # from 200 on by default; this model was fitted with 100
    assert len([e for e in examples if e.origin == "review"]) >= 100
    assert "out-of-fold predictions of the 100 reviewed clues" in th["chosen_on"]
    assert f"steps 1–4 on {len(examples) - 20:,} of the {len(examples):,}" in th["chosen_on"]
    assert outcome.manifest["data"]["sizes"]["calibration"] == len(cal.index) == len(examples) - 20
    assert outcome.manifest["data"]["sizes"]["final_fit"] == len(examples)  # the final fit takes all 120
    examples = [examples[i] for i in cal.index]
    reviewed = np.array([e.origin == "review" for e in examples])
    keep = reviewed & ~cal.flagged
    for head in ("attention", "area"):
        right = np.array([e.label(head) == p for e, p in zip(examples, cal.predicted[head], strict=True)])
        assert th["unflagged_accuracy"][head] == pytest.approx(right[keep].mean())
        if th["targets_met"]:
            assert right[keep].mean() >= train.UNFLAGGED_ACCURACY[head]
    assert th["flagged_share"] == pytest.approx(cal.flagged[reviewed].mean())
    # the reviewed clues are spread over every calibration fold (K-fold), and have a row of their own
    assert len({cal.folds[i] for i in np.flatnonzero(reviewed)}) == train.CALIBRATION_FOLDS
    assert "reviewed" in outcome.manifest["registers"]


def test_review_thresholds_keep_unflagged_clues_right_at_the_target():
    rng = np.random.default_rng(0)
    n = 3000
    conf = {"attention": rng.uniform(0.34, 1.0, n), "area": rng.uniform(0.25, 1.0, n)}
    truth = {"attention": ["further"] * n, "area": ["policy"] * n}
    # calibrated by construction: right with probability = confidence
    predicted = {
        "attention": ["further" if ok else "aware" for ok in rng.uniform(0, 1, n) < conf["attention"]],
        "area": ["policy" if ok else "discipline" for ok in rng.uniform(0, 1, n) < conf["area"]],
    }
    rule = choose_review_thresholds(truth, predicted, conf, np.ones(n), [False] * n, 0.0)
    assert rule.met
    keep = (conf["attention"] >= rule.thresholds["attention"]) & (conf["area"] >= rule.thresholds["area"])
    for head, target in (("attention", 0.90), ("area", 0.95)):
        assert np.mean(np.asarray(truth[head])[keep] == np.asarray(predicted[head])[keep]) >= target
    assert rule.flagged == pytest.approx(1 - keep.mean())


def test_a_possible_further_clue_is_flagged_even_when_confident():
    # called `aware` at 0.85, but `further` kept 0.22 of the probability: a second look
    thresholds = {"attention": 0.6, "area": 0.6, "possible_further": 0.2}
    args = (["aware", "aware", "further"], np.array([0.85, 0.85, 0.7]), np.array([0.9, 0.9, 0.9]), np.ones(3),
            [False] * 3, thresholds, 0.0)
    flagged = needs_review(*args, further_proba=np.array([0.22, 0.05, 0.7]))
    assert flagged.tolist() == [True, False, False]
    # models saved before the rule carry no "possible_further" threshold: the rule is off
    old = {"attention": 0.6, "area": 0.6}
    assert not needs_review(*args[:5], old, 0.0, further_proba=np.array([0.22, 0.05, 0.7])).any()


def test_review_thresholds_spend_the_flag_budget_on_possible_further_clues():
    rng = np.random.default_rng(1)
    n = 2000
    conf = {"attention": rng.uniform(0.5, 1.0, n), "area": np.full(n, 0.99)}
    # a tenth of the clues are `further` clues called `aware` with `further` close behind
    missed = np.arange(n) < n // 10
    further_proba = np.where(missed, rng.uniform(0.16, 0.24, n), rng.uniform(0.0, 0.08, n))
    truth = {"attention": np.where(missed, "further", "aware").tolist(), "area": ["policy"] * n}
    predicted = {"attention": ["aware"] * n, "area": ["policy"] * n}
    rule = choose_review_thresholds(truth, predicted, conf, np.ones(n), [False] * n, 0.0,
                                    further_proba=further_proba)
    assert rule.met and rule.flagged <= FLAG_BUDGET
    assert rule.thresholds["possible_further"] <= 0.15
    flagged = needs_review(predicted["attention"], conf["attention"], conf["area"], np.ones(n), [False] * n,
                           rule.thresholds, 0.0, further_proba=further_proba)
    assert flagged[missed].all()


def test_a_saved_model_carries_no_text_of_what_it_predicted(model_home):
    """Nothing about a predicted batch is kept on the model; the file keeps keys, not words."""
    loaded = Registry(model_home.models).load()
    secret = "举报某县环保局副局长收受企业红包秘密内容甲乙丙"
    loaded.model.predict(prepare([secret]), explain=3, originals=[secret])
    spec, arrays = loaded.model.to_arrays()
    blob = json.dumps(spec, ensure_ascii=False).encode() + b"".join(a.tobytes() for a in arrays.values())
    for fragment in ("秘密", "甲乙丙", "红包", "收受"):
        assert fragment.encode("utf-8") not in blob


_TEXTS = ["局长收受红包", "局长收受购物卡", "建议加强培训", "", "。，", "局长收受红包局长收受红包", "某村道路多年未修",
          "副局长王某某收受购物卡2万元", "建议加强培训和监督", "违规提拔亲属"]


@pytest.mark.parametrize("min_df", [1, 2, 3])
def test_fit_transform_is_fit_then_transform(min_df):
    """retrain fits the vocabulary and transforms the same keys with one count of them: the
    same vocabulary and the same matrix, value for value, as fitting and then transforming."""
    keys = batch_keys(prepare(_TEXTS))
    reference = Vocabulary(min_df=min_df).fit(keys)
    expected = reference.transform(keys)
    vocab = Vocabulary(min_df=min_df)
    batch = vocab.fit_transform(keys)
    # document frequency the plain way: distinct (document, key) pairs
    pairs = {(int(r), int(k)) for r, k in zip(keys.rows, keys.keys, strict=True)}
    df: dict[int, int] = {}
    for _, k in pairs:
        df[k] = df.get(k, 0) + 1
    assert vocab.keys_.tolist() == sorted(k for k, d in df.items() if d >= min_df)
    assert np.array_equal(vocab.keys_, reference.keys_) and np.array_equal(vocab.idf_, reference.idf_)
    for got, want in ((batch.matrix, expected.matrix),):
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)
    assert np.array_equal(batch.familiarity, expected.familiarity)
    assert np.array_equal(batch.columns, expected.columns)


@pytest.mark.parametrize("min_df", [1, 2])
def test_held_out_familiarity_is_that_of_a_vocabulary_fitted_without_the_fold(min_df):
    keys = batch_keys(prepare(_TEXTS * 2))
    fold_of = np.arange(keys.n_docs) % 3
    expected = np.zeros(keys.n_docs)
    for f in range(3):
        held, rest = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
        vocab = Vocabulary(min_df=min_df).fit(subset(keys, rest))
        expected[held] = vocab.transform(subset(keys, held)).familiarity
    assert np.array_equal(held_out_familiarity(keys, fold_of, min_df), expected)


@pytest.mark.parametrize("size", [0, 1, 7, 5000])
def test_vocabulary_columns_match_a_binary_search(size):
    """columns_of looks keys up in a hash table: it must find what a
    binary search over the sorted keys finds, for known keys, unknown ones and the extremes."""
    rng = np.random.default_rng(size)
    keys = np.unique(rng.integers(0, 2**64, size, dtype=np.uint64, endpoint=False))
    if size > 100:  # runs of neighbouring keys
        keys = np.unique(np.concatenate([keys, keys[:50] + np.uint64(1), np.arange(20, dtype=np.uint64)]))
    vocab = Vocabulary()
    vocab.keys_, vocab.idf_ = keys, np.ones(len(keys))
    queries = np.concatenate([keys, rng.integers(0, 2**64, 3000, dtype=np.uint64, endpoint=False),
                              np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)])
    rng.shuffle(queries)
    at = np.searchsorted(keys, queries)
    expected = np.where((at < len(keys)) & (keys[np.minimum(at, max(len(keys) - 1, 0))] == queries)
                        if len(keys) else np.zeros(len(queries), bool), at, -1)
    assert np.array_equal(vocab.columns_of(queries), expected)


def test_folded_scoring_follows_a_refitted_stacker(model_home):
    """predict scores members and stacker as one folded product, made once: replacing a
    head's stacker (as training does) must be seen by the next prediction."""
    model = Registry(model_home.models).load().model
    docs = prepare(["局长违规提拔亲属，收受红包", "建议加强监测站人员培训"])
    head = model.heads_["attention"]
    before = model.predict(docs)["attention"].proba
    assert np.allclose(before, head.proba(head.scores(model.batch(docs).matrix)), atol=1e-12)
    head.stack_b = head.stack_b + np.array([5.0, 0.0, 0.0])
    after = model.predict(docs)["attention"].proba
    assert np.allclose(after, head.proba(head.scores(model.batch(docs).matrix)), atol=1e-12)
    assert not np.allclose(after, before)


def test_a_model_loaded_to_predict_drops_its_member_weights_and_predicts_the_same(model_home):
    """Triage only needs the folded weights: the members' own (as large again) are dropped on
    loading for prediction, which keeps a 1,000,000-row triage under 600 MB. Such a model
    predicts exactly as the full one and refuses what needs the members (saving it)."""
    full = Registry(model_home.models).load().model
    lean = Registry(model_home.models).load(predict_only=True).model
    assert all(not h.coef and not h.intercept for h in lean.heads_.values())
    texts = ["局长违规提拔亲属，收受红包", "建議加強監測站人員培訓", "部分乡镇对散乱污企业整治不彻底"]
    a = full.predict(prepare(texts), explain=3, originals=texts)
    b = lean.predict(prepare(texts), explain=3, originals=texts)
    for head in ("attention", "area"):
        assert np.array_equal(a[head].proba, b[head].proba) and a[head].terms == b[head].terms
    with pytest.raises(ValueError, match="prediction only"):
        lean.to_arrays()
    lean.heads_["attention"].stack_b = lean.heads_["attention"].stack_b + 1.0  # as training does: noticed
    with pytest.raises(ValueError, match="prediction only"):
        lean.predict(prepare(texts))
    import gc
    import weakref

    member = weakref.ref(full.heads_["attention"].coef[0])
    full.release_members()
    gc.collect()
    assert member() is None  # freed, not only unlinked (the scoring cache held it too)
