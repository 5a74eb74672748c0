"""The review page: a small Starlette app over the review store (``clue-triage serve``).

It talks to people; the work is done in ``pipeline`` (:mod:`pipeline.review.worklist`,
:mod:`pipeline.review.review`, :mod:`pipeline.review.sessions`, :mod:`pipeline.review.leases`), so the page, the
terminal queue and the Excel import obey the same rules and write the same audited rows.

Every request is checked on its own: the reviewer comes from the session cookie (never from
a form), every POST carries the session's CSRF token and must not come from another site,
and a clue of a unit the reviewer recused from answers 404 like a clue that does not exist.
Every response carries the security headers of :class:`SecurityHeaders`.

Status codes: 401 no or expired session (the page says how to sign in), 403 a form without
the session's CSRF token, from another site, or an adjudication by a party to the dispute,
404 no such clue (or recused), 409 another reviewer has the clue open or it is not
disputed, 422 a form the library refused (unknown label, missing reason).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.errors import InputError, StoreError
from pipeline.intake.routing import load_routing
from pipeline.labels import HEADS, NAMES, SHORT_NAMES
from pipeline.paths import Home
from pipeline.review import leases, sessions, worklist
from pipeline.review.review import (
    disputes,
    list_reviewers,
    recused_units,
    resolve,
)
from pipeline.store.store import connect

HERE = Path(__file__).resolve().parent
COOKIE = "clue_triage_session"
HEAD_TITLES = {"attention": "关注类别", "area": "领域"}
KEYS = {"attention": ("1", "2", "3"), "area": ("q", "w", "e", "r")}
NOTES = {"nothing-to-undo": "没有可撤销的决定 / nothing to undo", "skipped": "已跳过，稍后再看 / skipped for later",
         "recorded": "已记录 / recorded", "resolved": "已裁决 / adjudicated"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class SecurityHeaders:
    """Security headers on every response, errors included (wraps the whole app)."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": CSP,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
            "Cache-Control": "no-store",
        }
        if hsts:
            self.headers["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Connections:
    """One store connection per worker thread (sqlite3 connections stay in their thread)."""

    def __init__(self, path: Path) -> None:
        self.path, self.local, self.lock, self.opened = path, threading.local(), threading.Lock(), list[sqlite3.Connection]()

    def get(self) -> sqlite3.Connection:
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = connect(self.path)
            with self.lock:
                self.opened.append(db)
        return db

    def close(self) -> None:
        with self.lock:
            for db in self.opened:
                try:
                    db.close()
                except sqlite3.ProgrammingError:  # opened in a thread that is gone; nothing to do
                    pass
            self.opened.clear()


class ReviewPage:
    """The page's handlers; one instance per app."""

    def __init__(self, home: Home, scope: worklist.Scope, *, secure: bool, lease_minutes: float) -> None:
        self.home, self.scope, self.secure, self.lease_minutes = home, scope, secure, lease_minutes
        self.stores = Connections(home.db_path)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                 undefined=jinja2.StrictUndefined)
        env.globals.update(NAMES=NAMES, SHORT_NAMES=SHORT_NAMES, HEADS=HEADS, HEAD_TITLES=HEAD_TITLES, KEYS=KEYS)
        self.templates = Jinja2Templates(env=env)

    # -- plumbing ----------------------------------------------------------------

    def session(self, request: Request) -> sessions.Session | None:
        return sessions.find_session(self.stores.get(), request.cookies.get(COOKIE))

    def signed_in(self, request: Request) -> sessions.Session:
        session = self.session(request)
        if session is None:
            raise HTTPException(401, "请先登录 / please sign in")
        return session

    def checked_form(self, request: Request, form: dict[str, str]) -> sessions.Session:
        """The session of a POST with this session's CSRF token, else 401 or 403."""
        session = self.signed_in(request)
        if not sessions.check_csrf(session, form.get("csrf")):
            raise HTTPException(403, "表单已失效，请刷新页面后重试 / the form is missing its CSRF token; reload the page")
        return session

    def render(self, request: Request, name: str, context: dict[str, Any], session: sessions.Session | None,
               status: int = 200) -> Response:
        base: dict[str, Any] = {"session": session, "progress": None, "nav": None,
                                "note": NOTES.get(request.query_params.get("note", ""))}
        if session is not None:
            base["progress"] = worklist.progress(self.stores.get(), session.reviewer_id, self.scope)
        return self.templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def error_page(self, request: Request, status: int, detail: str) -> Response:
        session = self.session(request) if status != 401 else None
        return self.render(request, "error.html", {"status": status, "detail": detail}, session, status)

    # -- sign-in -----------------------------------------------------------------

    def home_page(self, request: Request) -> Response:
        self.signed_in(request)
        return RedirectResponse("/queue", 303)

    def signin_page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            reviewer_id = sessions.signin_reviewer(self.stores.get(), token)
        except sessions.SignInError as exc:
            raise HTTPException(401, str(exc)) from None
        names = {r.reviewer_id: r.name for r in list_reviewers(self.stores.get())}
        return self.render(request, "signin.html", {"token": token, "reviewer_id": reviewer_id,
                                                     "reviewer_name": names.get(reviewer_id, "")}, None)

    def signin(self, request: Request, form: dict[str, str]) -> Response:
        try:
            session = sessions.redeem_signin_token(self.stores.get(), form.get("token", ""))
        except sessions.SignInError as exc:
            raise HTTPException(401, str(exc)) from None
        response = RedirectResponse("/queue", 303)
        response.set_cookie(COOKIE, session.session_id, max_age=sessions.SESSION_HOURS * 3600, path="/",
                            secure=self.secure, httponly=True, samesite="strict")
        return response

    def signout(self, request: Request, form: dict[str, str]) -> Response:
        session = self.checked_form(request, form)
        leases.release(self.stores.get(), session.reviewer_id)
        sessions.end_session(self.stores.get(), session.session_id)
        response = self.render(request, "signed_out.html", {}, None)
        response.delete_cookie(COOKIE, path="/", secure=self.secure, httponly=True, samesite="strict")
        return response

    # -- the queue and one clue ----------------------------------------------------

    def queue(self, request: Request) -> Response:
        session = self.signed_in(request)
        state = worklist.next_clue(self.stores.get(), session.reviewer_id, self.scope, self.lease_minutes)
        if state is None:
            return self.render(request, "empty.html", {"nav": "queue", "csrf": session.csrf, "scope": self.scope}, session)
        note = request.query_params.get("note")
        return RedirectResponse(f"/clues/{state.clue_key}" + (f"?note={note}" if note in NOTES else ""), 303)

    def visible(self, session: sessions.Session, key: str) -> Any:
        try:
            return worklist.visible_clue(self.stores.get(), session.reviewer_id, key)
        except InputError:
            raise HTTPException(404, "没有这条线索 / no such clue") from None

    def clue_page(self, request: Request, key: str, session: sessions.Session | None = None,
                  form: dict[str, str] | None = None, error: str = "", status: int = 200) -> Response:
        session = session or self.signed_in(request)
        db = self.stores.get()
        state = self.visible(session, key)
        if not leases.claim(db, key, session.reviewer_id, self.lease_minutes):
            raise HTTPException(409, "另一位复核人正在处理这条线索 / another reviewer has this clue open")
        view = worklist.clue_view(db, state)
        own = {d.override_id for d in state.rows if d.reviewer_id == session.reviewer_id and d.kind == "review"}
        raw = (form or {}).get("corrects") or request.query_params.get("corrects", "")
        corrects = [int(i) for i in raw.split(",") if i.isdigit() and int(i) in own]
        assert state.prediction is not None
        chosen = {h: (form or {}).get(h) if (form or {}).get(h) in HEADS[h] else state.prediction.labels[h] for h in HEADS}
        routing = load_routing()
        context = {
            "nav": "queue", "csrf": session.csrf, "view": view, "state": state, "p": state.prediction,
            "chosen": chosen, "reason": (form or {}).get("reason", ""), "error": error,
            "corrects": ",".join(map(str, corrects)), "names": {r.reviewer_id: r.name for r in list_reviewers(db)},
            "routing": {f"{a}|{b}": routing.handover(a, b) for a in HEADS["attention"] for b in HEADS["area"]},
            "confident": not state.prediction.needs_review,
        }
        return self.render(request, "clue.html", context, session, status)

    def decide(self, request: Request, key: str, form: dict[str, str]) -> Response:
        session = self.checked_form(request, form)
        self.visible(session, key)
        raw = [i.strip() for i in form.get("corrects", "").split(",") if i.strip()]
        if not all(i.isdigit() for i in raw):
            return self.clue_page(request, key, session, form, "corrects 不是决定编号 / not override ids", 422)
        corrects = [int(i) for i in raw]
        try:
            worklist.decide(self.stores.get(), session.reviewer_id, key, {h: form.get(h, "") for h in HEADS},
                            form.get("reason", ""), corrects)
        except worklist.LeaseError as exc:
            raise HTTPException(409, str(exc)) from None
        except InputError as exc:
            return self.clue_page(request, key, session, form, str(exc), 422)
        except StoreError:  # recused meanwhile
            raise HTTPException(404, "没有这条线索 / no such clue") from None
        return RedirectResponse("/queue?note=recorded", 303)

    def skip(self, request: Request, key: str, form: dict[str, str]) -> Response:
        session = self.checked_form(request, form)
        self.visible(session, key)
        leases.skip(self.stores.get(), session.reviewer_id, key)
        return RedirectResponse("/queue?note=skipped", 303)

    def undo(self, request: Request, form: dict[str, str]) -> Response:
        session = self.checked_form(request, form)
        before = form.get("before", "")
        if before and not before.isdigit():
            raise HTTPException(422, "before 不是决定编号 / before must be an override id")
        last = worklist.last_decision(self.stores.get(), session.reviewer_id, int(before) if before else None)
        if last is None or last.clue_key and self._recused(session, last.clue_key):
            return RedirectResponse("/queue?note=nothing-to-undo", 303)
        if not leases.claim(self.stores.get(), last.clue_key, session.reviewer_id, self.lease_minutes):
            raise HTTPException(409, "另一位复核人正在处理这条线索 / another reviewer has this clue open")
        return RedirectResponse(f"/clues/{last.clue_key}?corrects={','.join(map(str, last.override_ids))}", 303)

    def _recused(self, session: sessions.Session, key: str) -> bool:
        try:
            worklist.visible_clue(self.stores.get(), session.reviewer_id, key)
        except InputError:
            return True
        return False

    # -- disputes and statistics ---------------------------------------------------

    def disputes_page(self, request: Request, session: sessions.Session | None = None, error: str = "",
                      status: int = 200) -> Response:
        session = session or self.signed_in(request)
        db = self.stores.get()
        recused = recused_units(db, session.reviewer_id)
        shown = [d for d in disputes(db) if d.state.unit_key not in recused]
        rows = []
        for d in shown:
            latest = {}
            for row in d.state.rows:
                if row.head == d.head and row.kind == "review":
                    latest[row.reviewer_id] = row
            rows.append({"dispute": d, "decisions": list(latest.values()),
                         "party": session.reviewer_id in d.decisions,
                         "pieces": worklist.highlight(d.state.text, (d.state.prediction.key_terms.split("、")
                                                                      if d.state.prediction else []))})
        return self.render(request, "disputes.html", {"nav": "disputes", "csrf": session.csrf, "rows": rows,
                                                      "error": error,
                                                      "names": {r.reviewer_id: r.name for r in list_reviewers(db)}},
                           session, status)

    def adjudicate(self, request: Request, key: str, head: str, form: dict[str, str]) -> Response:
        session = self.checked_form(request, form)
        state = self.visible(session, key)
        if head not in HEADS:
            raise HTTPException(404, "没有这个标签维度 / no such head")
        if session.reviewer_id in state.heads[head].decisions:
            raise HTTPException(403, "你参与了这条争议，不能裁决 / a party to a dispute cannot adjudicate it")
        if state.heads[head].status not in ("disputed", "adjudicated"):
            raise HTTPException(409, "这条线索在此维度上没有争议 / not disputed on this head")
        try:
            resolve(self.stores.get(), key, head, form.get("label", ""), session.reviewer_id, form.get("reason", ""),
                    channel="web")
        except InputError as exc:
            return self.disputes_page(request, session, str(exc), 422)
        return RedirectResponse("/disputes?note=resolved", 303)

    def stats_page(self, request: Request) -> Response:
        session = self.signed_in(request)
        db = self.stores.get()
        stats = worklist.page_stats(db, self.scope)
        names = {r.reviewer_id: r.name for r in list_reviewers(db)}
        return self.render(request, "stats.html", {"nav": "stats", "csrf": session.csrf, "stats": stats,
                                                   "names": names}, session)


FormHandler = Callable[[Request, dict[str, str]], Response]


def _threaded(handler: Callable[..., Response], form: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """An async endpoint that reads the form (if any) and runs ``handler`` in a worker thread,
    where the store connection lives, with the path parameters as keywords."""

    async def endpoint(request: Request) -> Response:
        kwargs: dict[str, Any] = dict(request.path_params)
        if form:
            async with request.form(max_files=0, max_fields=20, max_part_size=32 * 1024) as data:
                kwargs["form"] = {k: v for k, v in data.items() if isinstance(v, str)}
        return await run_in_threadpool(handler, request, **kwargs)

    return endpoint


def _same_site(app: ASGIApp) -> ASGIApp:
    """Refuse (403) a POST that a browser says comes from another site."""

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            site = headers.get(b"sec-fetch-site", b"").decode()
            origin = headers.get(b"origin", b"").decode()
            host = headers.get(b"host", b"").decode()
            if site == "cross-site" or (origin and origin != "null" and origin.split("://", 1)[-1] != host):
                response = Response("cross-site form refused", 403, media_type="text/plain")
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guard


def create_app(home: Home, scope: worklist.Scope | None = None, *, secure: bool = False,
               allowed_hosts: Sequence[str] | None = None,
               lease_minutes: float = leases.LEASE_MINUTES) -> ASGIApp:
    """The review page as an ASGI app over ``home``'s store.

    ``secure``: served over TLS (cookies get the Secure flag, HSTS is sent).
    ``allowed_hosts``: Host headers answered (None: any), against DNS rebinding.
    """
    page = ReviewPage(home, scope or worklist.Scope(), secure=secure, lease_minutes=lease_minutes)

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return await run_in_threadpool(page.error_page, request, exc.status_code, str(exc.detail))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await run_in_threadpool(lambda: sessions.purge_expired(page.stores.get()))  # used links, ended sessions
        yield
        page.stores.close()

    routes = [
        Route("/", _threaded(page.home_page)),
        Route("/signin", _threaded(page.signin_page)),
        Route("/signin", _threaded(page.signin, form=True), methods=["POST"]),
        Route("/signout", _threaded(page.signout, form=True), methods=["POST"]),
        Route("/queue", _threaded(page.queue)),
        Route("/clues/{key:str}", _threaded(page.clue_page)),
        Route("/clues/{key:str}/decide", _threaded(page.decide, form=True), methods=["POST"]),
        Route("/clues/{key:str}/skip", _threaded(page.skip, form=True), methods=["POST"]),
        Route("/undo", _threaded(page.undo, form=True), methods=["POST"]),
        Route("/disputes", _threaded(page.disputes_page)),
        Route("/disputes/{key:str}/{head:str}", _threaded(page.adjudicate, form=True), methods=["POST"]),
        Route("/stats", _threaded(page.stats_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: on_error},
                    lifespan=lifespan, max_body_size=64 * 1024)
    return SecurityHeaders(_same_site(app), hsts=secure)
