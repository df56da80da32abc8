"""The dashboard's JSON API: what the pages show, as JSON, and "run now" for API clients (Bearer token)."""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import pinstripe_jobs.web.inputs as inputs
from pinstripe_jobs.web.dashboard import dashboard_of
from pinstripe_jobs.web.inputs import BadRequest, GridQuery, RunsQuery, bounded_body
from pinstripe_jobs.web.trigger import actor_of, cross_site, launch, refused


def api_jobs(request: Request) -> Response:
    return JSONResponse(dashboard_of(request).jobs())


def api_job(request: Request) -> Response:
    dashboard = dashboard_of(request)
    name = inputs.job_name(request.path_params["name"])
    job = dashboard.job(name)
    return JSONResponse({"job": job, **dashboard.job_data(name, GridQuery.parse(request.query_params))})


def api_tenants(request: Request) -> Response:
    dashboard = dashboard_of(request)
    name = inputs.job_name(request.path_params["name"])
    dashboard.job(name)
    data = dashboard.job_data(name, GridQuery.parse(request.query_params), invocations=False)
    return JSONResponse({"tenants": data["grid"], "counts": data["grid_counts"], "next_cursor": data["grid_cursor"]})


def api_runs(request: Request) -> Response:
    data = dashboard_of(request).runs(RunsQuery.parse(request.query_params))
    return JSONResponse({"runs": data["runs"], "next_cursor": data["next_cursor"]})


def api_run(request: Request) -> Response:
    raw = request.path_params["run_id"]
    return JSONResponse(dashboard_of(request).run(inputs.run_id(raw), raw))


def api_running(request: Request) -> Response:
    return JSONResponse({"running": dashboard_of(request).running()})


def api_failures(request: Request) -> Response:
    return JSONResponse({"failures": dashboard_of(request).failures(inputs.text(request.query_params, "job"))})


def api_limits(request: Request) -> Response:
    return JSONResponse({"limits": dashboard_of(request).limits()})


def api_ticks(request: Request) -> Response:
    ticks, cursor = dashboard_of(request).ticks(inputs.cursor(request.query_params, "cursor"))
    return JSONResponse({"ticks": ticks, "next_cursor": cursor})


async def json_body(request: Request) -> Any:
    """The request's JSON body (an empty body is ``{}``), at most ``MAX_BODY`` bytes."""
    body = await bounded_body(request)
    if not body.strip():
        return {}
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise BadRequest(f"send the body as JSON with Content-Type: application/json (not {kind or 'none'!r})")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def api_start_run(request: Request) -> Response:
    """POST /api/jobs/{name}/run with ``{"args": [...], "only_failed": bool}`` and a Bearer token: 202 with
    the action's id and pid once the job and its arguments are checked."""
    refusal = refused(request, api=True)
    if refusal is not None:
        return refusal
    args, only_failed = inputs.run_body(await json_body(request))
    refusal = cross_site(request, None, api=True)
    if refusal is not None:
        return refusal
    name = inputs.job_name(request.path_params["name"])
    action = launch(dashboard_of(request), name, args, only_failed, f"api ({actor_of(request)})")
    return JSONResponse({"started": True, "job": name, "action": action.id, "pid": action.pid,
                         "only_failed": only_failed, "args": args}, status_code=202)


__all__ = ["api_jobs", "api_job", "api_tenants", "api_runs", "api_run", "api_running", "api_failures", "api_ticks",
           "api_limits", "api_start_run"]


def metrics(request: Request) -> Response:
    """Prometheus metrics read from history at each scrape (needs the metrics extra; 501 without it)."""
    from pinstripe_jobs.observers.telemetry import metrics_endpoint

    response: Response = metrics_endpoint(lambda: dashboard_of(request).history)(request)
    return response
