"""The corpus, lexicon and stop words: the contract the model and its scores rest on."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import numpy as np
import pytest
from scipy import sparse

from pipeline.labels import AREA, ATTENTION, HEADS
from pipeline.model.corpus import (
    EXTRA_FIELDS,
    FIELDS,
    GROUNDED_REGISTERS,
    REGISTERS,
    SCRIPTS,
    SOURCES,
    SPLITS,
    load_corpus,
    shortcuts,
)
from pipeline.paths import CORPUS_PATH, STOPWORDS_PATH, USERDICT_PATH
from pipeline.text.normalize import is_traditional, to_simplified
from pipeline.text.segment import read_userdict

CLUES = load_corpus()
#: the first release's clues (c0001-c2072), the wave-2 clues of issue 9 (c2073-c4308) and the
#: wave-3 clues of issue 10
FIRST = [c for c in CLUES if int(c.id[1:]) <= 2072]
WAVE2 = [c for c in CLUES if 2072 < int(c.id[1:]) <= 4308]
WAVE3 = [c for c in CLUES if int(c.id[1:]) > 4308]


def test_every_line_is_a_json_object_with_the_fields_and_closed_label_sets():
    for number, line in enumerate(CORPUS_PATH.read_text(encoding="utf-8").splitlines(), 1):
        obj = json.loads(line)
        assert set(obj) == set(FIELDS) | set(EXTRA_FIELDS), number
    for clue in CLUES:
        assert clue.attention in ATTENTION and clue.area in AREA
        assert clue.source in SOURCES and clue.script in SCRIPTS and clue.split in SPLITS
        assert clue.unit.strip()


def test_ids_are_unique_and_stable_strings():
    ids = [c.id for c in CLUES]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("c") and i[1:].isdigit() for i in ids)


def test_size_and_lengths():
    assert len(FIRST) == 2072 and len(WAVE2) >= 2000
    lengths = [len(c.text) for c in CLUES]
    assert min(lengths) >= 15 and max(lengths) <= 1600
    long_letters = [c for c in WAVE2 if len(c.text) >= 300]
    assert len(long_letters) >= 40


@pytest.mark.parametrize(
    ("head", "target"),
    [
        ("attention", {"further": 0.25, "aware": 0.45, "reference": 0.30}),
        ("area", {"policy": 0.40, "discipline": 0.30, "organization": 0.18, "rectification": 0.12}),
    ],
)
def test_label_balance_of_the_first_release_is_close_to_an_office(head, target):
    """Wave 2 follows its registers, not a quota (issue 9); the first release kept a quota."""
    counts = Counter(c.label(head) for c in FIRST)
    for label, share in target.items():
        assert abs(counts[label] / len(FIRST) - share) <= 0.03, (label, counts[label])


def test_wave2_has_no_attention_by_area_cell_under_30():
    cells = Counter((c.attention, c.area) for c in WAVE2)
    for att in ATTENTION:
        for area in AREA:
            assert cells[(att, area)] >= 30, (att, area)


def test_split_shares_and_minimums():
    split_counts = Counter(c.split for c in CLUES)
    assert abs(split_counts["train"] / len(CLUES) - 0.70) < 0.02
    assert abs(split_counts["dev"] / len(CLUES) - 0.15) < 0.02
    assert abs(split_counts["test"] / len(CLUES) - 0.15) < 0.02
    test = [c for c in CLUES if c.split == "test"]
    for head, labels in HEADS.items():
        counts = Counter(c.label(head) for c in test)
        for label in labels:
            assert counts[label] >= 40, (head, label, counts[label])
    cells = Counter((c.attention, c.area) for c in CLUES)
    for att in ATTENTION:
        for area in AREA:
            assert cells[(att, area)] >= 15, (att, area)


def test_splits_are_stratified_on_attention_by_area():
    """Clues not split by page (the first release, unpaged clues of later waves) are stratified."""
    unpaged = [c for c in CLUES if not c.source_url]
    for att in ATTENTION:
        for area in AREA:
            cell = [c for c in unpaged if c.attention == att and c.area == area]
            share = sum(c.split == "test" for c in cell) / len(cell)
            assert 0.10 <= share <= 0.22, (att, area, share)


def test_script_field_matches_the_text_and_about_30_percent_is_traditional():
    for clue in CLUES:
        assert (clue.script == "traditional") == is_traditional(clue.text), clue.id
    share = sum(c.script == "traditional" for c in CLUES) / len(CLUES)
    assert 0.25 <= share <= 0.35


def test_clues_restated_from_one_page_share_a_split():
    pages: dict[str, set[str]] = {}
    for clue in CLUES:
        if clue.source_url:
            pages.setdefault(clue.source_url, set()).add(clue.split)
    assert len(pages) >= 400
    assert all(len(splits) == 1 for splits in pages.values())


def test_every_register_is_known_and_grounded_ones_have_their_minimum_and_a_page():
    counts = Counter(c.register for c in CLUES)
    assert set(counts) <= set(REGISTERS)
    for register in GROUNDED_REGISTERS:
        assert counts[register] >= 150, (register, counts[register])
    for clue in CLUES:
        if clue.register in GROUNDED_REGISTERS:
            assert clue.source_url.startswith("http"), clue.id
    first = {c.register for c in FIRST}
    assert first == {"letter", "talk_note", "file_check", "finance_check", "division_lead", "selection_check",
                     "site_check"}


SHORTCUTS = {s.cue: s for s in shortcuts(CLUES)}


def test_a_surname_mou_name_does_not_give_further_away():
    named = SHORTCUTS["surname+某 named"]
    assert named.n >= 300 and named.purity <= 0.80
    person = [c for c in CLUES if c.attention != "further"]
    import re

    from pipeline.text.segment import PERSON_REF

    rx = re.compile(PERSON_REF)
    assert sum(bool(rx.search(to_simplified(c.text))) for c in person) / len(person) >= 0.10
    further = [c for c in CLUES if c.attention == "further"]
    assert sum(not rx.search(to_simplified(c.text)) for c in further) / len(further) >= 0.30


@pytest.mark.parametrize("cue", [cue for cue in SHORTCUTS if cue.startswith("opening")])
def test_no_opening_formula_gives_the_area_away(cue):
    cut = SHORTCUTS[cue]
    assert cut.n < 10 or cut.purity <= 0.80, cut


def test_suggestions_and_dates_do_not_give_the_attention_away():
    assert SHORTCUTS["suggestion closing"].purity <= 0.60
    assert SHORTCUTS["dated"].purity <= 0.60


@pytest.mark.parametrize("wave", [2, 3])
def test_every_wave_clue_was_labeled_twice_and_every_disagreement_adjudicated(wave):
    from pipeline.paths import DATA_DIR

    clues = {2: WAVE2, 3: WAVE3}[wave]
    assert clues
    path = DATA_DIR / f"wave{wave}_agreement.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_id = {r["id"]: r for r in records}
    assert len(by_id) == len(records)  # a round added twice would repeat its records
    assert set(by_id) == {c.id for c in clues}
    for clue in clues:
        rec = by_id[clue.id]
        assert rec["final"] == {"attention": clue.attention, "area": clue.area}, clue.id
        assert rec["agreed"] == (rec["first"] == rec["second"])
        if not rec["agreed"]:
            assert rec["reason"].strip(), clue.id
        else:
            assert rec["final"] == rec["first"]


def test_a_wave_round_is_refused_unless_every_clue_has_its_second_label_and_decision():
    """scripts/build_corpus.py --wave N: staging ids restart at n0001 each round, so last
    round's labels, a missing decision or a batch merged twice must stop it, not slip in."""
    import importlib.util

    from pipeline.paths import PROJECT_ROOT

    spec = importlib.util.spec_from_file_location("build_corpus", PROJECT_ROOT / "scripts" / "build_corpus.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    staged = [{"text": "甲", "attention": "further", "area": "policy"},
              {"text": "乙", "attention": "aware", "area": "policy"}]
    second = {"n0001": {"attention": "further", "area": "policy"}, "n0002": {"attention": "further", "area": "policy"}}
    decided = {"n0002": {"attention": "aware", "area": "policy", "reason": "pattern"}}
    assert build._staging_problem([], staged, second, decided) == ""
    assert "no batch" in build._staging_problem([], [], {}, {})
    assert "second labels" in build._staging_problem([], staged, {**second, "n0003": second["n0001"]}, decided)
    assert "decisions" in build._staging_problem([], staged, second, {})
    assert "decisions" in build._staging_problem([], staged, second, {**decided, "n0001": decided["n0002"]})
    assert "already in the corpus" in build._staging_problem([{"text": "乙"}], staged, second, decided)


def test_every_source_is_represented():
    counts = Counter(c.source for c in CLUES)
    assert set(counts) == set(SOURCES)
    assert min(counts.values()) >= 50


def _folded(text: str) -> str:
    return to_simplified(unicodedata.normalize("NFKC", text))


def test_no_two_texts_share_a_20_character_substring():
    seen: dict[str, str] = {}
    for clue in CLUES:
        text = _folded(clue.text)
        for i in range(len(text) - 19):
            other = seen.setdefault(text[i : i + 20], clue.id)
            assert other == clue.id, (other, clue.id, text[i : i + 20])


def test_no_near_duplicates_across_splits():
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for clue in CLUES:
        text = _folded(clue.text)
        indices.extend(sorted({vocab.setdefault(text[i : i + 5], len(vocab)) for i in range(len(text) - 4)}))
        indptr.append(len(indices))
    x = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(CLUES), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    for i, j, shared in zip(inter.row, inter.col, inter.data, strict=True):
        if i < j and CLUES[i].split != CLUES[j].split:
            jaccard = shared / (sizes[i] + sizes[j] - shared)
            assert jaccard < 0.5, (CLUES[i].id, CLUES[j].id, jaccard)


@pytest.mark.parametrize("word", ["八项规定", "建议", "提拔", "整改", "举报", "督察", "监测数据", "一把手"])
def test_no_keyword_gives_a_label_away(word):
    """Words that sound decisive appear under several labels of each head, as in real clues."""
    having = [c for c in CLUES if word in _folded(c.text)]
    assert len(having) >= 10, word
    for head in HEADS:
        counts = Counter(c.label(head) for c in having)
        assert len(counts) >= 2, (word, head, counts)
        assert counts.most_common(1)[0][1] / len(having) <= 0.9, (word, head, counts)


def _raw_bytes(path):
    return path.read_bytes()


@pytest.mark.parametrize("path", [USERDICT_PATH, STOPWORDS_PATH])
def test_lexicon_files_are_utf8_without_bom_with_lf_endings(path):
    data = _raw_bytes(path)
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data
    data.decode("utf-8")
    assert data.endswith(b"\n")


def test_userdict_has_300_simplified_terms_in_jieba_format():
    entries = read_userdict()
    assert len(entries) >= 300
    words = [w for w, _, _ in entries]
    assert len(words) == len(set(words))
    assert all(to_simplified(w) == w for w in words)
    assert {"巡察", "问题线索", "主体责任", "一岗双责", "四风", "三重一大", "选人用人", "小金库", "散乱污",
            "污染防治攻坚战", "环评", "排污许可", "走航监测"} <= set(words)


@pytest.fixture(scope="module")
def tokenizers():
    """jieba with its own dictionary only, and with ours added."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    plain, with_dict = jieba.Tokenizer(), jieba.Tokenizer()
    for word, freq, pos in read_userdict():
        with_dict.add_word(word, freq, pos)
    return plain, with_dict


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("巡察组收到的问题线索", "问题线索"),
        ("压实主体责任和监督责任", "主体责任"),
        ("三重一大事项未经集体研究", "三重一大"),
        ("违反中央八项规定精神", "八项规定精神"),
        ("散乱污企业关停后又死灰复燃", "散乱污企业"),
        ("开展走航监测发现异常", "走航监测"),
        ("整改台账只有表态", "整改台账"),
        ("加强选人用人监督", "选人用人"),
        ("申领排污许可证", "排污许可证"),
        ("超职数配备干部", "超职数配备"),
        ("存在突击提拔问题", "突击提拔"),
    ],
)
def test_userdict_changes_jieba_segmentation(tokenizers, text, term):
    plain, with_dict = tokenizers
    assert term not in plain.lcut(text)
    assert term in with_dict.lcut(text)


def test_count_tables_in_data_readme_are_current():
    """The README's tables are generated by scripts/corpus_stats.py, never typed by hand."""
    import subprocess
    import sys

    from pipeline.paths import PROJECT_ROOT

    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "corpus_stats.py"), "--check"])
    assert result.returncode == 0, "run: python scripts/corpus_stats.py"
