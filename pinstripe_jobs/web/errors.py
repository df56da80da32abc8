"""What the dashboard answers when a request goes wrong: 400 for a bad value (``BadRequest``), 404 for a
missing job, run or page, 503 while the state store is unavailable, and for anything unexpected a 500
carrying an error id that the server log carries too (with the traceback), JSON under /api/ and the error
page elsewhere, never a plain-text traceback."""
from __future__ import annotations

import logging
import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.store.reads import BadCursor
from pinstripe_jobs.web.inputs import BadRequest, NotFound
from pinstripe_jobs.web.render import SECURITY_HEADERS, refuse

log = logging.getLogger("pinstripe_jobs.web")

__all__ = ["BadRequest", "NotFound", "HANDLERS", "CatchAll", "log"]


async def not_found(request: Request, exc: Exception) -> Response:
    return refuse(request, str(exc) if isinstance(exc, NotFound) else "No such page.", status_code=404)


async def bad_request(request: Request, exc: Exception) -> Response:
    return refuse(request, f"Bad request: {exc}", status_code=400)


async def unavailable(request: Request, exc: Exception) -> Response:
    message = exc.message if isinstance(exc, PinstripeError) else str(exc)
    return refuse(request, message, status_code=503)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (405 for a wrong method, 400 for a malformed form) in the dashboard's form."""
    code = exc.status_code if isinstance(exc, HTTPException) else 400
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    return refuse(request, detail, status_code=code)


HANDLERS = {404: not_found, NotFound: not_found, BadRequest: bad_request, BadCursor: bad_request,
            HTTPException: http_error, PinstripeError: unavailable}


class CatchAll:
    """ASGI middleware: an exception nothing else handled becomes a 500 with an error id, logged once
    with its traceback (instead of Starlette's plain-text 500 and uvicorn's anonymous traceback)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            request = Request(scope)
            log.error("dashboard error %s on %s %s: %s: %s", error_id, request.method, request.url.path,
                      type(exc).__name__, exc, exc_info=exc)
            if started:  # too late for an error answer: the connection is cut
                raise
            await self._answer(request, error_id)(scope, receive, send)

    @staticmethod
    def _answer(request: Request, error_id: str) -> Response:
        message = f"Internal error {error_id}: the dashboard's log has the details."
        try:
            return refuse(request, message, status_code=500, error_id=error_id)
        except Exception:  # the error page itself failed: JSON still says it
            log.exception("dashboard error %s: the error page failed too", error_id)
            return JSONResponse({"error": message, "error_id": error_id}, status_code=500,
                                headers=SECURITY_HEADERS)
