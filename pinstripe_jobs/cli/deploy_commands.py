"""The commands that serve or deploy the project: ``worker`` (the Celery fleet), ``kubernetes-manifest`` and
``dashboard``."""
from __future__ import annotations

import os

import click

from pinstripe_jobs.cli.group import COMMON_ENV, epilog, main
from pinstripe_jobs.cli.project import Project, complete_job_names, with_project
from pinstripe_jobs.errors import ConfigError, UsageError

MAX_WORKER_CONCURRENCY = 1000


@main.command("worker", short_help="Run a Celery worker for this project's jobs (the fleet).", epilog=epilog(
    ["pinstripe worker", "pinstripe worker --concurrency 8 --pool threads",
     "PINSTRIPE_CONFIG=/app/pinstripe.toml celery -A pinstripe_jobs.fleet.worker worker   (the same)"],
    ["0   stopped by SIGTERM/SIGINT (a warm shutdown: running batches finish)", "2   bad option",
     "3   configuration error (no broker, Celery not installed, broker unreachable)"],
    COMMON_ENV + " PINSTRIPE_CELERY_BROKER (the broker URL)."))
@click.option("--concurrency", type=click.IntRange(1, MAX_WORKER_CONCURRENCY), default=None, metavar="N",
              help="Worker processes (prefork) or threads; default: the number of CPUs.")
@click.option("--queue", default=None, metavar="QUEUE", help="Queue to consume (default: [celery] queue, 'pinstripe').")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True,
              metavar="prefork|threads|solo", help="Celery execution pool.")
@click.option("--loglevel", default="WARNING", show_default=True, metavar="LEVEL", help="Celery's log level.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics of all pool processes at http://0.0.0.0:PORT/metrics.")
@with_project
def worker_command(concurrency: int | None, queue: str | None, pool: str, loglevel: str, metrics_port: int | None,
                   project: Project) -> None:
    """Run a Celery worker that runs batches of tenants sent by `run-background-job --executor celery`
    (and by the bot, with executor = "celery"), through the same per-tenant path as a local run."""
    from pinstripe_jobs.fleet.broker import celery_settings, require_celery

    settings = project.settings()
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


def cron_schedule(spec_name: str, own: list[str], per_tenant: bool, schedule: str | None) -> str:
    """The CronJob's schedule: --schedule, else the job's one schedule; checked and expanded."""
    from pinstripe_jobs.scheduling.cron import expand, validate_cron

    if not schedule:
        if per_tenant or len(own) != 1:
            raise ConfigError(f"Job '{spec_name}' has {len(own) or 'no'} schedule(s) of its own"
                              f"{' (per tenant)' if per_tenant else ''}; a CronJob needs one.",
                              "Pass --schedule 'CRON', or use a Job (no --cron) fired by your own scheduler.")
        schedule = own[0]
    problem = validate_cron(schedule)
    if problem:
        raise UsageError(f"--schedule {schedule!r} is not a cron expression: {problem}.",
                         "Example: --schedule '0 3 * * *'.")
    return expand(schedule)


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
@with_project
def kubernetes_manifest_command(job: str, shards: int, image: str, cron: bool, schedule: str | None,
                                namespace: str | None, config_path: str | None, env_from_secret: str | None,
                                cpu: str, memory: str, retries_per_index: int, project: Project) -> None:
    """Print an Indexed Job whose pods each run one shard of a job (`--shard K/N`), with a pod failure
    policy that follows our exit codes; with --cron, a CronJob wrapping it."""
    from pinstripe_jobs.fleet.kubernetes import NAME, QUANTITY, manifest, to_yaml
    from pinstripe_jobs.registry.jobs import JobRegistry

    settings = project.settings()
    spec = JobRegistry(settings).load(job)
    for option, value in (("--cpu", cpu), ("--memory", memory)):
        if not QUANTITY.match(value):
            raise UsageError(f"{option} {value!r} is not a Kubernetes quantity.",
                             "Examples: --cpu 500m --memory 512Mi.")
    if not NAME.match(spec.name) or len(spec.name) > 40:
        raise UsageError(f"Job name '{spec.name}' cannot name a Kubernetes object (lowercase letters, digits and "
                         "hyphens, at most 40 characters).", "Rename the job module.")
    if schedule and not cron:
        raise UsageError("--schedule only applies with --cron.", "Add --cron, or drop --schedule.")
    timezone = None
    if cron and not schedule:
        timezone = spec.timezone if spec.timezone and spec.timezone != "tenant" else settings.timezone
    cron_text = cron_schedule(spec.name, [entry.cron for entry in spec.schedules], spec.per_tenant_schedule,
                              schedule) if cron else None
    click.echo(to_yaml(manifest(job=spec.name, shards=shards, image=image, cron=cron_text,
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
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name the dashboard answers to besides its address (repeatable; * turns the check off).")
@with_project
def dashboard_command(host: str, port: int, root_path: str, allow_actions: bool, token_env: str,
                      allowed_hosts: tuple[str, ...], project: Project) -> None:
    """Serve a web dashboard: jobs, a job x tenant status grid, failures, running runs and ticks, with a
    JSON API. Read-only unless --allow-actions."""
    from pinstripe_jobs.web import serve

    token = os.environ.get(token_env) or None
    if allow_actions and (token is None or len(token) < 8):
        raise UsageError(f"--allow-actions needs a token of at least 8 characters in the environment variable "
                         f"{token_env}, which is {'too short' if token else 'not set'}.",
                         f"Set it, e.g. `export {token_env}=$(openssl rand -hex 16)`, or name another with "
                         "--token-env.")
    settings = project.settings()
    serve(settings, host=host, port=port, root_path=root_path, allow_actions=allow_actions, token=token,
          project_args=project.child_args(), announce=lambda text: click.echo(text, err=True),
          allowed_hosts=allowed_hosts)
