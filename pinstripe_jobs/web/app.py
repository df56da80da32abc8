"""The dashboard's web app: server-rendered pages (they work without JavaScript) and the JSON API behind
them. It reads history only through ``HistoryQueries`` (the state store's read queries) and the job
registry; it writes nothing but what its actions start, through the same CLI as a shell would."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pinstripe_jobs.config import Settings
from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.observers.telemetry import metrics_endpoint
from pinstripe_jobs.store.reads import PAGE, RANK, BadCursor, HistoryQueries
from pinstripe_jobs.store.state import StateStore, StateUnavailable
from pinstripe_jobs.web.actions import Launcher
from pinstripe_jobs.web.auth import COOKIE, Auth
from pinstripe_jobs.web.charts import duration_chart, ms, sparkline

HERE = Path(__file__).parent
STATUSES = ("failed", "timed_out", "abandoned", "interrupted", "skipped", "succeeded")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class NotFound(Exception):
    pass


class BadRequest(ValueError):
    """A query parameter the API does not accept (400)."""


class Dashboard:
    """What the routes share: the project, its store (opened on first use), auth and the launcher."""

    def __init__(self, settings: Settings, *, token: str | None = None, allow_actions: bool = False,
                 project_args: list[str] | None = None, now: Callable[[], datetime] | None = None,
                 retry_s: float = 5):
        self.settings = settings
        self.auth = Auth(token if allow_actions else None)
        self.launcher = Launcher(project_args or [], settings.root,
                                 settings.root / ".pinstripe" / "dashboard-actions.log")
        self.now = now or (lambda: datetime.now(UTC))
        self.retry_s = retry_s
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    @property
    def history(self) -> HistoryQueries | None:
        """None while there is no history at all (no SQLite state file yet: the dashboard creates none)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    url = self.settings.state_url
                    if url.startswith("sqlite") and ":///" in url:
                        path = url.split(":///", 1)[1].split("?", 1)[0]
                        if path and path != ":memory:" and not Path(path).is_file():
                            return None
                    self._store = StateStore(url, history_days=self.settings.history_days, retry_s=self.retry_s,
                                             lock_stale_s=self.settings.lock_stale_s)
        return HistoryQueries(self._store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- what the pages and the API show -----------------------------------------------------------
    def _described(self) -> tuple[list[dict], list[dict]]:
        """Every job (also jobs known only from history, whose module is gone) and the broken modules."""
        from pinstripe_jobs.cli.listing import describe_jobs

        jobs, broken = describe_jobs(self.settings, now=self.now())
        history = self.history
        known = {job["name"] for job in jobs}
        for name in (history.job_names() if history else []):
            if name not in known:
                jobs.append({"name": name, "description": "(no module: history only)", "schedules": [],
                             "next_run": None, "timezone": None, "multi_tenant": None, "file": None})
        return jobs, [{"name": b.job_name, "file": b.path, "line": b.line, "error": b.error} for b in broken]

    def jobs(self) -> dict[str, Any]:
        """The jobs page: every job with its last invocation and its recent p50 durations."""
        jobs, broken = self._described()
        history = self.history
        for job in jobs:
            recent = history.recent_invocations(job["name"], 20) if history else []
            job["last_invocation"] = recent[0] if recent else None
            job["durations_ms"] = [inv["p50_ms"] for inv in reversed(recent)]
        return {"jobs": jobs, "broken": broken}

    def job(self, name: str) -> dict[str, Any]:
        jobs, broken = self._described()
        found = next((job for job in jobs if job["name"] == name), None)
        failed = next((b for b in broken if b["name"] == name), None)
        if found is None and failed is None:
            raise NotFound(f"No job named '{name}' (and no history of one).")
        return found or {"name": name, "description": None, "schedules": [], "broken": failed}


def create_app(dashboard: Dashboard, root_path: str = "") -> Starlette:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["ms"] = ms
    env.filters["when"] = _when

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        context.update(url=lambda path: root + path, request=request, auth=dashboard.auth,
                       signed_in=dashboard.auth.signed_in(request), csrf=dashboard.auth.csrf_token()
                       if dashboard.auth.enabled else "", nav=template.split(".")[0], statuses=STATUSES,
                       spark=lambda values: Markup(sparkline(values)), project=str(dashboard.settings.root))
        return HTMLResponse(env.get_template(template).render(**context), status_code=status_code,
                            headers=SECURITY_HEADERS)

    # -- pages -------------------------------------------------------------------------------------
    def jobs_page(request: Request) -> Response:
        return page(request, "jobs.html", **dashboard.jobs())

    def job_page(request: Request) -> Response:
        name = request.path_params["name"]
        job = dashboard.job(name)
        data = _job_data(dashboard, name, request.query_params)
        invocations = list(reversed(data["invocations"]))
        chart = duration_chart({key: [inv[f"{key}_ms"] for inv in invocations] for key in ("p50", "p95", "max")},
                                      [_when(inv["started_at"]) for inv in invocations])
        return page(request, "job.html", job=job, chart=Markup(chart), **data)

    def failures_page(request: Request) -> Response:
        history = dashboard.history
        return page(request, "failures.html", groups=history.failures(request.query_params.get("job") or None)
                    if history else [])

    def run_page(request: Request) -> Response:
        history = dashboard.history
        run = history.run(_int(request.path_params["run_id"])) if history else None
        if run is None:
            raise NotFound(f"No run with id {request.path_params['run_id']}.")
        return page(request, "run.html", run=run)

    def running_page(request: Request) -> Response:
        history = dashboard.history
        return page(request, "running.html", runs=history.running(dashboard.now()) if history else [])

    def ticks_page(request: Request) -> Response:
        history = dashboard.history
        ticks, cursor = history.ticks(cursor=request.query_params.get("cursor")) if history else ([], None)
        return page(request, "ticks.html", ticks=ticks, next_cursor=cursor)

    def runs_page(request: Request) -> Response:
        data = _runs_data(dashboard, request.query_params)
        return page(request, "runs.html", filters=dict(request.query_params), **data)

    # -- sign-in and actions -----------------------------------------------------------------------
    async def login(request: Request) -> Response:
        if not dashboard.auth.enabled:
            return _refuse(request, "Actions are off: start the dashboard with --allow-actions and --token-env.")
        if request.method == "GET":
            return page(request, "login.html")
        form = await request.form()
        if not dashboard.auth.same_origin(request):
            return _refuse(request, "Cross-site request refused.")
        if not dashboard.auth.check_token(str(form.get("token", ""))):
            return page(request, "login.html", status_code=403, error="Wrong token.")
        response = RedirectResponse(request.scope.get("root_path", "") + "/", status_code=303)
        response.set_cookie(COOKIE, dashboard.auth.session_value(), httponly=True, samesite="strict",
                            path=(request.scope.get("root_path") or "/"))
        return response

    async def start_run(request: Request) -> Response:
        """POST /jobs/{name}/run (a form) or /api/jobs/{name}/run (JSON, Bearer token)."""
        api = request.url.path.startswith(request.scope.get("root_path", "") + "/api/")
        if not dashboard.auth.enabled:
            return _refuse(request, "Actions are off: start the dashboard with --allow-actions and --token-env.",
                           api=api)
        if not dashboard.auth.signed_in(request):
            return _refuse(request, "Sign in with the dashboard's token first.", status_code=401, api=api)
        if api:
            body = await request.json() if request.headers.get("content-type", "").startswith("application/json") \
                else {}
            args, only_failed, token = [str(a) for a in body.get("args", [])], bool(body.get("only_failed")), None
        else:
            form = await request.form()
            args = [line for line in str(form.get("args", "")).splitlines() if line.strip()]
            only_failed, token = form.get("only_failed") == "1", str(form.get("csrf", ""))
        if not dashboard.auth.csrf_ok(request, token):
            return _refuse(request, "Cross-site request refused (missing or wrong CSRF token, or another origin).",
                           api=api)
        name = request.path_params["name"]
        dashboard.job(name)
        pid = dashboard.launcher.start(name, args, only_failed)
        if api:
            return JSONResponse({"started": True, "job": name, "pid": pid, "only_failed": only_failed, "args": args},
                                status_code=202)
        return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{name}?started={pid}", status_code=303)

    # -- the JSON API ------------------------------------------------------------------------------
    def api_jobs(request: Request) -> Response:
        return JSONResponse(dashboard.jobs())

    def api_job(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse({"job": dashboard.job(name), **_job_data(dashboard, name, request.query_params)})

    def api_tenants(request: Request) -> Response:
        name = request.path_params["name"]
        dashboard.job(name)
        data = _job_data(dashboard, name, request.query_params, invocations=False)
        return JSONResponse({"tenants": data["grid"], "counts": data["grid_counts"],
                             "next_cursor": data["grid_cursor"]})

    def api_runs(request: Request) -> Response:
        data = _runs_data(dashboard, request.query_params)
        return JSONResponse({"runs": data["runs"], "next_cursor": data["next_cursor"]})

    def api_run(request: Request) -> Response:
        history = dashboard.history
        run = history.run(_int(request.path_params["run_id"])) if history else None
        if run is None:
            raise NotFound(f"No run with id {request.path_params['run_id']}.")
        return JSONResponse(run)

    def api_running(request: Request) -> Response:
        history = dashboard.history
        return JSONResponse({"running": history.running(dashboard.now()) if history else []})

    def api_failures(request: Request) -> Response:
        history = dashboard.history
        return JSONResponse({"failures": history.failures(request.query_params.get("job") or None)
                             if history else []})

    def api_ticks(request: Request) -> Response:
        history = dashboard.history
        ticks, cursor = history.ticks(cursor=request.query_params.get("cursor")) if history else ([], None)
        return JSONResponse({"ticks": ticks, "next_cursor": cursor})

    # -- errors ------------------------------------------------------------------------------------
    def _refuse(request: Request, message: str, status_code: int = 403, api: bool | None = None) -> Response:
        if api is None:
            api = request.url.path.startswith(request.scope.get("root_path", "") + "/api/")
        if api:
            return JSONResponse({"error": message}, status_code=status_code, headers=SECURITY_HEADERS)
        return page(request, "error.html", status_code=status_code, message=message)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _refuse(request, str(exc) if isinstance(exc, NotFound) else "No such page.", status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return _refuse(request, f"Bad request: {exc}", status_code=400)

    async def unavailable(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, PinstripeError) else str(exc)
        return _refuse(request, message, status_code=503)

    routes = [
        Route("/", jobs_page), Route("/jobs/{name}", job_page), Route("/failures", failures_page),
        Route("/runs", runs_page), Route("/runs/{run_id}", run_page), Route("/running", running_page),
        Route("/ticks", ticks_page), Route("/login", login, methods=["GET", "POST"]),
        Route("/jobs/{name}/run", start_run, methods=["POST"]),
        Route("/api/jobs", api_jobs), Route("/api/jobs/{name}", api_job), Route("/api/jobs/{name}/tenants", api_tenants),
        Route("/api/jobs/{name}/run", start_run, methods=["POST"]), Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run), Route("/api/running", api_running),
        Route("/api/failures", api_failures), Route("/api/ticks", api_ticks),
        Route("/metrics", metrics_endpoint(lambda: dashboard.history)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        404: not_found, NotFound: not_found, BadCursor: bad_request, BadRequest: bad_request,
        StateUnavailable: unavailable, PinstripeError: unavailable})
    return app


def _job_data(dashboard: Dashboard, name: str, query, invocations: bool = True) -> dict[str, Any]:
    history = dashboard.history
    status = query.get("status") or None
    if status is not None and status not in RANK:
        raise BadRequest(f"unknown status '{status}' (one of {', '.join(RANK)})")
    search = query.get("q") or None
    limit = _limit(query)
    if history is None:
        return {"invocations": [], "invocations_cursor": None, "grid": [], "grid_cursor": None, "grid_counts": {},
                "status": status, "q": search}
    invs, inv_cursor = history.invocations(name, cursor=query.get("before"), limit=20) if invocations else ([], None)
    grid, grid_cursor = history.grid(name, status=status, search=search, cursor=query.get("cursor"), limit=limit)
    return {"invocations": invs, "invocations_cursor": inv_cursor, "grid": grid, "grid_cursor": grid_cursor,
            "grid_counts": history.grid_counts(name), "status": status, "q": search}


def _runs_data(dashboard: Dashboard, query) -> dict[str, Any]:
    history = dashboard.history
    if history is None:
        return {"runs": [], "next_cursor": None}
    runs, cursor = history.runs(job=query.get("job") or None, status=query.get("status") or None,
                                tenant=query.get("tenant") or None, invocation=query.get("invocation") or None,
                                cursor=query.get("cursor") or None, limit=_limit(query))
    return {"runs": runs, "next_cursor": cursor}


def _limit(query) -> int:
    raw = query.get("limit")
    if raw is None:
        return PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise BadRequest("limit must be a whole number from 1 to 500")
    return int(raw)


def _int(text: str) -> int:
    if not text.isdigit():
        raise NotFound(f"No run with id {text}.")
    return int(text)


def _when(text: str | None) -> str:
    if not text:
        return "–"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
