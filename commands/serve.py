"""`clue-triage serve` (the review page in the browser) and `reviewers token` (its sign-in links).

The page itself is the ``web`` package; the work is done in ``pipeline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import err, home_of, out, printable

DEFAULT_URL = "http://127.0.0.1:8765"


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Anything but loopback needs TLS or --insecure-lan.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    certfile: Annotated[Path | None, typer.Option("--certfile", help="TLS certificate (PEM), with --keyfile.")] = None,
    keyfile: Annotated[Path | None, typer.Option("--keyfile", help="TLS private key (PEM), with --certfile.")] = None,
    insecure_lan: Annotated[bool, typer.Option("--insecure-lan", help="Serve another host without TLS (a network you trust).")] = False,
    reviews_per_clue: Annotated[int, typer.Option("--reviews-per-clue", min=1, max=5, help="Reviewers who decide each clue before it leaves the queue (2 = double review).")] = 1,
    lease_minutes: Annotated[float, typer.Option("--lease-minutes", min=1, help="How long a clue on a reviewer's screen is kept from others.")] = 10.0,
    round_name: Annotated[str | None, typer.Option("--round", help="Serve this round (default: the open round, else the latest run).")] = None,
) -> None:
    """Serve the review page in the browser: one clue at a time, keys for every decision.

    Reviewers sign in with a one-time link from `clue-triage reviewers token ID`.
    The page serves the open round (each reviewer their share: one clue per repeat group,
    their assigned clues when `review assign` gave them some), else the latest triage run:
    needs-review, then least confident, first.

    Example: clue-triage serve --port 8765
    """
    from pipeline.intake.rounds import get_round, open_round
    from pipeline.review.assignments import page_share
    from pipeline.review.worklist import Scope
    from pipeline.store.store import connect
    from web.server import plan
    from web.server import serve as run

    served = plan(host, port, certfile, keyfile, insecure_lan)
    for warning in served.warnings:
        err.print(f"warning: {warning}", markup=False, style="yellow")
    home = home_of(ctx)
    served_round = None
    if home.db_path.exists() or round_name is not None:
        db = connect(home.db_path, create=False)
        try:
            chosen = get_round(db, round_name) if round_name is not None else open_round(db)
        finally:
            db.close()
        served_round = chosen.name if chosen is not None else None
    if served_round is not None:
        err.print(printable(f"serving round {served_round}: each reviewer gets their share"), markup=False)
    err.print(f"review page on {served.url}/ (Ctrl-C stops it)", markup=False)
    err.print("sign in with a link from: clue-triage reviewers token ID"
              + ("" if served.url == DEFAULT_URL else f" --url {served.url}"), markup=False)
    scope = (Scope(reviews_per_clue=reviews_per_clue) if served_round is None
             else Scope(reviews_per_clue=reviews_per_clue, round=served_round, share=page_share))
    run(home, served, scope, lease_minutes)


def token(
    ctx: typer.Context,
    reviewer_id: Annotated[str, typer.Argument(metavar="ID", help="The reviewer who signs in.")],
    url: Annotated[str, typer.Option("--url", help="Where the page is served (as printed by clue-triage serve).")] = DEFAULT_URL,
    minutes: Annotated[float, typer.Option("--minutes", min=1, max=24 * 60, help="How long the link works (once).")] = 30.0,
) -> None:
    """Print a one-time sign-in link to the review page for one reviewer.

    Give the link to that reviewer only: whoever opens it first is signed in as them.

    Example: clue-triage reviewers token zhang
    """
    from pipeline.review.sessions import issue_signin_token
    from pipeline.store.store import connect

    db = connect(home_of(ctx).db_path)
    try:
        secret = issue_signin_token(db, reviewer_id, minutes)
    finally:
        db.close()
    out.print(f"{url.rstrip('/')}/signin?token={secret}", markup=False, soft_wrap=True)
    err.print(f"works once, for {minutes:g} minutes, for reviewer {reviewer_id}", markup=False)
