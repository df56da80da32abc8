"""What "run now" and "rerun failed tenants" check before anything starts, for the form and the API alike:
actions on, signed in, same origin (or a Bearer token), a job that exists and loads, and arguments that fit
its ``run`` signature. A refusal is answered at once, never discovered later in the action log."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.web.actions import Action
from pinstripe_jobs.web.dashboard import Dashboard, dashboard_of
from pinstripe_jobs.web.inputs import BadRequest
from pinstripe_jobs.web.render import refuse

ACTIONS_OFF = "Actions are off: start the dashboard with --allow-actions and --token-env."


def refused(request: Request, api: bool) -> Response | None:
    """The refusal of an action request that is not allowed at all, or None."""
    auth = dashboard_of(request).auth
    if not auth.enabled:
        return refuse(request, ACTIONS_OFF, api=api)
    if not auth.signed_in(request):
        return refuse(request, "Sign in with the dashboard's token first.", status_code=401, api=api)
    return None


def cross_site(request: Request, form_token: str | None, api: bool) -> Response | None:
    if dashboard_of(request).auth.csrf_ok(request, form_token):
        return None
    return refuse(request, "Cross-site request refused (missing or wrong CSRF token, or another origin).", api=api)


def actor_of(request: Request) -> str:
    """Who a dashboard action is recorded as (the audit trail): the dashboard, and the address it came from."""
    client = request.client.host if request.client else "unknown"
    return f"dashboard ({client})"


def launch(dashboard: Dashboard, name: str, args: list[str], only_failed: bool, actor: str = "dashboard") -> Action:
    """Start ``name`` once its module loads and ``args`` fit its ``run``; a ``BadRequest`` otherwise."""
    from pinstripe_jobs.registry.arguments import bind_arguments
    from pinstripe_jobs.registry.jobs import JobRegistry

    dashboard.job(name)  # 404 for a job that neither exists nor has history
    try:
        spec = JobRegistry(dashboard.settings).load(name)
        bind_arguments(spec.run, spec.name, tuple(args), {})
    except PinstripeError as exc:
        raise BadRequest(exc.message) from None
    return dashboard.launcher.start(name, args, only_failed, actor)
