"""The Host check against DNS rebinding: a page of attacker.example whose name the attacker re-points at
127.0.0.1 reaches the dashboard from the victim's browser with ``Host: attacker.example``. The dashboard
answers only the names it is known by: its bind address; localhost, 127.0.0.1 and [::1] when bound to
loopback; this machine's name and the address a request arrived on when bound to every address (0.0.0.0,
::); and each ``--allowed-host`` (``*``: any, the check off). Anything else is a 400."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from pinstripe_jobs.web.render import refuse

LOOPBACK = ("localhost", "127.0.0.1", "::1")
ANY = "*"


def hostname(value: str) -> str:
    """The name part of a Host header or an address, lower case: ``[::1]:8765`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> list[str]:
    """The Host names a dashboard bound to ``bind_host`` answers to, plus ``extra`` (``--allowed-host``)."""
    host = hostname(bind_host)
    names = [host]
    if _is_loopback(host):
        names += LOOPBACK
    elif host in ("0.0.0.0", "::", ""):
        names = [*LOOPBACK, socket.gethostname().lower(), "@server"]  # "@server": where the request arrived
    names += [hostname(name) if name != ANY else ANY for name in extra]
    return list(dict.fromkeys(names))


class HostCheck:
    """ASGI middleware: a request whose Host is not allowed gets 400 (JSON under /api/) before any route."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] | None):
        self.app = app
        self.allowed = None if allowed is None else frozenset(allowed)

    def _ok(self, scope: Scope, header: str | None) -> bool:
        if self.allowed is None or ANY in self.allowed:
            return True
        if not header:
            return False
        name = hostname(header)
        if name in self.allowed:
            return True
        server: tuple[str, int | None] | None = scope.get("server")
        return "@server" in self.allowed and server is not None and name == hostname(str(server[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("host")
        if self._ok(scope, header):
            await self.app(scope, receive, send)
            return
        message = (f"Host {header[:100]!r} is not a name this dashboard answers to (DNS rebinding is refused)."
                   if header else "The request has no Host header, so the dashboard cannot check whom it is for.")
        response = refuse(request, message, status_code=400, hint="Open the dashboard by its address, or start it "
                          "with --allowed-host NAME for each name it is reached by.")
        await response(scope, receive, send)
