"""The commands that fire jobs on their schedules: ``run-due-jobs`` (for cron) and ``start-bot``."""
from __future__ import annotations

import sys

import click

from pinstripe_jobs.cli.group import Seconds, epilog, main
from pinstripe_jobs.cli.project import Project, with_project

DAY = 86400


@main.command("run-due-jobs", short_help="Fire what is due this minute (for cron).", epilog=epilog(
    ["* * * * * cd /srv/app && pinstripe run-due-jobs   (a crontab line)",
     "pinstripe run-due-jobs --at 2026-11-29T09:00   (fire that minute's ticks by hand)",
     "pinstripe run-due-jobs --at 2026-11-29T09:00 --dry-run   (which jobs and tenants would fire)"],
    ["0   everything due fired and succeeded (or nothing was due)", "1   a fired run failed",
     "3   a job module is broken, or a due tick could not be claimed or fired (it is resumed next time)",
     "130/143 stopped by SIGINT/SIGTERM"]))
@click.option("--at", "at", default=None, metavar="DATETIME",
              help="Fire what is due in this minute (ISO 8601; no offset = the configured time zone). Default: now.")
@click.option("--grace", type=Seconds(0, DAY), default=30, show_default=True, metavar="SECONDS",
              help="After SIGTERM/SIGINT, how long running tenants get to finish.")
@click.option("--dry-run", is_flag=True, help="Show what is due and for which tenants; claim and run nothing.")
@with_project
def run_due_jobs_command(at: str | None, grace: float, dry_run: bool, project: Project) -> None:
    """Fire every job due this minute, once (for system cron or a Kubernetes CronJob)."""
    from pinstripe_jobs.cli.services import run_due_jobs
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals

    stop = StopFlag(grace=grace)
    with stop_on_signals(stop, escalate=False):
        with stop.interruptible():
            settings = project.settings()
        code = run_due_jobs(settings, at, stop, dry_run=dry_run)
    sys.exit(int(code))


@main.command("start-bot", short_help="Run jobs on their schedules until stopped.", epilog=epilog(
    ["pinstripe start-bot", "pinstripe start-bot --since 2026-11-29T08:00   (as if it last looked then)"],
    ["0   stopped by SIGTERM/SIGINT after the grace period", "2   bad option", "3   configuration error"]))
@click.option("--grace", type=Seconds(0, DAY), default=30, show_default=True, metavar="SECONDS",
              help="Seconds running jobs get to finish after SIGTERM/SIGINT.")
@click.option("--since", default=None, metavar="DATETIME",
              help="Start as if the bot last looked at DATETIME: ticks since then are due at once "
                   "(within misfire_grace, or all of them for catch_up jobs).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://0.0.0.0:PORT/metrics (needs the metrics extra).")
@with_project
def start_bot_command(grace: float, since: str | None, metrics_port: int | None, project: Project) -> None:
    """Run jobs on their schedules until stopped (SIGTERM/SIGINT)."""
    from pinstripe_jobs.cli.services import start_bot
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals

    stop = StopFlag(grace=grace)
    # A second signal during the shutdown stops the waiting (the handlers stay installed until the end).
    with stop_on_signals(stop, escalate=False):
        with stop.interruptible():
            settings = project.settings()
        if metrics_port is not None:
            from pinstripe_jobs.observers.telemetry import serve_metrics

            serve_metrics(metrics_port)
        code = start_bot(settings, grace, since, stop)
    sys.exit(int(code))
