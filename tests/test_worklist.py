"""The review page's work (pipeline/review/worklist.py) and its leases (pipeline/review/leases.py).

A real triage of a small file (tests/web_support.py) with the session's trained model;
decisions go through the same library function as the terminal queue.
"""

from __future__ import annotations

import threading

import pytest
from web_support import CLUES, DONGCHENG_IDS, NANHU_IDS, triaged_store, write_csv

from pipeline.errors import InputError, StoreError
from pipeline.intake.triage import triage_file
from pipeline.review import leases
from pipeline.review.review import clue_state, record_decision
from pipeline.review.worklist import (
    LeaseError,
    Scope,
    clue_view,
    decide,
    highlight,
    last_decision,
    next_clue,
    page_stats,
    progress,
    queue_order,
    reason_required,
    visible_clue,
    worklist,
)
from pipeline.store.store import connect


@pytest.fixture
def store(model_home, tmp_path):
    s = triaged_store(model_home, tmp_path)
    yield s
    s.db.close()


def _rows(db):
    return [dict(r) for r in db.execute("SELECT * FROM overrides ORDER BY override_id")]


def test_queue_is_needs_review_first_then_least_confident(store):
    queue = worklist(store.db, "li", Scope())
    assert {s.clue_id for s in queue} == NANHU_IDS | DONGCHENG_IDS
    flags = [s.prediction.needs_review for s in queue]
    assert flags == sorted(flags, reverse=True)  # every flagged clue before every other
    assert any(flags)
    for group in (True, False):
        confidence = [min(s.prediction.confidence.values()) for s in queue if s.prediction.needs_review is group]
        assert confidence == sorted(confidence)
    assert [s.clue_key for s in queue] == [s.clue_key for s in sorted(queue, key=queue_order)]


def test_queue_leaves_out_recused_and_decided_clues_and_full_ones(store):
    db = store.db
    assert {s.clue_id for s in worklist(db, "zhang", Scope())} == NANHU_IDS  # 東城 in either script recused
    first = worklist(db, "li", Scope())[0]
    record_decision(db, first.clue_key, "li", first.prediction.labels, channel="terminal")
    assert first.clue_key not in {s.clue_key for s in worklist(db, "li", Scope())}
    assert first.clue_key not in {s.clue_key for s in worklist(db, "wang", Scope())}  # reviewed once: done
    assert first.clue_key in {s.clue_key for s in worklist(db, "wang", Scope(reviews_per_clue=2))}  # double review


def test_the_share_seam_narrows_the_queue(store):
    def only_w03_and_w05(db, reviewer_id, candidates):
        assert reviewer_id == "li"
        return [s for s in candidates if s.clue_id in {"W03", "W05"}]

    scope = Scope(share=only_w03_and_w05)
    assert {s.clue_id for s in worklist(store.db, "li", scope)} == {"W03", "W05"}
    assert progress(store.db, "li", scope).left == 2


def test_a_scope_without_a_run_is_empty(home):
    db = connect(home.db_path)
    assert worklist(db, "anyone", Scope()) == [] and page_stats(db, Scope()).counts["clues"] == 0


def test_two_reviewers_never_get_the_same_clue(store):
    db = store.db
    a = next_clue(db, "li", Scope())
    b = next_clue(db, "wang", Scope())
    assert a is not None and b is not None and a.clue_key != b.clue_key
    assert next_clue(db, "li", Scope()).clue_key == a.clue_key  # a reload shows the same clue
    assert leases.holder(db, a.clue_key) == "li"
    assert not leases.claim(db, a.clue_key, "wang")
    with pytest.raises(LeaseError):
        decide(db, "wang", a.clue_key, a.prediction.labels)


def test_concurrent_claims_from_threads_get_different_clues(store):
    got: dict[str, str] = {}
    barrier = threading.Barrier(3)

    def claim(reviewer_id):
        db = connect(store.home.db_path)
        barrier.wait()
        got[reviewer_id] = next_clue(db, reviewer_id, Scope()).clue_key
        db.close()

    threads = [threading.Thread(target=claim, args=(r,)) for r in ("li", "wang", "zhang")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got.values())) == 3


def test_an_expired_lease_frees_the_clue_and_a_skip_goes_to_the_back(store):
    db = store.db
    a = next_clue(db, "li", Scope(), minutes=-1)  # expired at once: as if li walked away
    assert next_clue(db, "wang", Scope()).clue_key == a.clue_key
    leases.release(db, "wang")
    order = [s.clue_key for s in worklist(db, "li", Scope())]
    leases.skip(db, "li", order[0])
    assert next_clue(db, "li", Scope()).clue_key == order[1]
    for key in order[1:]:
        decide(db, "li", key, clue_state(db, key).prediction.labels)
    assert next_clue(db, "li", Scope()).clue_key == order[0]  # only the skipped one is left
    decide(db, "li", order[0], clue_state(db, order[0]).prediction.labels)
    assert next_clue(db, "li", Scope()) is None
    assert progress(db, "li", Scope()).done == len(order)


def test_a_recused_clue_is_not_visible_and_not_decidable(store):
    key = store.keys["W01"]
    with pytest.raises(InputError, match="no such clue"):
        visible_clue(store.db, "zhang", key)
    with pytest.raises(InputError, match="no such clue"):
        visible_clue(store.db, "zhang", "0" * 20)  # the same answer as for a clue that does not exist
    with pytest.raises(InputError, match="no such clue"):
        decide(store.db, "zhang", key, {"attention": "further", "area": "discipline"})
    assert _rows(store.db) == []


def test_decide_writes_the_same_audited_rows_as_the_terminal(store):
    db = store.db
    key = store.keys["W03"]
    p = clue_state(db, key).prediction
    state = decide(db, "li", key, {"attention": p.labels["attention"], "area": p.labels["area"]})
    rows = _rows(db)
    assert [(r["head"], r["new_label"], r["channel"], r["kind"], r["run_id"]) for r in rows] == [
        ("attention", p.labels["attention"], "web", "review", store.run), ("area", p.labels["area"], "web", "review", store.run)]
    assert rows[0]["predicted_conf"] == pytest.approx(p.confidence["attention"])
    assert state.heads["attention"].status == "reviewed"
    with pytest.raises(InputError, match="unknown area label"):
        decide(db, "li", key, {"area": "紧急"})
    with pytest.raises(InputError, match="at least one head"):
        decide(db, "li", key, {})
    with pytest.raises(StoreError, match="unknown reviewer"):
        record_decision(db, key, "nobody", p.labels)


def test_a_reason_is_required_to_change_a_confident_prediction(store):
    db = store.db
    confident = next(s for s in worklist(db, "li", Scope()) if not s.prediction.needs_review)
    flagged = next(s for s in worklist(db, "li", Scope()) if s.prediction.needs_review)
    other = next(a for a in ("further", "aware", "reference") if a != confident.prediction.labels["attention"])
    assert reason_required(confident, {"attention": other})
    assert not reason_required(confident, confident.prediction.labels)
    assert not reason_required(flagged, {"attention": "reference", "area": "policy"})
    with pytest.raises(InputError, match="reason is required"):
        decide(db, "li", confident.clue_key, {"attention": other})
    assert _rows(db) == []
    decide(db, "li", confident.clue_key, {"attention": other}, reason="有具体人和事")
    assert _rows(db)[-1]["reason"] == "有具体人和事"


def test_undo_is_a_correction_recorded_as_new_rows(store):
    db = store.db
    a, b = store.keys["W03"], store.keys["W05"]
    decide(db, "li", a, {"attention": "aware", "area": "policy"})
    decide(db, "li", b, {"attention": "reference"})
    last = last_decision(db, "li")
    assert (last.clue_key, last.labels) == (b, {"attention": "reference"})
    before = last_decision(db, "li", before=last.override_ids[0])
    assert (before.clue_key, before.labels, len(before.override_ids)) == (a, {"attention": "aware", "area": "policy"}, 2)
    assert last_decision(db, "li", before=before.override_ids[0]) is None
    assert last_decision(db, "wang") is None

    rows_before = _rows(db)
    decide(db, "li", a, {"attention": "further", "area": "discipline"}, reason="看错了", corrects=before.override_ids)
    rows = _rows(db)
    assert rows[:len(rows_before)] == rows_before  # nothing edited
    new = rows[len(rows_before):]
    assert [r["reason"] for r in new] == [f"更正 #{before.override_ids[0]},#{before.override_ids[1]}; 看错了"] * 2
    assert clue_state(db, a).effective() == {"attention": "further", "area": "discipline"}
    with pytest.raises(InputError, match="your own earlier decision"):
        decide(db, "wang", a, {"attention": "aware"}, reason="x", corrects=before.override_ids)


def test_terminal_and_excel_decisions_are_not_undone_on_the_page(store):
    record_decision(store.db, store.keys["W03"], "li", {"attention": "aware"}, channel="terminal")
    assert last_decision(store.db, "li") is None


def test_highlight_marks_key_terms_longest_first():
    assert highlight("收受购物卡和购物", ["购物", "购物卡", "收"]) == [("收受", False), ("购物卡", True), ("和", False),
                                                                     ("购物", True)]
    assert highlight("无关键词", []) == [("无关键词", False)]
    assert highlight("", ["x"]) == []


def test_clue_view_shows_source_repeats_and_hand_over(store, tmp_path):
    again = write_csv(tmp_path / "again.csv", [("W03-again", CLUES[2][1], CLUES[2][2])])
    triage_file(store.home, again, tmp_path / "again.triaged.csv", workers=1)
    view = clue_view(store.db, clue_state(store.db, store.keys["W03"]))
    assert view.source.source == "again.csv" and view.source.clue_id == "W03-again"  # the latest report
    assert [(r.clue_id, r.source) for r in view.repeats] == [("W03", "web_clues.csv")]
    assert view.handover
    assert "".join(piece for piece, _ in view.pieces) == CLUES[2][2]


def test_page_stats_count_accuracy_and_agreement(store):
    db = store.db
    a, b = store.keys["W03"], store.keys["W04"]
    pa, pb = clue_state(db, a).prediction, clue_state(db, b).prediction
    record_decision(db, a, "li", pa.labels)
    record_decision(db, a, "wang", pa.labels)
    other = next(x for x in ("policy", "discipline", "organization", "rectification") if x != pb.labels["area"])
    record_decision(db, b, "li", {"area": other}, reason="x")
    record_decision(db, b, "wang", {"area": pb.labels["area"]})
    stats = page_stats(db, Scope())
    assert stats.run == store.run
    assert stats.counts["clues"] == 8 and stats.counts["reviewed"] == 2 and stats.counts["open"] == 6
    assert stats.counts["disputed"] == 1
    accuracy = {h.head: (h.reviewed, h.agreed) for h in stats.accuracy}
    assert accuracy == {"attention": (1, 1), "area": (1, 1)}  # the disputed head keeps its prediction, undecided
    assert dict(stats.by_reviewer) == {"li": 2, "wang": 2}
    assert {(a.head, a.reviewers, a.n) for a in stats.agreement} == {("attention", ("li", "wang"), 1),
                                                                     ("area", ("li", "wang"), 2)}
