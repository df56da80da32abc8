"""Actions (run now, rerun failed tenants) are off unless the dashboard was started with
``--allow-actions`` and a token. A browser signs in with the token once (an HttpOnly, SameSite=Strict
cookie); its forms carry a CSRF token and must come from the dashboard's own origin. API clients send
``Authorization: Bearer <token>`` instead (never sent by a browser on its own, so no CSRF token)."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "pinstripe_session"


def _same(offered: str, expected: str) -> bool:
    """A constant-time comparison of any text (``hmac.compare_digest`` refuses non-ASCII ``str``)."""
    return hmac.compare_digest(offered.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


class Auth:
    def __init__(self, token: str | None):
        self.token = token or ""

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def _mac(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    def session_value(self) -> str:
        return self._mac("session")

    def csrf_token(self) -> str:
        return self._mac("csrf")

    def check_token(self, offered: str) -> bool:
        return self.enabled and _same(offered, self.token)

    def signed_in(self, request: Request) -> bool:
        if not self.enabled:
            return False
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.check_token(header[7:].strip())
        return _same(request.cookies.get(COOKIE, ""), self.session_value())

    def bearer(self, request: Request) -> bool:
        return request.headers.get("authorization", "").lower().startswith("bearer ")

    def same_origin(self, request: Request) -> bool:
        """A form post must come from a page of this dashboard (Origin, else Referer, names this host)."""
        source = request.headers.get("origin") or request.headers.get("referer")
        if not source or source == "null":
            return False
        try:
            netloc = urlsplit(source).netloc
        except ValueError:  # e.g. "http://[::1": not a URL at all
            return False
        return netloc == request.headers.get("host", "")

    def csrf_ok(self, request: Request, form_token: str | None) -> bool:
        if self.bearer(request):
            return True
        return self.same_origin(request) and bool(form_token) and _same(form_token or "", self.csrf_token())
