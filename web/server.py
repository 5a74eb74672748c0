"""Serving the review page with uvicorn: where it may listen, and over what.

The page binds to 127.0.0.1 unless told otherwise. Any other address needs ``--host``, and
then TLS (``--certfile`` and ``--keyfile``) unless ``--insecure-lan`` is given, because
sign-in links and session cookies must not cross a network in clear text.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InputError
from pipeline.paths import Home
from pipeline.review.worklist import Scope

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) stays on this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Plan:
    """How the page will be served, after the checks."""

    host: str
    port: int
    certfile: Path | None
    keyfile: Path | None
    warnings: tuple[str, ...]

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"{'https' if self.tls else 'http'}://{shown}:{self.port}"

    def allowed_hosts(self) -> list[str] | None:
        """Host headers to answer (against DNS rebinding): the loopback names when bound to
        loopback, the host given otherwise; None (any) for a wildcard bind."""
        if is_loopback(self.host):
            return ["127.0.0.1", "localhost", "[::1]", "::1"]
        if self.host in ("0.0.0.0", "::"):
            return None
        return [self.host]


def plan(host: str, port: int, certfile: Path | None, keyfile: Path | None, insecure_lan: bool) -> Plan:
    """Check the bind options; raise :class:`InputError` for a combination that would send
    sign-in links or cookies over a network in clear text."""
    if (certfile is None) != (keyfile is None):
        raise InputError("give both --certfile and --keyfile, or neither")
    for path in (certfile, keyfile):
        if path is not None and not path.is_file():
            raise InputError("file not found", path=path)
    if not 0 < port < 65536:
        raise InputError(f"--port {port} is not a port number")
    warnings = []
    if not is_loopback(host):
        warnings.append(f"serving on {host}: reachable from other machines; give sign-in links to reviewers only")
        if certfile is None:
            if not insecure_lan:
                raise InputError(f"--host {host} is reachable from other machines: serve over TLS with "
                                 "--certfile and --keyfile (or, on a network you trust, --insecure-lan)")
            warnings.append("--insecure-lan: sign-in links, cookies and clue text cross the network unencrypted")
    return Plan(host, port, certfile, keyfile, tuple(warnings))


def serve(home: Home, served: Plan, scope: Scope, lease_minutes: float) -> None:
    """Run the page until interrupted (Ctrl-C). No access log: URLs carry sign-in tokens."""
    import uvicorn

    from .app import create_app

    app = create_app(home, scope, secure=served.tls, allowed_hosts=served.allowed_hosts(), lease_minutes=lease_minutes)
    uvicorn.run(app, host=served.host, port=served.port, ssl_certfile=served.certfile, ssl_keyfile=served.keyfile,
                access_log=False, log_level="warning", server_header=False, proxy_headers=False)
