"""The dashboard's server-rendered pages (they work without JavaScript), sign-in and the action forms."""
from __future__ import annotations

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

import pinstripe_jobs.web.inputs as inputs
from pinstripe_jobs.web.auth import COOKIE
from pinstripe_jobs.web.charts import duration_chart
from pinstripe_jobs.web.dashboard import dashboard_of
from pinstripe_jobs.web.inputs import GridQuery, RunsQuery
from pinstripe_jobs.web.render import page, refuse, root_of, when
from pinstripe_jobs.web.trigger import ACTIONS_OFF, actor_of, cross_site, launch, refused


def jobs_page(request: Request) -> Response:
    return page(request, "jobs.html", **dashboard_of(request).jobs())


def job_page(request: Request) -> Response:
    dashboard = dashboard_of(request)
    name = inputs.job_name(request.path_params["name"])
    job = dashboard.job(name)
    query = GridQuery.parse(request.query_params)
    data = dashboard.job_data(name, query)
    invocations = list(reversed(data["invocations"]))
    chart = duration_chart({key: [inv[f"{key}_ms"] for inv in invocations] for key in ("p50", "p95", "max")},
                           [when(inv["started_at"]) for inv in invocations])
    return page(request, "job.html", job=job, chart=Markup(chart), **data)


def failures_page(request: Request) -> Response:
    job = inputs.text(request.query_params, "job")
    return page(request, "failures.html", groups=dashboard_of(request).failures(job))


def run_page(request: Request) -> Response:
    raw = request.path_params["run_id"]
    return page(request, "run.html", run=dashboard_of(request).run(inputs.run_id(raw), raw))


def running_page(request: Request) -> Response:
    return page(request, "running.html", runs=dashboard_of(request).running())


def ticks_page(request: Request) -> Response:
    ticks, cursor = dashboard_of(request).ticks(inputs.cursor(request.query_params, "cursor"))
    return page(request, "ticks.html", ticks=ticks, next_cursor=cursor)


def runs_page(request: Request) -> Response:
    data = dashboard_of(request).runs(RunsQuery.parse(request.query_params))
    return page(request, "runs.html", filters=dict(request.query_params), **data)


async def login(request: Request) -> Response:
    auth = dashboard_of(request).auth
    if not auth.enabled:
        return refuse(request, ACTIONS_OFF)
    if request.method == "GET":
        return page(request, "login.html")
    await inputs.bounded_body(request)
    form = await request.form()
    if not auth.same_origin(request):
        return refuse(request, "Cross-site request refused.")
    if not auth.check_token(str(form.get("token", ""))):
        return page(request, "login.html", status_code=403, error="Wrong token.")
    response = RedirectResponse(root_of(request) + "/", status_code=303)
    response.set_cookie(COOKIE, auth.session_value(), httponly=True, samesite="strict",
                        path=(root_of(request) or "/"))
    return response


async def start_run(request: Request) -> Response:
    """POST /jobs/{name}/run: the "Run now" and "Rerun failed tenants" forms."""
    refusal = refused(request, api=False)
    if refusal is not None:
        return refusal
    await inputs.bounded_body(request)
    form = await request.form()
    args = inputs.run_arguments([line for line in str(form.get("args", "")).splitlines() if line.strip()])
    only_failed, token = form.get("only_failed") == "1", str(form.get("csrf", ""))
    refusal = cross_site(request, token, api=False)
    if refusal is not None:
        return refusal
    name = inputs.job_name(request.path_params["name"])
    action = launch(dashboard_of(request), name, args, only_failed, actor_of(request))
    return RedirectResponse(f"{root_of(request)}/jobs/{name}?started={action.pid}&action={action.id}",
                            status_code=303)
