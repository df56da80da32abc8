"""The dashboard's web app: server-rendered pages (they work without JavaScript) and the JSON API behind
them. It reads history only through ``HistoryQueries`` (the state store's read queries) and the job
registry; it writes nothing but what its actions start, through the same CLI as a shell would.

This module only wires: the endpoints are in ``pages`` and ``api``, what they share in ``Dashboard``
(``request.app.state.dashboard``), input limits in ``inputs``, the error answers in ``errors``."""
from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import pinstripe_jobs.web.api as api
import pinstripe_jobs.web.pages as pages
import pinstripe_jobs.web.steering as steering
from pinstripe_jobs.web.dashboard import Dashboard
from pinstripe_jobs.web.errors import HANDLERS, CatchAll
from pinstripe_jobs.web.hosts import HostCheck
from pinstripe_jobs.web.render import HERE

__all__ = ["Dashboard", "create_app", "ROUTES"]

ROUTES = [
    Route("/", pages.jobs_page), Route("/jobs/{name}", pages.job_page), Route("/failures", pages.failures_page),
    Route("/runs", pages.runs_page), Route("/runs/{run_id}", pages.run_page), Route("/running", pages.running_page),
    Route("/ticks", pages.ticks_page), Route("/login", pages.login, methods=["GET", "POST"]),
    Route("/jobs/{name}/run", pages.start_run, methods=["POST"]),
    Route("/api/jobs", api.api_jobs), Route("/api/jobs/{name}", api.api_job),
    Route("/api/jobs/{name}/tenants", api.api_tenants),
    Route("/api/jobs/{name}/run", api.api_start_run, methods=["POST"]), Route("/api/runs", api.api_runs),
    Route("/api/runs/{run_id}", api.api_run), Route("/api/running", api.api_running),
    Route("/api/failures", api.api_failures), Route("/api/ticks", api.api_ticks),
    Route("/api/limits", api.api_limits),
    Route("/metrics", api.metrics),
    Route("/invocations/{invocation}", steering.invocation_page), Route("/audit", steering.audit_page),
    Route("/invocations/{invocation}/cancel", steering.cancel_invocation, methods=["POST"]),
    Route("/invocations/{invocation}/resume", steering.resume_invocation, methods=["POST"]),
    Route("/api/invocations/{invocation}", steering.api_invocation), Route("/api/audit", steering.api_audit),
    Route("/api/invocations/{invocation}/cancel", steering.api_cancel, methods=["POST"]),
    Route("/api/invocations/{invocation}/resume", steering.api_resume, methods=["POST"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def create_app(dashboard: Dashboard, root_path: str = "") -> Starlette:
    """The app over ``dashboard``: the Host check first, then unexpected errors caught with an id, then
    the routes with their error handlers. (``root_path`` is given to the server, not to the app.)"""
    app = Starlette(routes=ROUTES, exception_handlers=dict(HANDLERS), middleware=[
        Middleware(HostCheck, allowed=dashboard.allowed_hosts), Middleware(CatchAll)])
    app.state.dashboard = dashboard
    return app
