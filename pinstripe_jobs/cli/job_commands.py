"""The commands that look at the project and its history: ``list-background-jobs``,
``generate-background-job`` and ``history``."""
from __future__ import annotations

import sys

import click

from pinstripe_jobs.cli.group import epilog, main
from pinstripe_jobs.cli.project import Project, with_project
from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.model.status import Status

MAX_LIMIT = 10**6


@main.command("list-background-jobs", short_help="List jobs, schedules, next and last runs.", epilog=epilog(
    ["pinstripe list-background-jobs", "pinstripe list-background-jobs --json"],
    ["0   every job module loaded", "3   a job module is broken (shown as BROKEN, with file:line)"]))
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@with_project
def list_background_jobs_command(as_json: bool, project: Project) -> None:
    """List every job with its description, schedules and next run time."""
    from pinstripe_jobs.cli.listing import describe_jobs, last_invocations
    from pinstripe_jobs.observers.listings import print_job_list
    from pinstripe_jobs.store.state import open_store

    settings = project.settings()
    store = open_store(settings, read_only=True)  # never creates a state database
    jobs, broken = describe_jobs(settings, last_runs=last_invocations(store) if store else {},
                                 pauses=store.pauses() if store else [])
    print_job_list(jobs, broken, as_json)
    sys.exit(int(ExitCode.CONFIG) if broken else 0)


@main.command("generate-background-job", short_help="Create jobs/NAME.py from a template.", epilog=epilog(
    ["pinstripe generate-background-job send-digest"],
    ["0   created", "2   bad name, or the file exists (never overwritten)", "3   configuration error"]))
@click.argument("name")
@with_project
def generate_background_job_command(name: str, project: Project) -> None:
    """Write jobs/NAME.py from a short template (never overwrites)."""
    from pinstripe_jobs.cli.generate import generate_job

    path = generate_job(project.settings(), name)
    click.echo(f"Created {path}")


@main.command("history", short_help="Show recorded runs, newest first.", epilog=epilog(
    ["pinstripe history --job send-newsletter --status failed", "pinstripe history --tenant 42 --json"],
    ["0   shown (also when nothing is recorded)", "2   bad option", "3   the state store is not usable"]))
@click.option("--job", "job", default=None, metavar="NAME", help="Only this job.")
@click.option("--tenant", "tenant", default=None, metavar="ID", help="Only this tenant id.")
@click.option("--status", type=click.Choice([status.value for status in Status]), default=None,
              help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True, metavar="N",
              help="At most this many runs.")
@click.option("--invocation", default=None, metavar="ID", help="Only the runs of this invocation.")
@click.option("--since", default=None, metavar="DATETIME",
              help="Only runs started at or after DATETIME (ISO 8601; without an offset: the config's timezone).")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@with_project
def history_command(job: str | None, tenant: str | None, status: str | None, limit: int, as_json: bool,
                    project: Project, invocation: str | None = None, since: str | None = None) -> None:
    """Show recorded runs, newest first."""
    from pinstripe_jobs.observers.listings import print_history
    from pinstripe_jobs.registry.jobs import normalize_name
    from pinstripe_jobs.store.state import open_store

    settings = project.settings()
    after = None
    if since is not None:
        from pinstripe_jobs.cli.services import parse_at
        from pinstripe_jobs.store.common import stamp

        after = stamp(parse_at(since, settings, "--since"))
    store = open_store(settings, read_only=True)  # never creates a state database
    rows = store.runs(job=normalize_name(job) if job else None, tenant=tenant, status=status, limit=limit,
                      invocation=invocation, since=after) if store else []
    print_history(rows, as_json)
