"""How the dashboard answers: server-rendered pages (Jinja2, autoescaped, with the security headers) and
JSON, and a refusal in whichever of the two the request asked for (JSON under /api/, a page elsewhere)."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from pinstripe_jobs.web.charts import ms, sparkline
from pinstripe_jobs.web.dashboard import dashboard_of

HERE = Path(__file__).parent
STATUSES = ("failed", "timed_out", "abandoned", "interrupted", "skipped", "succeeded")  # the filters offered
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def when(text: str | None) -> str:
    if not text:
        return "–"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _spark(values: list[float | None]) -> Markup:
    return Markup(sparkline(values))


ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
ENV.filters["ms"] = ms
ENV.filters["when"] = when


def root_of(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    dashboard = dashboard_of(request)
    root = root_of(request)
    auth = dashboard.auth
    context.update(url=lambda path: root + path, request=request, auth=auth, signed_in=auth.signed_in(request),
                   csrf=auth.csrf_token() if auth.enabled else "", nav=template.split(".")[0], statuses=STATUSES,
                   spark=_spark, project=str(dashboard.settings.root))
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status_code,
                        headers=SECURITY_HEADERS)


def is_api(request: Request) -> bool:
    path, api = request.url.path, root_of(request) + "/api"
    return path == api or path.startswith(api + "/")


def refuse(request: Request, message: str, status_code: int = 403, api: bool | None = None,
           **extra: str) -> Response:
    """An error answer: ``{"error": message, ...extra}`` for the API, the error page for a browser."""
    if api is None:
        api = is_api(request)
    if api:
        return JSONResponse({"error": message, **extra}, status_code=status_code, headers=SECURITY_HEADERS)
    return page(request, "error.html", status_code=status_code, message=message, **extra)
