"""The commands that look at invocations and run the rest of one: ``invocations``, ``invocation ID`` and
``resume ID``."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pinstripe_jobs.cli.group import epilog, main
from pinstripe_jobs.cli.project import Project, with_project
from pinstripe_jobs.errors import UsageError
from pinstripe_jobs.execution.invocations import SHOWN, coverage
from pinstripe_jobs.model.status import InvocationStatus

if TYPE_CHECKING:
    pass

MAX_LIMIT = 10**6
COLUMNS = ("id", "job", "status", "trigger", "started_at", "started_by", "progress", "exit")


@main.command("invocations", short_help="List invocations, newest first.", epilog=epilog(
    ["pinstripe invocations", "pinstripe invocations --job deliver-notifications --status crashed --json"],
    ["0   shown (also when none is recorded)", "2   bad option", "3   the state store is not usable"]))
@click.option("--job", default=None, metavar="NAME", help="Only this job.")
@click.option("--status", type=click.Choice([s.value for s in InvocationStatus]), default=None,
              help="Only invocations with this status.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, metavar="N",
              help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@with_project
def invocations_command(job: str | None, status: str | None, limit: int, as_json: bool, project: Project) -> None:
    """List invocations (commands, ticks), newest first, with status and progress."""
    from pinstripe_jobs.observers.listings import print_json
    from pinstripe_jobs.registry.jobs import normalize_name
    from pinstripe_jobs.store.state import open_store

    store = open_store(project.settings(), read_only=True)
    try:
        rows = store.list_invocations(job=normalize_name(job) if job else None, status=status,
                                      limit=limit) if store else []
    finally:
        if store is not None:
            store.close()
    if as_json:
        print_json({"invocations": rows})
        return
    if not rows:
        click.echo("No invocations recorded.")
        return
    lines = [[_cell(row, c) for c in COLUMNS] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(COLUMNS)]
    for line in [list(COLUMNS), *lines]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _cell(row: dict[str, Any], column: str) -> str:
    from pinstripe_jobs.textsafe import literal

    if column == "progress":
        return f"{row['done']}/{row['total']}" if row.get("total") is not None else f"{row['done']}/?"
    if column == "exit":
        return "-" if row.get("exit_code") is None else str(row["exit_code"])
    value = row.get(column)
    return "-" if value is None else literal(str(value))


@main.command("invocation", short_help="Show one invocation: counts, progress, tenants not yet run.", epilog=epilog(
    ["pinstripe invocation 0006a1b2c3d4e5-0a1b2c3d4e", "pinstripe invocation ID --json"],
    ["0   shown", "2   no such invocation", "3   the state store is not usable"]))
@click.argument("invocation_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@with_project
def invocation_command(invocation_id: str, as_json: bool, project: Project) -> None:
    """Show one invocation: what it was asked, its status, counts, progress and ETA, the tenants it has not run
    yet, the ones whose outcome is unknown (abandoned), and the command that resumes it."""
    from pinstripe_jobs.observers.listings import print_json
    from pinstripe_jobs.store.state import open_store

    settings = project.settings()
    store = open_store(settings, read_only=True)
    try:
        record = store.get_invocation(invocation_id) if store else None
        if record is None or store is None:
            raise UsageError(f"No invocation {invocation_id!r} is recorded.",
                             "List them with `pinstripe invocations`.")
        record.update(coverage(settings, store, record))
    finally:
        if store is not None:
            store.close()
    if as_json:
        print_json(record)
        return
    for line in describe(record):
        click.echo(line)


def describe(record: dict[str, Any]) -> list[str]:
    from pinstripe_jobs.textsafe import literal

    counts = ", ".join(f"{n} {s}" for s, n in sorted(record["counts"].items())) or "no runs"
    total = record.get("total")
    lines = [f"invocation {record['id']}: {record['job']} - {record['status']}",
             f"  started {record['started_at']} by {record.get('started_by') or '?'} ({record['trigger']}), "
             f"executor {record.get('executor') or '?'}, host {record.get('host')} pid {record.get('pid')}",
             f"  ended {record['ended_at'] or '-'}, exit code "
             f"{'-' if record['exit_code'] is None else record['exit_code']}, resumed {record.get('resumed') or 0}x",
             f"  progress {record['done']} of {total if total is not None else '?'} ({counts})"
             + (f", ETA {record['eta_s']}s" if record.get("eta_s") is not None else ""),
             f"  selection {literal(str(record.get('selection')))}"]
    not_run = record["not_run"]
    if not_run.get("error"):
        lines.append(f"  tenants not yet run: not known ({literal(not_run['error'])})")
    else:
        more = f" ... and {not_run['count'] - len(not_run['first'])} more" if not_run["count"] > SHOWN else ""
        lines.append(f"  tenants not yet run: {not_run['count']}"
                     + (f" ({', '.join(literal(t) for t in not_run['first'])}{more})" if not_run["first"] else ""))
    abandoned = record["abandoned"]
    if abandoned["count"]:
        lines.append(f"  started, outcome unknown (abandoned/interrupted): {abandoned['count']} "
                     f"({', '.join(literal(t) for t in abandoned['first'])}); a resume leaves them out unless "
                     "--include-abandoned")
    if record["status"] != InvocationStatus.SUCCEEDED and (not_run.get("count") or abandoned["count"]):
        lines.append(f"  resume with: {record['resume_command']}")
    return lines


@main.command("resume", short_help="Run the tenants an invocation has not run yet, as part of it.", epilog=epilog(
    ["pinstripe resume 0006a1b2c3d4e5-0a1b2c3d4e", "pinstripe resume ID --include-abandoned --json"],
    ["0   every tenant of the invocation ran and succeeded", "1   a tenant failed (in the whole invocation)",
     "2   no such invocation", "3   configuration error", "4   the invocation is still running (live holder)",
     "130/143 stopped by SIGINT/SIGTERM; a finished invocation: its recorded exit code, nothing run"]))
@click.argument("invocation_id", metavar="ID")
@click.option("--include-abandoned", is_flag=True,
              help="Also rerun the tenants that started but whose outcome is unknown (abandoned, interrupted).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout; all else to stderr.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              metavar="text|json", help="Format of the job's log lines (on stderr).")
@with_project
def resume_command(invocation_id: str, include_abandoned: bool, as_json: bool, log_format: str,
                   project: Project) -> None:
    """Run exactly the tenants of invocation ID that have no run in it (never one that started, unless
    --include-abandoned), recorded as part of the same invocation."""
    from pinstripe_jobs.cli.services import Output, run_job
    from pinstripe_jobs.execution.invocations import options_for_resume
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals
    from pinstripe_jobs.store.state import open_store

    output = Output(as_json, None, log_format)
    stop = StopFlag()
    with stop_on_signals(stop):
        with stop.interruptible():
            settings = project.settings()
            store = open_store(settings, read_only=True)
            try:
                record = store.get_invocation(invocation_id) if store else None
            finally:
                if store is not None:
                    store.close()
            if record is None:
                raise UsageError(f"No invocation {invocation_id!r} is recorded.",
                                 "List them with `pinstripe invocations --status crashed`.")
            if record.get("executor") in ("local", "celery"):
                settings.executor = record["executor"]
                settings.sources["executor"] = f"invocation {invocation_id}"
            options = options_for_resume(record, include_abandoned)
            stop.grace = options.grace
            runner = Runner(settings, stop=stop)
            plan = runner.plan(record["job"], options)
            from pinstripe_jobs.cli.steer_commands import record_resume

            record_resume(runner.state, plan, include_abandoned)  # audited; an earlier cancel request withdrawn
        code = run_job(runner, plan, output)
    sys.exit(int(code))
