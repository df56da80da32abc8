"""The dashboard's steering: an invocation's page (live progress, ETA, what is not run yet, who started it)
with cancel and resume buttons, and the audit trail. Like runs, actions go through the CLI a shell would use
(``pinstripe cancel``, ``pinstripe resume``), launched with the dashboard identity as the actor, so that they
are checked and audited the same way; the dashboard itself writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

import pinstripe_jobs.web.inputs as inputs
from pinstripe_jobs.web.actions import ACTOR_ENV, Action
from pinstripe_jobs.web.dashboard import Dashboard, dashboard_of
from pinstripe_jobs.web.inputs import BadRequest, NotFound
from pinstripe_jobs.web.render import SECURITY_HEADERS, page, root_of
from pinstripe_jobs.web.trigger import actor_of, cross_site, refused

MAX_ID = 200
MAX_REASON = 1000
CANCEL_TIMEOUT_S = 60


def invocation_id(request: Request) -> str:
    raw = str(request.path_params["invocation"])
    if not raw or len(raw) > MAX_ID or not raw.isprintable():
        raise BadRequest(f"an invocation id is 1 to {MAX_ID} printable characters")
    return raw


def invocation_data(dashboard: Dashboard, invocation: str) -> dict[str, Any]:
    """The invocation as shown, its cancel request, and how many of its tenants have not run yet."""
    store = dashboard.store()
    found = store.get_invocation(invocation) if store is not None else None
    if store is None or found is None:
        raise NotFound(f"No invocation with id {invocation}.")
    found["cancel"] = store.cancel_request(invocation)
    total, done = found.get("total"), found.get("done") or 0
    found["not_run"] = None if total is None else max(total - done, 0)
    found["progress_pct"] = None if not total else min(100, round(100 * done / total))
    found["live"] = found["status"] == "running"
    found["resumable"] = found["status"] in ("crashed", "interrupted", "cancelled")
    found["resume_command"] = f"pinstripe resume {invocation}"
    if not found["live"]:  # which tenants (the first few): computed again from its selection, once it stopped
        from pinstripe_jobs.execution.invocations import coverage

        found["coverage"] = coverage(dashboard.settings, store, found)
    return found


def invocation_page(request: Request) -> Response:
    data = invocation_data(dashboard_of(request), invocation_id(request))
    return page(request, "invocation.html", inv=data)


def api_invocation(request: Request) -> Response:
    return JSONResponse(invocation_data(dashboard_of(request), invocation_id(request)), headers=SECURITY_HEADERS)


def audit_page(request: Request) -> Response:
    job = inputs.text(request.query_params, "job")
    return page(request, "audit.html", actions=dashboard_of(request).audit(job), job=job)


def api_audit(request: Request) -> Response:
    job = inputs.text(request.query_params, "job")
    return JSONResponse({"actions": dashboard_of(request).audit(job)}, headers=SECURITY_HEADERS)


async def _checked_form(request: Request) -> tuple[dict[str, str], Response | None]:
    refusal = refused(request, api=False)
    if refusal is not None:
        return {}, refusal
    await inputs.bounded_body(request)
    form = {key: str(value) for key, value in (await request.form()).items()}
    return form, cross_site(request, form.get("csrf", ""), api=False)


async def cancel_invocation(request: Request) -> Response:
    """POST /invocations/{id}/cancel (form: csrf, reason): ``pinstripe cancel ID --reason R`` as the dashboard."""
    form, refusal = await _checked_form(request)
    if refusal is not None:
        return refusal
    invocation = invocation_id(request)
    code = await _cancel(request, invocation, form.get("reason", ""), actor_of(request))
    return RedirectResponse(f"{root_of(request)}/invocations/{invocation}?cancelled={code}", status_code=303)


async def resume_invocation(request: Request) -> Response:
    """POST /invocations/{id}/resume: ``pinstripe resume ID`` in the background, as runs are launched."""
    _, refusal = await _checked_form(request)
    if refusal is not None:
        return refusal
    invocation = invocation_id(request)
    action = _resume(request, invocation, actor_of(request))
    return RedirectResponse(f"{root_of(request)}/invocations/{invocation}?resumed={action.pid}&action={action.id}",
                            status_code=303)


async def api_cancel(request: Request) -> Response:
    """POST /api/invocations/{id}/cancel with a Bearer token, body ``{"reason": "..."}``."""
    from pinstripe_jobs.web.api import json_body

    refusal = refused(request, api=True) or cross_site(request, None, api=True)
    if refusal is not None:
        return refusal
    body = await json_body(request)
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is not None and not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    invocation = invocation_id(request)
    code = await _cancel(request, invocation, reason or "", f"api ({actor_of(request)})")
    return JSONResponse({"invocation": invocation, "cancelled": code == 0, "already_ended": code == 4},
                        status_code=202 if code == 0 else 200, headers=SECURITY_HEADERS)


async def api_resume(request: Request) -> Response:
    """POST /api/invocations/{id}/resume with a Bearer token: 202 with the action's id and pid."""
    refusal = refused(request, api=True) or cross_site(request, None, api=True)
    if refusal is not None:
        return refusal
    invocation = invocation_id(request)
    action = _resume(request, invocation, f"api ({actor_of(request)})")
    return JSONResponse({"invocation": invocation, "resumed": True, "action": action.id, "pid": action.pid},
                        status_code=202, headers=SECURITY_HEADERS)


async def _cancel(request: Request, invocation: str, reason: str, actor: str) -> int:
    """``pinstripe cancel`` as ``actor``: its exit code (0 requested, 4 already ended); anything else is a 400."""
    dashboard = dashboard_of(request)
    invocation_data(dashboard, invocation)  # 404 for an unknown id
    reason = reason.strip()[:MAX_REASON]
    command = [*_cli(dashboard), "cancel", invocation, *(["--reason", reason] if reason else []),
               *dashboard.launcher.project_args]
    done = await run_in_threadpool(subprocess.run, command, cwd=dashboard.settings.root, capture_output=True,
                                   text=True, timeout=CANCEL_TIMEOUT_S, env=_env(actor), stdin=subprocess.DEVNULL)
    if done.returncode not in (0, 4):
        said = (done.stderr or done.stdout).strip()
        raise BadRequest(said.splitlines()[0] if said else f"pinstripe cancel exited {done.returncode}")
    return int(done.returncode)


def _resume(request: Request, invocation: str, actor: str) -> Action:
    dashboard = dashboard_of(request)
    data = invocation_data(dashboard, invocation)
    if not data["resumable"]:
        raise BadRequest(f"invocation {invocation} is {data['status']}: only a crashed, interrupted or cancelled "
                         "one is resumed")
    return dashboard.launcher.start_command(["resume", invocation], f"resume={invocation}", actor)


def _cli(dashboard: Dashboard) -> list[str]:
    return [sys.executable, "-m", "pinstripe_jobs"]


def _env(actor: str) -> dict[str, str]:
    return {**os.environ, ACTOR_ENV: actor, "PINSTRIPE_LOG_COLOR": "0"}
