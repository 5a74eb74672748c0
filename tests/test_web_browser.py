"""The review page in a real browser: Playwright driving Debian's Chromium against a live
uvicorn server on 127.0.0.1.

Skipped, with the reason, when Playwright or a Chromium executable is missing (`make test`
installs Debian's chromium when it runs as root with apt-get; set CHROMIUM_EXECUTABLE to use
another build). The same routes are tested without a browser in tests/test_web.py.

The screenshot of the queue page is saved as var/reports/review-page.png in the project.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web_support import CLUES, DONGCHENG_IDS, NANHU_IDS, triaged_store

from pipeline.paths import PROJECT_ROOT
from pipeline.review.review import clue_state
from pipeline.review.sessions import issue_signin_token
from web.app import create_app

TEXT = {clue_id: text for clue_id, _, text in CLUES}
SCREENSHOT = PROJECT_ROOT / "var" / "reports" / "review-page.png"


def chromium_executable() -> str | None:
    """$CHROMIUM_EXECUTABLE, else Debian's chromium, else a Chrome or Chromium on PATH."""
    named = os.environ.get("CHROMIUM_EXECUTABLE")
    candidates = [named] if named else [
        "/usr/lib/chromium/chromium",  # Debian's binary itself (the /usr/bin wrapper only adds flags)
        *(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")),
    ]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if chromium_executable() is None:
        return ("no Chromium executable found: apt-get install chromium (make test does it when run as root), "
                "or set CHROMIUM_EXECUTABLE")
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_executable())
        yield launched
        launched.close()


@pytest.fixture
def store(model_home, tmp_path):
    s = triaged_store(model_home, tmp_path)
    yield s
    s.db.close()


@pytest.fixture
def live(store) -> Iterator[str]:
    """The page served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(store.home, allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def sign_in(browser, live, store) -> Iterator[Callable[[str], Any]]:
    """sign_in(reviewer): a new browser context signed in by the reviewer's one-time link
    (Enter on the focused sign-in button); returns its page. Contexts close after the test."""
    contexts = []

    def open_page(reviewer: str) -> Any:
        context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="zh-CN")
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live}/signin?token={issue_signin_token(store.db, reviewer)}")
        page.wait_for_function("document.activeElement && document.activeElement.tagName === 'BUTTON'")  # autofocus
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert "/clues/" in page.url or page.url.endswith("/queue")
        return page

    yield open_page
    for context in contexts:
        context.close()


def key_of(page) -> str:
    return page.url.split("/clues/")[1].split("?")[0]


def press_and_wait(page, *keys: str) -> None:
    """Press keys; the last one submits and the browser lands on the next page."""
    for key in keys[:-1]:
        page.keyboard.press(key)
    with page.expect_navigation():
        page.keyboard.press(keys[-1])


def decide_by_keys(page, keys: tuple[str, ...], reason: str = "键盘复核") -> None:
    """Choose labels by key; give a reason when the page asks for one; submit with Enter."""
    for key in keys:
        page.keyboard.press(key)
    if page.locator("#reason").evaluate("e => e.required"):
        page.keyboard.press("/")
        page.keyboard.type(reason)
    press_and_wait(page, "Enter")


def overrides(store) -> list[dict]:
    return [dict(r) for r in store.db.execute("SELECT * FROM overrides ORDER BY override_id")]


def test_sign_in_decide_three_clues_by_keyboard_and_undo_one(sign_in, live, store):
    page = sign_in("li")
    choices = [(), ("3", "r"), ("1", "q")]  # accept the model; reference/rectification; further/policy
    decided = []
    for keys in choices:
        assert page.locator("#decide").count() == 1
        decided.append(key_of(page))
        decide_by_keys(page, keys)
    assert len(set(decided)) == 3 and key_of(page) not in decided
    assert "已完成 done 3" in page.locator("#progress").inner_text()

    rows = overrides(store)
    assert len(rows) == 6 and {(r["reviewer_id"], r["channel"], r["kind"]) for r in rows} == {("li", "web", "review")}
    first = clue_state(store.db, decided[0])
    assert first.effective() == first.prediction.labels
    assert clue_state(store.db, decided[1]).effective() == {"attention": "reference", "area": "rectification"}
    assert clue_state(store.db, decided[2]).effective() == {"attention": "further", "area": "policy"}

    press_and_wait(page, "u")  # undo: the last clue comes back
    assert key_of(page) == decided[2] and "corrects=" in page.url
    assert "撤销" in page.locator(".banner").inner_text()
    decide_by_keys(page, ("2", "e"), reason="按错键，改正")
    after = overrides(store)
    assert after[:6] == rows  # the undone decision stays on record, unedited
    assert [(r["head"], r["new_label"]) for r in after[6:]] == [("attention", "aware"), ("area", "organization")]
    assert all(r["reason"].startswith("更正 #") for r in after[6:])
    assert clue_state(store.db, decided[2]).effective() == {"attention": "aware", "area": "organization"}


def test_a_recused_reviewer_gets_404_on_a_direct_url(sign_in, live, store):
    page = sign_in("zhang")
    assert key_of(page) in {store.keys[i] for i in NANHU_IDS}
    for clue_id in DONGCHENG_IDS:
        response = page.goto(f"{live}/clues/{store.keys[clue_id]}")
        assert response.status == 404
        assert TEXT[clue_id] not in page.content()


def test_a_form_posted_without_the_csrf_token_is_refused(sign_in, live, store):
    page = sign_in("li")
    page.evaluate("document.querySelector('#decide input[name=csrf]').remove()")
    with page.expect_navigation() as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 403 and answer.value.url.endswith("/decide")
    assert "CSRF" in page.content()
    assert overrides(store) == []


def test_two_reviewers_in_two_browsers_never_get_the_same_clue(sign_in, live, store):
    li, wang = sign_in("li"), sign_in("wang")
    seen: dict[str, list[str]] = {"li": [], "wang": []}
    for _ in range(8):
        open_now = {name: key_of(p) for name, p in (("li", li), ("wang", wang)) if "/clues/" in p.url}
        if not open_now:
            break
        assert len(set(open_now.values())) == len(open_now)  # both on screen at once, never the same clue
        for name, p in (("li", li), ("wang", wang)):
            if name in open_now:
                seen[name].append(open_now[name])
                press_and_wait(p, "Enter")  # accept the model's labels
    assert not set(seen["li"]) & set(seen["wang"])
    assert sorted(seen["li"] + seen["wang"]) == sorted(store.keys.values())
    assert "队列已空" in li.content() and "队列已空" in wang.content()


def _same_pixels(page, a: str, b: str) -> bool:
    """Whether two characters render as the same picture (both the missing-glyph box)."""
    shots = []
    for ch in (a, b):
        page.evaluate("ch => { const s = document.createElement('span'); s.id = 'probe'; s.textContent = ch; "
                      "s.style.fontSize = '48px'; document.body.prepend(s); }", ch)
        shots.append(page.locator("#probe").screenshot())
        page.evaluate("document.getElementById('probe').remove()")
    return shots[0] == shots[1]


def test_screenshot_of_the_queue_page_with_chinese_text(sign_in, live, store):
    page = sign_in("li")
    for _ in range(len(CLUES)):  # skip (key s) to a clue with key terms marked in its text
        if page.locator(".text mark").count():
            break
        press_and_wait(page, "s")
    assert page.locator(".text mark").count(), "no clue with a key term marked"
    state = clue_state(store.db, key_of(page))
    assert page.locator(".text").inner_text() == state.text
    assert not _same_pixels(page, "国", "线"), "Chinese characters render as boxes: apt-get install fonts-noto-cjk"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def test_keys_typed_into_the_reason_box_are_text(sign_in, live, store):
    page = sign_in("li")
    key = key_of(page)
    page.keyboard.press("/")
    page.keyboard.type("1qu s")  # would choose labels, undo and skip if they were keys
    assert page.locator("#reason").input_value() == "1qu s"
    assert key_of(page) == key and overrides(store) == []
    page.keyboard.press("Escape")
    page.keyboard.press("3")
    assert page.locator("input[name=attention][value=reference]").is_checked()
