"""``run-background-job``: parse, refuse conflicting options, plan, run, exit with the run's code."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from pinstripe_jobs.cli.group import COMMON_ENV, Seconds, epilog, main
from pinstripe_jobs.cli.project import Project, complete_job_names, with_project
from pinstripe_jobs.errors import UsageError
from pinstripe_jobs.model.ranges import MAX_CONCURRENCY, MAX_COUNT, MAX_PRIORITY

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings

DAY = 86400
YEAR = 365 * DAY
MAX_SHARDS = 10000  # as kubernetes-manifest --shards
MAX_SPREAD = 7 * DAY

RUN_CODES = ["0   every run succeeded (or was skipped as not this shard)", "1   a run failed",
             "2   usage error (unknown job, bad option or argument)",
             "3   configuration error (config, job module, tenant source or state store)",
             "4   skipped: the job was already running for a tenant",
             "4   --unique: a live invocation of the job with the same arguments exists (nothing was run)",
             "4   the job is paused (`pinstripe pause`) and --force was not given: nothing was run",
             "5   cancelled (`pinstripe cancel`, or the dashboard)", "124 a run timed out (and none failed)",
             "130 interrupted by SIGINT", "143 stopped by SIGTERM"]
EXIT_CODES = "Exit codes: " + "; ".join(" ".join(code.split(None, 1)) for code in RUN_CODES) + "."


def parse_spread(value: str | None) -> float | None:
    if value is None:
        return None
    from pinstripe_jobs.scheduling.cron import parse_duration

    seconds = parse_duration(value)
    if seconds is None:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 10m, 90s, 1h).")
    if not 0 <= seconds <= MAX_SPREAD:
        raise click.BadParameter(f"{value!r} is longer than 7 days ({MAX_SPREAD} seconds), the longest spread.")
    return seconds


MAX_KEY = 200


def parse_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_KEY or not value.isprintable() or value.strip() != value:
        raise click.BadParameter(f"{value[:60]!r} is not a key: 1 to {MAX_KEY} printable characters, no leading or "
                                 "trailing space (e.g. the CI pipeline's run id).")
    return value


def parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or int(n) < 1 or int(k) >= int(n):
        raise click.BadParameter(f"{value!r} is not K/N with 0 <= K < N (e.g. 0/4).")
    if int(n) > MAX_SHARDS:
        raise click.BadParameter(f"{value!r} has more than {MAX_SHARDS} shards.")
    return int(k), int(n)


def refuse_conflicts(flags: dict[str, Any]) -> None:
    """Options that cannot both apply are a usage error, never one of them silently ignored."""
    if flags["fail_fast"] and flags["max_failures"] is not None:
        raise UsageError("--fail-fast and --max-failures both say when to stop; give one.",
                         "--fail-fast is --max-failures 1.")
    if flags["tenant_ids"] and flags["shard"] is not None:
        raise UsageError("--tenant and --shard both choose the tenants; give one.",
                         "--tenant runs exactly the tenants named; --shard K/N runs one shard of all of them.")
    keys = [pair.partition("=")[0] for pair in flags["params"]]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise UsageError(f"--param {repeated[0]} is given more than once.", "Give each KEY once.")


def refuse_deadline_locally(settings: Settings, deadline: float | None, priority: int | None = None) -> None:
    if deadline is not None and settings.executor != "celery":
        raise UsageError("--deadline only applies to the celery executor; this run's is "
                         f"{settings.executor!r} ({settings.source_of('executor')}).",
                         "Add --executor celery, or use --timeout for a per-tenant time limit.")
    if priority is not None and settings.executor != "celery":
        raise UsageError("--priority only applies to the celery executor (its share of the fleet); this run's is "
                         f"{settings.executor!r} ({settings.source_of('executor')}).",
                         "Add --executor celery, or drop --priority: a local run has this machine to itself.")


EXAMPLES: Sequence[str] = (
    "pinstripe run-background-job --name deliver-notifications",
    "pinstripe run-background-job --name send-email --arg user@example.com --arg 'Welcome!'",
    "pinstripe run-background-job --name reindex --concurrency 8 --shard 0/4 --json",
    "pinstripe run-background-job --name send-newsletter --only-failed",
    "pinstripe run-background-job --name reindex --key \"$CI_PIPELINE_ID\" --unique")


@main.command("run-background-job", short_help="Run a job now, once per matching tenant.", epilog=epilog(
    EXAMPLES, RUN_CODES,
    COMMON_ENV + " Under GitHub Actions (GITHUB_ACTIONS=true): annotations and GITHUB_STEP_SUMMARY."))
@click.option("--name", required=True, metavar="NAME", shell_complete=complete_job_names, help="The job to run.")
@click.option("--arg", "args", multiple=True, metavar="VALUE", help="A positional argument for run (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A keyword argument (repeatable).")
@click.option("--tenant", "tenant_ids", multiple=True, metavar="ID", help="Run only for this tenant (repeatable).")
@click.option("--exclude-tenant", "exclude_ids", multiple=True, metavar="ID", help="Leave out this tenant.")
@click.option("--fail-fast", is_flag=True, help="Stop starting tenants after the first failure.")
@click.option("--max-failures", type=click.IntRange(1, MAX_COUNT), default=None, metavar="N",
              help="Stop starting tenants after N failures (the rest are skipped).")
@click.option("--max-failure-rate", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="RATIO",
              help="The failure-rate brake: once at least --min-runs runs ended and more than RATIO (0 < RATIO <= 1) "
                   "of them failed, start no more tenants (the rest are skipped; exit 1).")
@click.option("--min-runs", type=click.IntRange(1, MAX_COUNT), default=20, show_default=True, metavar="N",
              help="Runs that must end before --max-failure-rate (or the job's max_failure_rate) applies.")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=None, metavar="N",
              help="Tenants run in parallel.")
@click.option("--shard", callback=parse_shard, metavar="K/N",
              help=f"Run only shard K (0-based) of N (N <= {MAX_SHARDS}).")
@click.option("--timeout", type=Seconds(0, YEAR, min_open=True), default=None, metavar="SECONDS",
              help="Per-tenant time limit (overrides the job's `timeout`).")
@click.option("--retries", type=click.IntRange(0, 100), default=None, metavar="N",
              help="Retry a failed run N times.")
@click.option("--isolation", type=click.Choice(["inline", "process"]), default=None, metavar="inline|process",
              help="Run each tenant in its own child process (`process`).")
@click.option("--grace", type=Seconds(0, DAY), default=30, show_default=True, metavar="SECONDS",
              help="After SIGINT/SIGTERM, how long running tenants get to finish.")
@click.option("--wait", is_flag=True, help="Wait for a running instance to finish instead of skipping (with "
                                          "--unique: for the live invocation to end).")
@click.option("--key", default=None, metavar="KEY", envvar="PINSTRIPE_INVOCATION_KEY",
              callback=lambda ctx, param, value: parse_key(value),
              help="Idempotency key (env PINSTRIPE_INVOCATION_KEY, 1-200 printable characters): a key naming an "
                   "unfinished invocation resumes it; one naming a finished invocation runs nothing and exits "
                   "with its recorded code.")
@click.option("--unique", is_flag=True, help="Run nothing (exit 4) while a live invocation of this job with the "
                                             "same arguments exists (the job's `unique = True` does the same).")
@click.option("--spread", callback=lambda ctx, param, value: parse_spread(value), metavar="DURATION", default=None,
              help="Start each tenant at a stable offset within DURATION (10m, 90s, 1h; at most 7 days) instead of "
                   "all at once.")
@click.option("--only-failed", is_flag=True,
              help="Only the tenants whose last run of this job did not succeed (failed, timed out, interrupted, "
                   "skipped or abandoned).")
@click.option("--dry-run", is_flag=True, help="Print the tenants that would run; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout; all else to stderr.")
@click.option("--junit-xml", metavar="PATH", default=None, help="Also write a JUnit XML report (one case per run).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              metavar="text|json", help="Format of the job's log lines (on stderr).")
@click.option("--executor", type=click.Choice(["local", "celery"]), default=None, metavar="local|celery",
              help="Where tenants run: this machine (default) or the Celery fleet of [celery] "
                   "(env PINSTRIPE_EXECUTOR).")
@click.option("--deadline", type=Seconds(0, YEAR, min_open=True), default=None, metavar="SECONDS",
              help="On the fleet: tenants with no result after SECONDS are reported interrupted (default: wait).")
@click.option("--priority", type=click.IntRange(0, MAX_PRIORITY), default=None, metavar="0-9",
              help="On the fleet: this run's share of the workers beside other runs, 1 + P times the share of a "
                   "priority 0 run (default: the job's `priority`, else 0).")
@click.option("--force", is_flag=True, help="Run even though the job is paused (`pinstripe pause`).")
@click.option("--trigger", type=click.Choice(["manual", "dashboard"]), default="manual", hidden=True,
              help="What started the run, as recorded in history (the dashboard's actions pass `dashboard`).")
@with_project
def run_background_job_command(name: str, as_json: bool, dry_run: bool, junit_xml: str | None, log_format: str,
                               project: Project, **flags: Any) -> None:
    """Run a background job now, bypassing its schedule (once per matching tenant)."""
    from pinstripe_jobs.cli.services import Output, run_job
    from pinstripe_jobs.cli.steer_commands import check_paused, record_run
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals
    from pinstripe_jobs.model.plan import RunOptions
    from pinstripe_jobs.registry.arguments import parse_params

    force = flags.pop("force")
    output = Output(as_json, junit_xml, log_format)  # paths resolved now: a job's chdir cannot move them
    stop = StopFlag(grace=flags["grace"])
    with stop_on_signals(stop):  # before any config, tenant or store access: a signal always wins
        with stop.interruptible():
            refuse_conflicts(flags)
            flags["params"] = parse_params(flags["params"])
            settings = project.settings()
            executor = flags.pop("executor")
            if executor:
                settings.executor = executor
                settings.sources["executor"] = "--executor"
            refuse_deadline_locally(settings, flags["deadline"], flags["priority"])
            runner = Runner(settings, stop=stop)
            plan = runner.plan(name, RunOptions(**flags))
            if dry_run:
                from pinstripe_jobs.observers.listings import print_dry_run

                print_dry_run(plan.spec.name, plan.tenants(), as_json)
                return
            check_paused(runner.state, plan.spec.name, force)  # exit 4, nothing run
            record_run(runner.state, plan, {**flags, "force": force})
        code = run_job(runner, plan, output)
    sys.exit(int(code))
