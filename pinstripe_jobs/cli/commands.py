"""The ``pinstripe`` command: thin Click commands that parse, call a service and map the outcome to an exit code."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from pinstripe_jobs import __version__
from pinstripe_jobs.errors import ExitCode, PinstripeError
from pinstripe_jobs.execution.signals import RunInterrupted


def project_options(func: Callable) -> Callable:
    """--config, --jobs-dir and --tenants on every command that reads the project."""
    func = click.option("--tenants", "tenants", metavar="SOURCE", default=None,
                        help="Tenant source, overriding the config (URL, .json/.jsonl/.csv, module:callable).")(func)
    func = click.option("--jobs-dir", metavar="DIR", default=None, help="Jobs folder, overriding the config.")(func)
    func = click.option("--config", "config", metavar="PATH", default=None,
                        help="Config file (pinstripe.toml or pyproject.toml); default: found from the cwd upward.")(func)
    return func


def handle_errors(func: Callable) -> Callable:
    """Turn our errors into their message, hint and exit code; never a raw traceback of the tool."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PinstripeError as exc:
            from pinstripe_jobs.execution import signals

            # stopped by a signal while failing (a store that would not answer): the stop is the outcome
            code = signals.exit_code_for(signals.received) if signals.received else int(exc.exit_code)
            if kwargs.get("as_json"):
                import json

                click.echo(json.dumps({"error": exc.message, "hint": exc.hint, "exit_code": code}))
            click.echo(exc.render(), err=True)
            sys.exit(code)
        except (KeyboardInterrupt, RunInterrupted) as exc:  # a signal before any tenant had started
            import signal

            code = ExitCode.TERMINATED if getattr(exc, "signum", None) == signal.SIGTERM else ExitCode.INTERRUPTED
            name = "SIGTERM" if code == ExitCode.TERMINATED else "SIGINT"
            if kwargs.get("as_json"):
                import json

                click.echo(json.dumps({"error": f"Interrupted by {name} before any run started.", "hint": None,
                                       "exit_code": int(code)}))
            click.echo(f"Interrupted by {name} before any run started; nothing was run.", err=True)
            sys.exit(int(code))

    return wrapper


def load(config: str | None, jobs_dir: str | None, tenants: str | None):
    from pinstripe_jobs.config import load_settings

    return load_settings(config, jobs_dir=jobs_dir, tenants=tenants)


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from pinstripe_jobs.registry.jobs import JobRegistry

        settings = load(ctx.params.get("config"), ctx.params.get("jobs_dir"), ctx.params.get("tenants"))
        return [name for name in JobRegistry(settings).names() if name.startswith(incomplete)]
    except Exception:
        return []


def parse_spread(value: str | None) -> float | None:
    if value is None:
        return None
    from pinstripe_jobs.scheduling.cron import parse_duration

    seconds = parse_duration(value)
    if seconds is None:
        raise click.BadParameter(f"{value!r} is not a duration (e.g. 10m, 90s, 1h).")
    return seconds


def parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    k, sep, n = value.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or int(n) < 1 or int(k) >= int(n):
        raise click.BadParameter(f"{value!r} is not K/N with 0 <= K < N (e.g. 0/4).")
    return int(k), int(n)


class Command(click.Command):
    """A command whose option errors still give one JSON document under ``--json`` (then the usual
    message on stderr and exit 2)."""

    def make_context(self, info_name, args, parent=None, **extra):
        wants_json = "--json" in args
        try:
            return super().make_context(info_name, list(args), parent=parent, **extra)
        except click.ClickException as exc:
            if wants_json:
                import json

                click.echo(json.dumps({"error": exc.format_message(), "hint": f"Run `pinstripe {info_name} --help`.",
                                       "exit_code": exc.exit_code}))
            raise


class Group(click.Group):
    """Commands listed with their whole one-line description, and "did you mean" for a mistyped one."""

    command_class = Command

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            commands = self.list_commands(ctx)
            close = difflib.get_close_matches(name, commands, n=2, cutoff=0.6)
            close += [c for c in commands if c.startswith(name) and c not in close]
            hint = f" Did you mean {' or '.join(repr(c) for c in close[:2])}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} Commands: {', '.join(commands)}.")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.get_command(ctx, name).short_help or "") for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows, col_max=24)


COMMON_ENV = ("PINSTRIPE_CONFIG (like --config), PINSTRIPE_JOBS_DIR (--jobs-dir), PINSTRIPE_TENANTS (--tenants), "
              "PINSTRIPE_STATE (the state store URL), PINSTRIPE_TIMEZONE (the schedules' time zone).")


def epilog(examples: list[str], codes: list[str], env: str = COMMON_ENV) -> str:
    """Examples, exit codes and environment variables, laid out as written (click's \\b paragraphs)."""
    return ("\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n\b\nExit codes:\n"
            + "\n".join(f"  {c}" for c in codes) + f"\n\nEnvironment: {env}")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog="Run `pinstripe COMMAND --help` for a command's options, examples and exit codes.")
@click.version_option(__version__, prog_name="pinstripe")
def main() -> None:
    """Run background jobs on demand and on schedule, once per tenant."""


RUN_CODES = ["0   every run succeeded (or was skipped as not this shard)", "1   a run failed",
             "2   usage error (unknown job, bad option or argument)",
             "3   configuration error (config, job module, tenant source or state store)",
             "4   skipped: the job was already running for a tenant", "124 a run timed out (and none failed)",
             "130 interrupted by SIGINT", "143 stopped by SIGTERM"]
EXIT_CODES = "Exit codes: " + "; ".join(" ".join(code.split(None, 1)) for code in RUN_CODES) + "."


@main.command("run-background-job", short_help="Run a job now, once per matching tenant.", epilog=epilog(
    ["pinstripe run-background-job --name deliver-notifications",
     "pinstripe run-background-job --name send-email --arg user@example.com --arg 'Welcome!'",
     "pinstripe run-background-job --name reindex --concurrency 8 --shard 0/4 --json",
     "pinstripe run-background-job --name send-newsletter --only-failed"],
    RUN_CODES, COMMON_ENV + " Under GitHub Actions (GITHUB_ACTIONS=true): annotations and GITHUB_STEP_SUMMARY."))
@click.option("--name", required=True, metavar="NAME", shell_complete=complete_job_names, help="The job to run.")
@click.option("--arg", "args", multiple=True, metavar="VALUE", help="A positional argument for run (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="A keyword argument (repeatable).")
@click.option("--tenant", "tenant_ids", multiple=True, metavar="ID", help="Run only for this tenant (repeatable).")
@click.option("--exclude-tenant", "exclude_ids", multiple=True, metavar="ID", help="Leave out this tenant.")
@click.option("--fail-fast", is_flag=True, help="Stop starting tenants after the first failure.")
@click.option("--max-failures", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop starting tenants after N failures (the rest are skipped).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, metavar="N", help="Tenants run in parallel.")
@click.option("--shard", callback=parse_shard, metavar="K/N", help="Run only shard K (0-based) of N.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Per-tenant time limit (overrides the job's `timeout`).")
@click.option("--retries", type=click.IntRange(min=0), default=None, metavar="N", help="Retry a failed run N times.")
@click.option("--isolation", type=click.Choice(["inline", "process"]), default=None, metavar="inline|process",
              help="Run each tenant in its own child process (`process`).")
@click.option("--grace", type=click.FloatRange(min=0), default=30, show_default=True, metavar="SECONDS",
              help="After SIGINT/SIGTERM, how long running tenants get to finish.")
@click.option("--wait", is_flag=True, help="Wait for a running instance to finish instead of skipping.")
@click.option("--spread", callback=lambda ctx, param, value: parse_spread(value), metavar="DURATION", default=None,
              help="Start each tenant at a stable offset within DURATION (10m, 90s, 1h) instead of all at once.")
@click.option("--only-failed", is_flag=True,
              help="Only the tenants whose last run of this job did not succeed (failed, timed out, interrupted, "
                   "skipped or abandoned).")
@click.option("--dry-run", is_flag=True, help="Print the tenants that would run; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout; all else to stderr.")
@click.option("--junit-xml", metavar="PATH", default=None, help="Also write a JUnit XML report (one case per run).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              metavar="text|json", help="Format of the job's log lines (on stderr).")
@click.option("--executor", type=click.Choice(["local", "celery"]), default=None, metavar="local|celery",
              help="Where tenants run: this machine (default) or the Celery fleet of [celery] (env PINSTRIPE_EXECUTOR).")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="On the fleet: tenants with no result after SECONDS are reported interrupted (default: wait).")
@click.option("--trigger", type=click.Choice(["manual", "dashboard"]), default="manual", hidden=True,
              help="What started the run, as recorded in history (the dashboard's actions pass `dashboard`).")
@project_options
@handle_errors
def run_background_job_command(name: str, as_json: bool, dry_run: bool, junit_xml: str | None, log_format: str,
                               config: str | None, jobs_dir: str | None, tenants: str | None, **flags: Any) -> None:
    """Run a background job now, bypassing its schedule (once per matching tenant)."""
    from pinstripe_jobs.cli.services import Output, run_job
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals
    from pinstripe_jobs.model.plan import RunOptions
    from pinstripe_jobs.registry.arguments import parse_params

    output = Output(as_json, junit_xml, log_format)  # paths resolved now: a job's chdir cannot move them
    stop = StopFlag(grace=flags["grace"])
    with stop_on_signals(stop):  # before any config, tenant or store access: a signal always wins
        with stop.interruptible():
            flags["params"] = parse_params(flags["params"])
            settings = load(config, jobs_dir, tenants)
            executor = flags.pop("executor")
            if executor:
                settings.executor = executor
                settings.sources["executor"] = "--executor"
            runner = Runner(settings, stop=stop)
            plan = runner.plan(name, RunOptions(**flags))
            if dry_run:
                from pinstripe_jobs.observers.terminal import print_dry_run

                print_dry_run(plan.spec.name, plan.tenants(), as_json)
                return
        code = run_job(runner, plan, output)
    sys.exit(int(code))


@main.command("list-background-jobs", short_help="List jobs, schedules, next and last runs.", epilog=epilog(
    ["pinstripe list-background-jobs", "pinstripe list-background-jobs --json"],
    ["0   every job module loaded", "3   a job module is broken (shown as BROKEN, with file:line)"]))
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@project_options
@handle_errors
def list_background_jobs_command(as_json: bool, config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
    """List every job with its description, schedules and next run time."""
    from pinstripe_jobs.cli.listing import describe_jobs
    from pinstripe_jobs.observers.terminal import print_job_list
    from pinstripe_jobs.store.state import open_store

    settings = load(config, jobs_dir, tenants)
    store = open_store(settings, read_only=True)  # never creates a state database
    jobs, broken = describe_jobs(settings, last_runs=store.last_runs() if store else {})
    print_job_list(jobs, broken, as_json)
    sys.exit(int(ExitCode.CONFIG) if broken else 0)


@main.command("generate-background-job", short_help="Create jobs/NAME.py from a template.", epilog=epilog(
    ["pinstripe generate-background-job send-digest"],
    ["0   created", "2   bad name, or the file exists (never overwritten)", "3   configuration error"]))
@click.argument("name")
@project_options
@handle_errors
def generate_background_job_command(name: str, config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
    """Write jobs/NAME.py from a short template (never overwrites)."""
    from pinstripe_jobs.cli.generate import generate_job

    path = generate_job(load(config, jobs_dir, tenants), name)
    click.echo(f"Created {path}")


STATUSES = ("queued", "running", "succeeded", "failed", "skipped", "timed_out", "interrupted", "abandoned")


@main.command("history", short_help="Show recorded runs, newest first.", epilog=epilog(
    ["pinstripe history --job send-newsletter --status failed", "pinstripe history --tenant 42 --json"],
    ["0   shown (also when nothing is recorded)", "2   bad option", "3   the state store is not usable"]))
@click.option("--job", "job", default=None, metavar="NAME", help="Only this job.")
@click.option("--tenant", "tenant", default=None, metavar="ID", help="Only this tenant id.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, metavar="N",
              help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@project_options
@handle_errors
def history_command(job: str | None, tenant: str | None, status: str | None, limit: int, as_json: bool,
                    config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
    """Show recorded runs, newest first."""
    from pinstripe_jobs.observers.terminal import print_history
    from pinstripe_jobs.registry.jobs import normalize_name
    from pinstripe_jobs.store.state import open_store

    settings = load(config, jobs_dir, tenants)
    store = open_store(settings, read_only=True)  # never creates a state database
    rows = store.runs(job=normalize_name(job) if job else None, tenant=tenant, status=status,
                      limit=limit) if store else []
    print_history(rows, as_json)


@main.command("run-due-jobs", short_help="Fire what is due this minute (for cron).", epilog=epilog(
    ["* * * * * cd /srv/app && pinstripe run-due-jobs   (a crontab line)",
     "pinstripe run-due-jobs --at 2026-11-29T09:00   (fire that minute's ticks by hand)",
     "pinstripe run-due-jobs --at 2026-11-29T09:00 --dry-run   (which jobs and tenants would fire)"],
    ["0   everything due fired and succeeded (or nothing was due)", "1   a fired run failed",
     "3   a job module is broken, or a due tick could not be claimed or fired (it is resumed next time)",
     "130/143 stopped by SIGINT/SIGTERM"]))
@click.option("--at", "at", default=None, metavar="DATETIME",
              help="Fire what is due in this minute (ISO 8601; no offset = the configured time zone). Default: now.")
@click.option("--grace", type=click.FloatRange(min=0), default=30, show_default=True, metavar="SECONDS",
              help="After SIGTERM/SIGINT, how long running tenants get to finish.")
@click.option("--dry-run", is_flag=True, help="Show what is due and for which tenants; claim and run nothing.")
@project_options
@handle_errors
def run_due_jobs_command(at: str | None, grace: float, dry_run: bool, config: str | None, jobs_dir: str | None,
                         tenants: str | None) -> None:
    """Fire every job due this minute, once (for system cron or a Kubernetes CronJob)."""
    from pinstripe_jobs.cli.services import run_due_jobs
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals

    stop = StopFlag(grace=grace)
    with stop_on_signals(stop, escalate=False):
        with stop.interruptible():
            settings = load(config, jobs_dir, tenants)
        code = run_due_jobs(settings, at, stop, dry_run=dry_run)
    sys.exit(int(code))


@main.command("start-bot", short_help="Run jobs on their schedules until stopped.", epilog=epilog(
    ["pinstripe start-bot", "pinstripe start-bot --since 2026-11-29T08:00   (as if it last looked then)"],
    ["0   stopped by SIGTERM/SIGINT after the grace period", "2   bad option", "3   configuration error"]))
@click.option("--grace", type=click.FloatRange(min=0), default=30, show_default=True, metavar="SECONDS",
              help="Seconds running jobs get to finish after SIGTERM/SIGINT.")
@click.option("--since", default=None, metavar="DATETIME",
              help="Start as if the bot last looked at DATETIME: ticks since then are due at once "
                   "(within misfire_grace, or all of them for catch_up jobs).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://0.0.0.0:PORT/metrics (needs the metrics extra).")
@project_options
@handle_errors
def start_bot_command(grace: float, since: str | None, metrics_port: int | None, config: str | None,
                      jobs_dir: str | None, tenants: str | None) -> None:
    """Run jobs on their schedules until stopped (SIGTERM/SIGINT)."""
    from pinstripe_jobs.cli.services import start_bot
    from pinstripe_jobs.execution.signals import StopFlag, stop_on_signals

    stop = StopFlag(grace=grace)
    # A second signal during the shutdown stops the waiting (the handlers stay installed until the end).
    with stop_on_signals(stop, escalate=False):
        with stop.interruptible():
            settings = load(config, jobs_dir, tenants)
        if metrics_port is not None:
            from pinstripe_jobs.observers.telemetry import serve_metrics

            serve_metrics(metrics_port)
        code = start_bot(settings, grace, since, stop)
    sys.exit(int(code))


@main.command("worker", short_help="Run a Celery worker for this project's jobs (the fleet).", epilog=epilog(
    ["pinstripe worker", "pinstripe worker --concurrency 8 --pool threads",
     "PINSTRIPE_CONFIG=/app/pinstripe.toml celery -A pinstripe_jobs.fleet.worker worker   (the same)"],
    ["0   stopped by SIGTERM/SIGINT (a warm shutdown: running batches finish)", "2   bad option",
     "3   configuration error (no broker, Celery not installed, broker unreachable)"],
    COMMON_ENV + " PINSTRIPE_CELERY_BROKER (the broker URL)."))
@click.option("--concurrency", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes (prefork) or threads; default: the number of CPUs.")
@click.option("--queue", default=None, metavar="QUEUE", help="Queue to consume (default: [celery] queue, 'pinstripe').")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True,
              metavar="prefork|threads|solo", help="Celery execution pool.")
@click.option("--loglevel", default="WARNING", show_default=True, metavar="LEVEL", help="Celery's log level.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics of all pool processes at http://0.0.0.0:PORT/metrics.")
@project_options
@handle_errors
def worker_command(concurrency: int | None, queue: str | None, pool: str, loglevel: str, metrics_port: int | None,
                   config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
    """Run a Celery worker that runs batches of tenants sent by `run-background-job --executor celery`
    (and by the bot, with executor = "celery"), through the same per-tenant path as a local run."""
    import os

    from pinstripe_jobs.fleet.broker import celery_settings, require_celery

    settings = load(config, jobs_dir, tenants)
    require_celery()
    conf = celery_settings(settings)
    if metrics_port is not None:  # before the pool forks (PROMETHEUS_MULTIPROC_DIR for prefork)
        from pinstripe_jobs.observers.telemetry import serve_metrics

        serve_metrics(metrics_port, prefork=pool == "prefork")
    from pinstripe_jobs.fleet.worker import worker_app

    app = worker_app(settings)
    from pinstripe_jobs.fleet.broker import check_broker

    check_broker(app, conf["broker"])  # a worker that cannot reach its broker says so and exits 3
    argv = ["worker", f"--loglevel={loglevel}", f"--queues={queue or conf['queue']}", f"--pool={pool}",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", f"pinstripe-{os.getpid()}@%h"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


@main.command("kubernetes-manifest", short_help="Print a Kubernetes Indexed Job (or CronJob) for a job's shards.",
              epilog=epilog(
    ["pinstripe kubernetes-manifest --name reindex --shards 8 --image registry.example/app:1.4 | kubectl apply -f -",
     "pinstripe kubernetes-manifest --name nightly-report --shards 4 --image app:1.4 --cron   (its own schedule)"],
    ["0   printed", "2   bad option, unknown job", "3   configuration error, or --cron for a job without "
     "one schedule"]))
@click.option("--name", "job", required=True, metavar="NAME", shell_complete=complete_job_names, help="The job.")
@click.option("--shards", type=click.IntRange(1, 10000), required=True, metavar="N",
              help="Pods (completion indexes): pod K runs --shard K/N.")
@click.option("--image", required=True, metavar="IMAGE", help="Container image with the app and pinstripe-jobs.")
@click.option("--cron", is_flag=True, help="A CronJob on the job's own schedule (and time zone) instead of a Job.")
@click.option("--schedule", default=None, metavar="CRON", help="With --cron: this schedule instead of the job's.")
@click.option("--namespace", default=None, metavar="NS", help="metadata.namespace.")
@click.option("--config-path", default=None, metavar="PATH", help="PINSTRIPE_CONFIG inside the image.")
@click.option("--env-from-secret", default=None, metavar="SECRET",
              help="A Secret whose keys become env (PINSTRIPE_STATE, PINSTRIPE_TENANTS, ...).")
@click.option("--cpu", default="500m", show_default=True, metavar="CPU", help="CPU request per pod.")
@click.option("--memory", default="512Mi", show_default=True, metavar="MEM", help="Memory request and limit per pod.")
@click.option("--retries-per-index", type=click.IntRange(0, 100), default=2, show_default=True, metavar="N",
              help="backoffLimitPerIndex: retries of a failed index (exit 1, 124, 130).")
@project_options
@handle_errors
def kubernetes_manifest_command(job: str, shards: int, image: str, cron: bool, schedule: str | None,
                                namespace: str | None, config_path: str | None, env_from_secret: str | None,
                                cpu: str, memory: str, retries_per_index: int, config: str | None,
                                jobs_dir: str | None, tenants: str | None) -> None:
    """Print an Indexed Job whose pods each run one shard of a job (`--shard K/N`), with a pod failure
    policy that follows our exit codes; with --cron, a CronJob wrapping it."""
    from pinstripe_jobs.errors import ConfigError, UsageError
    from pinstripe_jobs.fleet.kubernetes import NAME, QUANTITY, manifest, to_yaml
    from pinstripe_jobs.registry.jobs import JobRegistry

    settings = load(config, jobs_dir, tenants)
    spec = JobRegistry(settings).load(job)
    for option, value in (("--cpu", cpu), ("--memory", memory)):
        if not QUANTITY.match(value):
            raise UsageError(f"{option} {value!r} is not a Kubernetes quantity.", "Examples: --cpu 500m --memory 512Mi.")
    if not NAME.match(spec.name) or len(spec.name) > 40:
        raise UsageError(f"Job name '{spec.name}' cannot name a Kubernetes object (lowercase letters, digits and "
                         "hyphens, at most 40 characters).", "Rename the job module.")
    timezone = None
    if schedule and not cron:
        raise UsageError("--schedule only applies with --cron.", "Add --cron, or drop --schedule.")
    if cron and not schedule:
        if spec.per_tenant_schedule or len(spec.schedules) != 1:
            raise ConfigError(f"Job '{spec.name}' has {len(spec.schedules) or 'no'} schedule(s) of its own"
                              f"{' (per tenant)' if spec.per_tenant_schedule else ''}; a CronJob needs one.",
                              "Pass --schedule 'CRON', or use a Job (no --cron) fired by your own scheduler.")
        schedule = spec.schedules[0].cron
        timezone = spec.timezone if spec.timezone and spec.timezone != "tenant" else settings.timezone
    if cron:
        from pinstripe_jobs.scheduling.cron import expand, validate_cron

        problem = validate_cron(schedule)
        if problem:
            raise UsageError(f"--schedule {schedule!r} is not a cron expression: {problem}.",
                             "Example: --schedule '0 3 * * *'.")
        schedule = expand(schedule)
    click.echo(to_yaml(manifest(job=spec.name, shards=shards, image=image, cron=schedule if cron else None,
                                timezone=timezone, namespace=namespace, config=config_path,
                                env_from_secret=env_from_secret, cpu=cpu, memory=memory,
                                retries_per_index=retries_per_index)))


def parse_root_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = (value or "").strip()
    if value in ("", "/"):
        return ""
    if not value.startswith("/") or any(c in value for c in "?#\\ ") or "//" in value:
        raise click.BadParameter(f"'{value}' is not a URL path prefix; give one like /jobs (a leading slash, no "
                                 "query, no spaces).")
    return value.rstrip("/")


@main.command("dashboard", short_help="Serve a web dashboard of jobs, tenants and history.", epilog=epilog(
    ["pinstripe dashboard", "pinstripe dashboard --port 8080 --root-path /jobs   (behind a reverse proxy)",
     "PINSTRIPE_DASHBOARD_TOKEN=s3cret pinstripe dashboard --allow-actions"],
    ["0   stopped by SIGINT/SIGTERM", "2   bad option (no token for --allow-actions)",
     "3   configuration error, the dashboard extra not installed, or the port taken"],
    COMMON_ENV + " The token for --allow-actions: the variable named by --token-env."))
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="Address to listen on (the default is this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, metavar="PORT",
              help="Port to listen on (0: a free one, printed).")
@click.option("--root-path", default="", callback=parse_root_path, metavar="PREFIX",
              help="URL prefix when served behind a reverse proxy that strips it (e.g. /jobs).")
@click.option("--allow-actions", is_flag=True,
              help="Enable 'run now' and 'rerun failed tenants' (signed in with the token; off by default).")
@click.option("--token-env", default="PINSTRIPE_DASHBOARD_TOKEN", show_default=True, metavar="NAME",
              help="Environment variable holding the token that --allow-actions requires.")
@project_options
@handle_errors
def dashboard_command(host: str, port: int, root_path: str, allow_actions: bool, token_env: str,
                      config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
    """Serve a web dashboard: jobs, a job x tenant status grid, failures, running runs and ticks, with a
    JSON API. Read-only unless --allow-actions."""
    import os

    from pinstripe_jobs.errors import UsageError
    from pinstripe_jobs.web import serve

    token = os.environ.get(token_env) or None
    if allow_actions and (token is None or len(token) < 8):
        raise UsageError(f"--allow-actions needs a token of at least 8 characters in the environment variable "
                         f"{token_env}, which is {'too short' if token else 'not set'}.",
                         f"Set it, e.g. `export {token_env}=$(openssl rand -hex 16)`, or name another with "
                         "--token-env.")
    settings = load(config, jobs_dir, tenants)
    project_args = []
    if settings.config_path is not None:
        project_args += ["--config", str(settings.config_path)]
    if jobs_dir:
        project_args += ["--jobs-dir", str(settings.jobs_dir)]
    if tenants:
        project_args += ["--tenants", tenants]
    serve(settings, host=host, port=port, root_path=root_path, allow_actions=allow_actions, token=token,
          project_args=project_args, announce=lambda text: click.echo(text, err=True))


if __name__ == "__main__":  # pragma: no cover
    main()
