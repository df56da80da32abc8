"""Steering what runs: ``cancel`` an invocation wherever it runs, ``pause`` / ``unpause`` a job (or one tenant
of it), and the ``audit`` trail of manual actions. Also the two checks ``run-background-job`` makes before it
runs: a paused job is refused (exit 4) unless ``--force``, and the run is recorded in the audit trail."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pinstripe_jobs.cli.group import epilog, main
from pinstripe_jobs.cli.project import Project, complete_job_names, with_project
from pinstripe_jobs.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.store.state import StateStore

MAX_REASON = 1000
MAX_LIMIT = 10**6
ACTOR_ENV = "PINSTRIPE_ACTOR"  # who a dashboard-launched command acts for ("dashboard:<identity>")


def actor() -> tuple[str, str]:
    """(who, source) of a manual action: the dashboard's identity when it launched this command, else the OS
    user and host from the command line."""
    import os

    from pinstripe_jobs.store.audit import whoami

    given = os.environ.get(ACTOR_ENV, "").strip()
    if given:
        return given[:200], "api" if given.startswith("api") else "dashboard"
    return whoami(), "cli"


def _reason(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_REASON:
        raise click.BadParameter(f"is {len(value)} characters; at most {MAX_REASON}.")
    return value or None


def _job(settings: Settings, name: str) -> str:
    """The job's name as registered (unknown: exit 2, with the names that exist)."""
    from pinstripe_jobs.registry.jobs import JobRegistry

    return JobRegistry(settings).load(name).name


def _store(settings: Settings) -> StateStore:
    from pinstripe_jobs.store.state import open_store

    store = open_store(settings)
    if store is None:  # only a read-only open finds none
        raise AssertionError("open_store returned no store for a read-write open")
    return store


def _print(as_json: bool, data: dict[str, Any], text: str) -> None:
    import json

    click.echo(json.dumps(data, default=str) if as_json else text)


# -- cancel ---------------------------------------------------------------------------------------
@main.command("cancel", short_help="Stop an invocation wherever it runs.", epilog=epilog(
    ["pinstripe cancel 3f2a9c1e0b7d --reason 'wrong arguments'"],
    ["0   the cancel was requested (the invocation stops within a few seconds and exits 5)",
     "2   no invocation has this id", "3   the state store is not usable",
     "4   the invocation had already ended: nothing to cancel"]))
@click.argument("invocation", metavar="ID")
@click.option("--reason", default=None, callback=lambda ctx, param, value: _reason(value), metavar="TEXT",
              help=f"Why (recorded with each tenant not run; at most {MAX_REASON} characters).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@with_project
def cancel_command(invocation: str, reason: str | None, as_json: bool, project: Project) -> None:
    """Cancel a running invocation, on any host, local or on the fleet: no new tenant starts, running
    tenants get the grace period, the rest are recorded `cancelled` with the reason, and the process that
    started it exits 5."""
    store = _store(project.settings())
    try:
        record = store.get_invocation(invocation)
        if record is None:
            raise UsageError(f"No invocation has the id {invocation!r}.",
                             "`pinstripe invocations` lists them; the id is also in `run-background-job --json` "
                             "and in the dashboard.")
        job, status = record["job"], record["status"]
        if record["ended_at"] is not None:
            _print(as_json, {"invocation": invocation, "job": job, "cancelled": False, "status": status},
                   f"Invocation {invocation} of {job} already ended ({status}); nothing to cancel.")
            sys.exit(int(ExitCode.SKIPPED))
        who, source = actor()
        first = store.request_cancel(invocation, who=who, reason=reason)
        store.audit("cancel", who=who, source=source, job=job, details={"invocation": invocation, "reason": reason})
    finally:
        store.close()
    crashed = status == "crashed"
    _print(as_json, {"invocation": invocation, "job": job, "cancelled": True, "first_request": first, "who": who,
                     "reason": reason, "status": status},
           f"Cancel requested for invocation {invocation} of {job}" + ("" if first else " (asked before)") +
           (": its process is gone (crashed), so nothing of it starts again; fleet workers still holding its "
            "batches stop before their next tenant." if crashed else
            ": it starts no more tenants within about a second; running tenants get its grace period."))


# -- pause / unpause ------------------------------------------------------------------------------
@main.command("pause", short_help="Stop a job (or one tenant of it) from being fired.", epilog=epilog(
    ["pinstripe pause send-newsletter --reason 'incident 42'", "pinstripe pause sync --tenant 7"],
    ["0   paused (or already paused: the first pause is kept)", "2   unknown job or bad option",
     "3   configuration error or the state store is not usable"]))
@click.argument("job", shell_complete=complete_job_names)
@click.option("--tenant", default=None, metavar="ID", help="Pause only this tenant of the job.")
@click.option("--reason", default=None, callback=lambda ctx, param, value: _reason(value), metavar="TEXT",
              help=f"Why (shown by list-background-jobs and the dashboard; at most {MAX_REASON} characters).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@with_project
def pause_command(job: str, tenant: str | None, reason: str | None, as_json: bool, project: Project) -> None:
    """Pause a job: the bot and run-due-jobs record its ticks as `paused` instead of firing them, and a manual
    run exits 4 unless --force. With --tenant, only that tenant is skipped (recorded, reason "paused")."""
    settings = project.settings()
    name = _job(settings, job)
    store = _store(settings)
    who, source = actor()
    try:
        new = store.pause(name, tenant, who=who, reason=reason)
        store.audit("pause", who=who, source=source, job=name, details={"tenant": tenant, "reason": reason})
        held = store.paused(name) if tenant is None else store.paused_tenants(name).get(tenant)
    finally:
        store.close()
    what = name if tenant is None else f"{name} for tenant {tenant}"
    by = f" (paused by {held['who']} at {held['paused_at']}" + (f": {held['reason']}" if held and held["reason"]
                                                               else "") + ")" if held else ""
    _print(as_json, {"job": name, "tenant": tenant, "paused": True, "new": new, "pause": held},
           (f"Paused {what}." if new else f"{what} was already paused{by}; left as it was."))


@main.command("unpause", short_help="Let a paused job (or tenant) be fired again.", epilog=epilog(
    ["pinstripe unpause send-newsletter", "pinstripe unpause sync --tenant 7"],
    ["0   unpaused (or it was not paused)", "2   unknown job or bad option",
     "3   configuration error or the state store is not usable"]))
@click.argument("job", shell_complete=complete_job_names)
@click.option("--tenant", default=None, metavar="ID", help="Unpause only this tenant of the job.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@with_project
def unpause_command(job: str, tenant: str | None, as_json: bool, project: Project) -> None:
    """Lift a pause: the job's next tick fires as usual."""
    settings = project.settings()
    name = _job(settings, job)
    store = _store(settings)
    who, source = actor()
    try:
        lifted = store.unpause(name, tenant)
        store.audit("unpause", who=who, source=source, job=name, details={"tenant": tenant, "was_paused": lifted})
    finally:
        store.close()
    what = name if tenant is None else f"{name} for tenant {tenant}"
    _print(as_json, {"job": name, "tenant": tenant, "unpaused": lifted},
           f"Unpaused {what}." if lifted else f"{what} was not paused.")


# -- audit ----------------------------------------------------------------------------------------
@main.command("audit", short_help="Show who ran, resumed, cancelled or paused what.", epilog=epilog(
    ["pinstripe audit", "pinstripe audit --job send-newsletter --limit 10 --json"],
    ["0   shown (also when nothing is recorded)", "2   bad option", "3   the state store is not usable"]))
@click.option("--job", default=None, metavar="NAME", help="Only actions on this job.")
@click.option("--action", default=None, type=click.Choice(["run", "resume", "cancel", "pause", "unpause", "rerun"]),
              help="Only this kind of action.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, metavar="N",
              help="At most this many actions.")
@click.option("--json", "as_json", is_flag=True, help="Print the actions as JSON.")
@with_project
def audit_command(job: str | None, action: str | None, limit: int, as_json: bool, project: Project) -> None:
    """Show the audit trail, newest first: every manual action with who, when, from where and its arguments."""
    import json

    from pinstripe_jobs.registry.jobs import normalize_name
    from pinstripe_jobs.store.state import open_store
    from pinstripe_jobs.textsafe import literal

    store = open_store(project.settings(), read_only=True)  # never creates a state database
    try:
        rows = store.audit_trail(job=normalize_name(job) if job else None, action=action, limit=limit) \
            if store else []
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(json.dumps({"actions": rows}, default=str))
        return
    if not rows:
        click.echo("No manual actions recorded.")
        return
    for row in rows:
        details = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in row["details"].items() if v is not None)
        click.echo(literal(f"{row['at'][:19]}  {row['action']:<8} {row['job'] or '-':<24} {row['who']} "
                                 f"({row['source']})  {details}".rstrip()))


# -- what run-background-job checks and records -----------------------------------------------------
def check_paused(store: StateStore, job: str, force: bool) -> None:
    """A manual run of a paused job exits 4 (nothing run) unless ``--force``."""
    pause = store.paused(job)
    if pause is None or force:
        return
    why = f": {pause['reason']}" if pause.get("reason") else ""
    click.echo(f"{job} is paused (by {pause['who']} at {pause['paused_at']}{why}); nothing was run.", err=True)
    click.echo(f"Hint: `pinstripe unpause {job}` lifts the pause; --force runs it anyway.", err=True)
    sys.exit(int(ExitCode.SKIPPED))


def record_run(store: StateStore, plan: Plan, flags: dict[str, Any], action: str | None = None) -> None:
    """The audit trail's entry for a manual run (``rerun`` with --only-failed): its invocation, arguments and
    options."""
    who, source = actor()
    action = action or ("rerun" if flags.get("only_failed") else "run")
    options = {k: v for k, v in flags.items() if v not in (None, False, (), [], {}) and k != "params"}
    # a key names its invocation once the run opens it; a resume, the one it resumes
    invocation = plan.options.resume or (None if flags.get("key") else plan.invocation)
    store.audit(action, who=who, source=source, job=plan.spec.name,
                details={"invocation": invocation, "args": list(plan.options.args), "params": plan.options.params,
                         **options})


def record_resume(store: StateStore, plan: Plan, include_abandoned: bool) -> None:
    """``pinstripe resume ID``: audited, and a cancel request of that invocation withdrawn (it was cancelled,
    and is now asked to go on)."""
    store.withdraw_cancel(plan.options.resume or plan.invocation)
    record_run(store, plan, {"include_abandoned": include_abandoned}, action="resume")
