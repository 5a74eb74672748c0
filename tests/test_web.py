"""The review page over HTTP (Starlette's TestClient): every route, signed in and not,
with the 401/403/404/409/422 answers, the security headers and the audited rows it writes.
These run everywhere; tests/test_web_browser.py drives the same page in Chromium."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner
from web_support import CLUES, DONGCHENG_IDS, NANHU_IDS, triaged_store

from cli import app as cli_app
from pipeline.errors import InputError
from pipeline.labels import NAMES
from pipeline.review.review import clue_state, record_decision
from pipeline.review.sessions import issue_signin_token
from pipeline.review.worklist import Scope, worklist
from web.app import COOKIE, create_app
from web.server import is_loopback, plan

TEXT = {clue_id: text for clue_id, _, text in CLUES}


@pytest.fixture
def store(model_home, tmp_path):
    s = triaged_store(model_home, tmp_path)
    yield s
    s.db.close()


@pytest.fixture
def page(store):
    return create_app(store.home)


def client_for(page, store=None, reviewer=None) -> TestClient:
    client = TestClient(page)
    if reviewer:
        token = issue_signin_token(store.db, reviewer)
        response = client.post("/signin", data={"token": token}, follow_redirects=False)
        assert response.status_code == 303
    return client


def csrf(client: TestClient, path: str = "/stats") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def served_key(client: TestClient) -> str:
    response = client.get("/queue", follow_redirects=False)
    assert response.status_code == 303
    return response.headers["location"].split("/clues/")[1].split("?")[0]


def overrides(store) -> list[dict]:
    return [dict(r) for r in store.db.execute("SELECT * FROM overrides ORDER BY override_id")]


# -- headers, sign-in, sign-out --------------------------------------------------------


def test_every_response_carries_the_security_headers(page, store):
    li = client_for(page, store, "li")
    responses = [li.get("/stats"), li.get("/static/style.css"), li.get("/nope"), TestClient(page).get("/queue"),
                 li.post("/undo", data={"csrf": "wrong"})]
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 403]
    for response in responses:
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in headers


def test_pages_use_no_inline_script(page, store):
    li = client_for(page, store, "li")
    key = served_key(li)
    html = li.get(f"/clues/{key}").text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs or 'type="application/json"' in attrs for attrs, _ in scripts)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers either
    assert "http://" not in html.replace('"http://testserver', "") and "https://" not in html  # no CDN


@pytest.mark.parametrize("path", ["/", "/queue", "/disputes", "/stats", "/clues/KEY"])
def test_no_session_no_clue_text(page, store, path):
    response = TestClient(page).get(path.replace("KEY", store.keys["W03"]), follow_redirects=False)
    assert response.status_code == 401
    assert "clue-triage reviewers token" in response.text
    assert not any(text in response.text for text in TEXT.values())


@pytest.mark.parametrize("path", ["/signout", "/undo", "/clues/KEY/decide", "/clues/KEY/skip", "/disputes/KEY/area"])
def test_every_form_needs_a_session(page, store, path):
    response = TestClient(page).post(path.replace("KEY", store.keys["W03"]), data={"csrf": "x", "attention": "further"})
    assert response.status_code == 401
    assert overrides(store) == []


def test_a_sign_in_link_works_once_and_sets_a_strict_httponly_cookie(page, store):
    token = issue_signin_token(store.db, "li")
    client = TestClient(page)
    confirm = client.get(f"/signin?token={token}")
    assert confirm.status_code == 200 and "李四" in confirm.text and "set-cookie" not in confirm.headers
    signed = client.post("/signin", data={"token": token}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/queue"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; see the TLS test
    assert client.get("/queue", follow_redirects=False).status_code == 303
    again = TestClient(page)
    assert again.get(f"/signin?token={token}").status_code == 401
    response = again.post("/signin", data={"token": token})
    assert response.status_code == 401 and "already used" in response.text
    assert again.get("/queue").status_code == 401
    assert TestClient(page).get("/signin?token=forged").status_code == 401
    assert TestClient(page).post("/signin", data={}).status_code == 401


def test_over_tls_the_cookie_is_secure_and_hsts_is_sent(store):
    client = TestClient(create_app(store.home, secure=True), base_url="https://testserver")
    response = client.post("/signin", data={"token": issue_signin_token(store.db, "li")}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_identity_comes_from_the_session_not_the_form(page, store):
    li = client_for(page, store, "li")
    key = served_key(li)
    p = clue_state(store.db, key).prediction
    li.post(f"/clues/{key}/decide", data={"csrf": csrf(li), "reviewer_id": "wang", "reviewer": "wang", **p.labels})
    assert {r["reviewer_id"] for r in overrides(store)} == {"li"}


def test_sign_out_ends_the_session(page, store):
    li = client_for(page, store, "li")
    assert li.post("/signout", data={"csrf": "wrong"}).status_code == 403
    response = li.post("/signout", data={"csrf": csrf(li)})
    assert response.status_code == 200 and "已退出" in response.text
    assert li.get("/queue").status_code == 401


def test_starting_the_page_forgets_used_links_and_ended_sessions(page, store):
    li = client_for(page, store, "li")
    li.post("/signout", data={"csrf": csrf(li)})
    unused = issue_signin_token(store.db, "wang")
    with TestClient(create_app(store.home)) as started:  # runs the startup (lifespan)
        assert started.get(f"/signin?token={unused}").status_code == 200
    assert store.db.execute("SELECT COUNT(*) FROM signin_tokens").fetchone()[0] == 1
    assert store.db.execute("SELECT COUNT(*) FROM web_sessions").fetchone()[0] == 0


def test_cross_site_posts_and_foreign_hosts_are_refused(page, store):
    li = client_for(page, store, "li")
    token = csrf(li)
    assert li.post("/undo", data={"csrf": token}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert li.post("/undo", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert li.post("/undo", data={"csrf": token}, headers={"Origin": "http://testserver"},
                   follow_redirects=False).status_code == 303
    guarded = TestClient(create_app(store.home, allowed_hosts=["127.0.0.1", "localhost"]))
    assert guarded.get("/queue").status_code == 400  # Host: testserver (a DNS-rebinding name)


def test_unknown_routes_and_methods(page, store):
    li = client_for(page, store, "li")
    assert li.get("/admin").status_code == 404
    assert li.get("/queue", follow_redirects=False).status_code == 303
    assert li.put("/queue").status_code == 405
    assert li.get(f"/clues/{store.keys['W03']}/decide").status_code == 405


# -- the queue, one clue, deciding -------------------------------------------------------


def test_the_queue_serves_needs_review_first_and_shows_the_clue(page, store):
    li = client_for(page, store, "li")
    first = worklist(store.db, "li", Scope())[0]
    assert served_key(li) == first.clue_key
    html = li.get(f"/clues/{first.clue_key}").text
    p = first.prediction
    assert first.unit in html and first.clue_id in html
    assert NAMES[p.labels["attention"]] in html and f"{p.confidence['attention']:.2f}" in html
    assert "web_clues.csv" in html  # the source file
    assert "移交" in html and "已完成 done <b>0</b>" in html and f"待复核 left <b>{len(NANHU_IDS | DONGCHENG_IDS)}</b>" in html
    if p.needs_review:
        assert "需复核" in html


def test_key_terms_are_marked_in_the_text_in_the_writers_script(page, store):
    li = client_for(page, store, "li")
    key = store.keys["W01"]  # Traditional
    html = li.get(f"/clues/{key}").text
    assert "東城分局副局長" in html.replace("<mark>", "").replace("</mark>", "")
    terms = [t for t in clue_state(store.db, key).prediction.key_terms.split("、") if len(t) > 1 and t in TEXT["W01"]]
    if terms:
        assert "<mark>" in html


def test_deciding_writes_the_same_rows_as_the_terminal(page, store):
    li = client_for(page, store, "li")
    key = served_key(li)
    p = clue_state(store.db, key).prediction
    response = li.post(f"/clues/{key}/decide", data={"csrf": csrf(li, f"/clues/{key}"), **p.labels}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/queue?note=recorded"
    rows = overrides(store)
    assert [(r["head"], r["new_label"], r["old_label"], r["reviewer_id"], r["channel"], r["kind"], r["run_id"]) for r in rows] \
        == [(h, p.labels[h], p.labels[h], "li", "web", "review", store.run) for h in ("attention", "area")]
    assert rows[0]["predicted_conf"] == pytest.approx(p.confidence["attention"])
    assert served_key(li) != key
    assert "已完成 done <b>1</b>" in li.get("/stats").text


def test_a_form_without_the_csrf_token_is_refused(page, store):
    li = client_for(page, store, "li")
    key = served_key(li)
    p = clue_state(store.db, key).prediction
    for data in ({**p.labels}, {"csrf": "", **p.labels}, {"csrf": "forged", **p.labels}):
        assert li.post(f"/clues/{key}/decide", data=data).status_code == 403
    wang = client_for(page, store, "wang")  # another session's token is no good either
    assert li.post(f"/clues/{key}/decide", data={"csrf": csrf(wang), **p.labels}).status_code == 403
    assert overrides(store) == []


def test_bad_labels_and_missing_reasons_are_422_and_write_nothing(page, store):
    li = client_for(page, store, "li")
    token = csrf(li)
    confident = next(s for s in worklist(store.db, "li", Scope()) if not s.prediction.needs_review)
    key, p = confident.clue_key, confident.prediction
    other = next(a for a in ("further", "aware", "reference") if a != p.labels["attention"])
    response = li.post(f"/clues/{key}/decide", data={"csrf": token, "attention": "紧急", "area": p.labels["area"]})
    assert response.status_code == 422 and "unknown attention label" in response.text
    response = li.post(f"/clues/{key}/decide", data={"csrf": token, "attention": other, "area": p.labels["area"]})
    assert response.status_code == 422 and "reason is required" in response.text
    assert f'value="{other}" data-key' in response.text and "checked" in response.text  # the choice is kept
    assert li.post(f"/clues/{key}/decide", data={"csrf": token}).status_code == 422
    assert li.post(f"/clues/{key}/decide", data={"csrf": token, **p.labels, "corrects": "1;drop"}).status_code == 422
    assert overrides(store) == []
    response = li.post(f"/clues/{key}/decide", data={"csrf": token, "attention": other, "area": p.labels["area"],
                                                     "reason": "有具体人和事"}, follow_redirects=False)
    assert response.status_code == 303 and overrides(store)[0]["reason"] == "有具体人和事"


def test_a_recused_clue_is_404_everywhere_even_by_direct_url(page, store):
    zhang = client_for(page, store, "zhang")
    token = csrf(zhang)
    served = set()
    for _ in range(len(NANHU_IDS)):
        key = served_key(zhang)
        served.add(key)
        zhang.post(f"/clues/{key}/skip", data={"csrf": token})
    assert served == {store.keys[i] for i in NANHU_IDS}
    for clue_id in DONGCHENG_IDS:
        key = store.keys[clue_id]
        response = zhang.get(f"/clues/{key}")
        assert response.status_code == 404 and TEXT[clue_id] not in response.text
        assert zhang.post(f"/clues/{key}/decide", data={"csrf": token, "attention": "further", "area": "discipline"}
                          ).status_code == 404
        assert zhang.post(f"/clues/{key}/skip", data={"csrf": token}).status_code == 404
    nonexistent = zhang.get("/clues/" + "0" * 20)
    assert nonexistent.status_code == 404 and nonexistent.text == zhang.get(f"/clues/{store.keys['W01']}").text
    assert overrides(store) == []


def test_two_reviewers_never_get_the_same_clue(page, store):
    li, wang = client_for(page, store, "li"), client_for(page, store, "wang")
    tokens = {"li": csrf(li), "wang": csrf(wang)}
    seen: dict[str, list[str]] = {"li": [], "wang": []}
    while True:
        keys = {}
        for name, client in (("li", li), ("wang", wang)):
            response = client.get("/queue", follow_redirects=False)
            if response.status_code == 303:
                keys[name] = response.headers["location"].split("/clues/")[1].split("?")[0]
        if not keys:
            break
        assert len(set(keys.values())) == len(keys)  # never the same clue at once
        if len(keys) == 2:
            assert wang.get(f"/clues/{keys['li']}").status_code == 409
            p = clue_state(store.db, keys["li"]).prediction
            assert wang.post(f"/clues/{keys['li']}/decide", data={"csrf": tokens["wang"], **p.labels}).status_code == 409
        for name, key in keys.items():
            p = clue_state(store.db, key).prediction
            client = li if name == "li" else wang
            client.post(f"/clues/{key}/decide", data={"csrf": tokens[name], **p.labels})
            seen[name].append(key)
    assert not set(seen["li"]) & set(seen["wang"])
    assert len(seen["li"]) + len(seen["wang"]) == 8
    assert "队列已空" in li.get("/queue").text


def test_skip_puts_the_clue_at_the_back(page, store):
    li = client_for(page, store, "li")
    token = csrf(li)
    first = served_key(li)
    response = li.post(f"/clues/{first}/skip", data={"csrf": token}, follow_redirects=False)
    assert response.status_code == 303 and "note=skipped" in response.headers["location"]
    assert served_key(li) != first
    assert overrides(store) == []


def test_undo_reopens_the_last_decision_and_records_a_correction(page, store):
    li = client_for(page, store, "li")
    token = csrf(li)
    assert li.post("/undo", data={"csrf": token}, follow_redirects=False).headers["location"] == "/queue?note=nothing-to-undo"
    key = served_key(li)
    p = clue_state(store.db, key).prediction
    li.post(f"/clues/{key}/decide", data={"csrf": token, **p.labels})
    first_rows = overrides(store)
    response = li.post("/undo", data={"csrf": token}, follow_redirects=False)
    ids = ",".join(str(r["override_id"]) for r in first_rows)
    assert response.status_code == 303 and response.headers["location"] == f"/clues/{key}?corrects={ids}"
    html = li.get(response.headers["location"]).text
    assert "撤销 undo" in html and f'name="corrects" value="{ids}"' in html
    other = next(a for a in ("further", "aware", "reference") if a != p.labels["attention"])
    li.post(f"/clues/{key}/decide", data={"csrf": token, "attention": other, "area": p.labels["area"], "corrects": ids,
                                          "reason": "按错了"})
    rows = overrides(store)
    assert rows[:2] == first_rows  # never edited
    assert [(r["head"], r["new_label"]) for r in rows[2:]] == [("attention", other), ("area", p.labels["area"])]
    assert all(r["reason"].startswith("更正 #") and r["reason"].endswith("按错了") for r in rows[2:])
    assert clue_state(store.db, key).heads["attention"].effective == other
    assert li.post("/undo", data={"csrf": token, "before": "abc"}).status_code == 422
    assert li.post("/undo", data={"csrf": token, "before": str(rows[0]["override_id"])},
                   follow_redirects=False).headers["location"] == "/queue?note=nothing-to-undo"


# -- disputes and statistics -------------------------------------------------------------


def _dispute(store, clue_id="W03"):
    key = store.keys[clue_id]
    p = clue_state(store.db, key).prediction
    other = next(a for a in ("further", "aware", "reference") if a != p.labels["attention"])
    record_decision(store.db, key, "li", {"attention": p.labels["attention"]}, reason="同意模型")
    record_decision(store.db, key, "zhang" if clue_id in NANHU_IDS else "wang", {"attention": other}, reason="有具体人")
    return key, other


def test_the_disputes_page_shows_both_sides_and_an_outsider_resolves(page, store):
    key, other = _dispute(store)
    wang = client_for(page, store, "wang")
    html = wang.get("/disputes").text.replace("<mark>", "").replace("</mark>", "")
    assert "同意模型" in html and "有具体人" in html and "李四" in html and "张三" in html and TEXT["W03"] in html
    token = csrf(wang, "/disputes")
    li = client_for(page, store, "li")
    assert "你参与了这条争议" in li.get("/disputes").text
    assert li.post(f"/disputes/{key}/attention", data={"csrf": csrf(li), "label": other, "reason": "x"}).status_code == 403
    assert wang.post(f"/disputes/{key}/attention", data={"csrf": "no", "label": other, "reason": "x"}).status_code == 403
    response = wang.post(f"/disputes/{key}/attention", data={"csrf": token, "label": other, "reason": ""})
    assert response.status_code == 422 and "needs a reason" in response.text
    assert wang.post(f"/disputes/{key}/attention", data={"csrf": token, "label": "紧急", "reason": "x"}).status_code == 422
    assert wang.post(f"/disputes/{key}/area", data={"csrf": token, "label": "policy", "reason": "x"}).status_code == 409
    assert wang.post(f"/disputes/{key}/colour", data={"csrf": token, "label": "x", "reason": "x"}).status_code == 404
    response = wang.post(f"/disputes/{key}/attention", data={"csrf": token, "label": other, "reason": "有具体人和事"},
                         follow_redirects=False)
    assert response.status_code == 303
    row = overrides(store)[-1]
    assert (row["kind"], row["reviewer_id"], row["new_label"], row["channel"]) == ("adjudication", "wang", other, "web")
    assert "没有待裁决的争议" in wang.get("/disputes").text


def test_a_recused_adjudicator_neither_sees_nor_resolves_the_dispute(page, store):
    key, other = _dispute(store, "W01")  # 東城分局: zhang recused
    zhang = client_for(page, store, "zhang")
    assert TEXT["W01"] not in zhang.get("/disputes").text
    response = zhang.post(f"/disputes/{key}/attention", data={"csrf": csrf(zhang), "label": other, "reason": "x"})
    assert response.status_code == 404
    assert [r["kind"] for r in overrides(store)] == ["review", "review"]


def test_the_stats_page_shows_counts_accuracy_chart_and_agreement(page, store):
    _dispute(store)
    key = store.keys["W05"]
    p = clue_state(store.db, key).prediction
    record_decision(store.db, key, "li", p.labels)
    record_decision(store.db, key, "wang", p.labels)
    html = client_for(page, store, "wang").get("/stats").text
    assert "<svg" in html and 'class="bar"' in html
    assert re.search(r"<td>8</td>", html)  # clues of the run
    assert "李四 / 王五" in html or "李四 / 张三" in html
    assert "κ" in html and "100% (1/1)" in html


# -- the command line ------------------------------------------------------------------


def test_reviewers_token_prints_a_link_that_signs_in(page, store):
    result = CliRunner().invoke(cli_app, ["reviewers", "token", "li", "--url", "http://127.0.0.1:9999/"])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("http://127.0.0.1:9999/signin?token=")
    client = TestClient(page)
    assert client.post("/signin", data={"token": link.split("token=")[1]}, follow_redirects=False).status_code == 303
    result = CliRunner().invoke(cli_app, ["reviewers", "token", "nobody"])
    assert result.exit_code == 2 and "unknown reviewer" in result.stderr


def test_serve_binds_loopback_and_needs_tls_elsewhere(store, monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr("web.server.serve", lambda home, served, scope, minutes: started.append((served, scope)))
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 0 and "http://127.0.0.1:8765/" in result.stderr
    assert started[-1][0].host == "127.0.0.1" and not started[-1][0].tls
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--certfile" in result.stderr and len(started) == 1
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--insecure-lan", "--reviews-per-clue", "2"])
    assert result.exit_code == 0 and "unencrypted" in result.stderr
    assert started[-1][1].reviews_per_clue == 2
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    result = CliRunner().invoke(cli_app, ["serve", "--host", "192.0.2.10", "--certfile", str(cert), "--keyfile", str(key)])
    assert result.exit_code == 0 and "https://192.0.2.10:8765/" in result.stderr
    assert started[-1][0].allowed_hosts() == ["192.0.2.10"]


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                                ("::1", True), ("[::1]", True), ("0.0.0.0", False),
                                                ("192.168.1.5", False), ("review.example", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_plan_refuses_half_a_tls_pair_and_bad_ports(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(InputError, match="both --certfile and --keyfile"):
        plan("127.0.0.1", 8765, cert, None, False)
    with pytest.raises(InputError, match="not found"):
        plan("127.0.0.1", 8765, cert, tmp_path / "missing.pem", False)
    with pytest.raises(InputError, match="not a port"):
        plan("127.0.0.1", 0, None, None, False)
    assert plan("localhost", 8765, None, None, False).allowed_hosts() == ["127.0.0.1", "localhost", "[::1]", "::1"]


def test_the_empty_queue_names_the_round_it_serves(store, tmp_path):
    """A page serving a round says its queue is empty in that round, not in the latest run."""
    from pipeline.intake.rounds import start_round

    (tmp_path / "units.txt").write_text("某市生态环境局西城分局\n", encoding="utf-8")
    start_round(store.db, "2026年第一轮", units_file=tmp_path / "units.txt")  # no run triaged into it yet
    text = client_for(create_app(store.home, Scope(round="2026年第一轮")), store, "li").get("/queue").text
    assert "队列已空" in text and "2026年第一轮" in text
    assert "latest run" not in text and "最新一批" not in text


def test_the_empty_queue_names_the_run_it_serves(store):
    run = store.db.execute("SELECT MAX(run_id) FROM runs").fetchone()[0]
    li = client_for(create_app(store.home, Scope(run=run)), store, "li")
    for _ in range(20):
        response = li.get("/queue", follow_redirects=False)
        if response.status_code != 303:
            break
        key = response.headers["location"].split("/clues/")[1].split("?")[0]
        labels = clue_state(store.db, key).prediction.labels
        li.post(f"/clues/{key}/decide", data={"csrf": csrf(li), **labels})
    text = li.get("/queue").text
    assert "队列已空" in text and f"run {run}" in text and "latest run" not in text
