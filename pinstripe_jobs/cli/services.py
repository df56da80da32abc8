"""The services behind the commands: wiring the runner and the scheduler to output, signals and reports."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

from pinstripe_jobs.config import Settings
from pinstripe_jobs.errors import ExitCode, UsageError
from pinstripe_jobs.observers.terminal import PlainReporter

if TYPE_CHECKING:
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.execution.signals import StopFlag
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.scheduling.bot import Firing, Scheduler


class Output:
    """How a run reports: the terminal/JSON choice, CI reports and the log format."""

    def __init__(self, as_json: bool = False, junit_xml: str | None = None, log_format: str = "text"):
        self.as_json = as_json
        self.junit_xml = os.path.abspath(junit_xml) if junit_xml else None
        self.log_format = log_format


def make_observer(output: Output, stdout: Any, notifier: Any = None, extras: list[Any] | None = None) -> Any:
    from pinstripe_jobs.observers import terminal as reporting

    if output.as_json:
        main: Any = reporting.JsonReporter(stdout)
    elif reporting.use_rich(stdout):
        main = reporting.RichReporter(stdout)
    else:
        main = reporting.PlainReporter(stdout)
    extra: list[Observer] = []
    if output.junit_xml:
        from pinstripe_jobs.observers.ci import JUnitReporter

        extra.append(JUnitReporter(output.junit_xml))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from pinstripe_jobs.observers.ci import GitHubReporter

        extra.append(GitHubReporter(sys.stderr if output.as_json else stdout, os.environ.get("GITHUB_STEP_SUMMARY")))
    if notifier is not None:
        extra.append(notifier)
    extra.extend(extras or [])
    if not extra:
        return main
    from pinstripe_jobs.observers.ci import Tee

    return Tee(main, *extra)


def run_job(runner: Runner, plan: Plan, output: Output) -> ExitCode:
    """Run a plan as ``run-background-job`` does. What jobs print goes through a ``LineSink`` (whole lines,
    a tenant's last line always ended): to stdout, to stderr under --json, or above the progress bar on
    a terminal, where job stderr and log lines go the same way so nothing is glued onto the bar."""
    from pinstripe_jobs.execution.workspace import on_first_log
    from pinstripe_jobs.observers.terminal import BatchedLines, LineSink, RichReporter

    stdout, stderr = sys.stdout, sys.stderr
    from pinstripe_jobs.observers.telemetry import observers_for

    observer = make_observer(output, stdout, notifier_for(runner), observers_for(runner))
    main = observer.observers[0] if hasattr(observer, "observers") else observer
    if isinstance(main, RichReporter):
        sink = LineSink(main.emit, stdout)
        err_sink = LineSink(main.emit, stderr) if stderr.isatty() else None
    else:
        sink = LineSink(BatchedLines(stderr if output.as_json else stdout), stderr if output.as_json else stdout)
        err_sink = None
    log_stream = cast(IO[str], err_sink) if err_sink else stderr  # a LineSink is a text stream (write, flush)

    def setup_logs() -> None:
        from pinstripe_jobs.execution.logs import setup_logging

        setup_logging(log_stream, as_json=output.log_format == "json")

    on_first_log(setup_logs)
    redirect_err = contextlib.redirect_stderr(err_sink) if err_sink else contextlib.nullcontext()
    try:
        with contextlib.redirect_stdout(sink), redirect_err:  # signal handlers: installed by the caller
            summary = runner.execute(plan, observer)
    finally:
        sink.close()
        if err_sink is not None:
            err_sink.close()
    return summary.exit_code


def notifier_for(runner: Runner) -> Any:
    """The [notify] observer, when alerts are configured (imported only then)."""
    if not runner.settings.notify:
        return None
    from pinstripe_jobs.observers.notify import Notifier

    return Notifier(runner.settings.notify, lambda: runner.state)


def _scheduled_observer(runner: Runner) -> Callable[[Firing], Any]:
    def observer(firing: Firing) -> Any:
        from pinstripe_jobs.observers.telemetry import observers_for

        plain = PlainReporter(sys.stdout, prefix=f"[{firing.tick.isoformat()} {firing.spec.name}]")
        extra = [o for o in (notifier_for(runner),) if o is not None] + observers_for(runner)
        if not extra:
            return plain
        from pinstripe_jobs.observers.ci import Tee

        return Tee(plain, *extra)

    return observer


def parse_at(text: str, settings: Settings, option: str = "--at") -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an ISO 8601 date and time.",
                         f"Example: {option} 2026-11-29T10:00 or {option} 2026-11-29T10:00:00+01:00") from None
    from pinstripe_jobs.scheduling.cron import to_instant  # a local time in a DST gap: as schedules read it

    return moment if moment.tzinfo else to_instant(moment, settings.tz())


def run_due_jobs(settings: Settings, at: str | None, stop: StopFlag | None = None, dry_run: bool = False
                 ) -> ExitCode:
    """``run-due-jobs``. The caller installs the signal handlers that set ``stop``."""
    from pinstripe_jobs.execution.logs import setup_logging
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.observers.terminal import whole_lines
    from pinstripe_jobs.scheduling.bot import Scheduler

    setup_logging(sys.stderr)
    runner = Runner(settings, stop=stop)
    scheduler = Scheduler(runner, observer=_scheduled_observer(runner))
    moment = parse_at(at, settings) if at else None
    if dry_run:
        return _preview(scheduler, moment)
    lines = whole_lines(sys.stdout)
    try:
        with contextlib.redirect_stdout(lines):
            outcomes = scheduler.run_due(moment)
    finally:
        lines.close()
    fired = [o.summary for o in outcomes if o.summary is not None]
    claimed_elsewhere = [o for o in outcomes if o.summary is None and o.error is None and o.paused is None]
    for outcome in outcomes:
        if outcome.paused is not None:
            print(f"{outcome.firing.spec.name}: tick {outcome.firing.tick.isoformat()} not fired: the job is paused "
                  f"(by {outcome.paused.get('who')}; `pinstripe unpause {outcome.firing.spec.name}`)")
    for outcome in claimed_elsewhere:
        print(f"{outcome.firing.spec.name}: tick {outcome.firing.tick.isoformat()} was already fired; skipped")
    if not outcomes:
        print("Nothing due.")
    not_fired = [o for o in outcomes if o.error is not None]
    unfinished = [summary for summary in fired if summary.error]
    failed = any(summary.failures for summary in fired)
    print(f"run-due-jobs: {len(fired)} fired, {len(claimed_elsewhere)} already fired, "
          f"{'some failed' if failed else 'none failed'}")
    for outcome in not_fired:
        error = outcome.error
        message = getattr(error, "message", None)
        if message is None:
            message = f"{type(error).__name__}: {error}"
        print(f"{outcome.firing.spec.name}: could not fire tick {outcome.firing.tick.isoformat()}: {message}\n"
              "The tick was not run; the next run-due-jobs resumes it while it is within misfire_grace.",
              file=sys.stderr)
    for problem in scheduler.broken:
        print(f"BROKEN {problem.job_name}: not scheduled: {problem.message}", file=sys.stderr)
    if runner.stop.signal is not None:
        import signal

        return ExitCode.TERMINATED if runner.stop.signal == signal.SIGTERM else ExitCode.INTERRUPTED
    if not_fired or unfinished or scheduler.broken:
        return ExitCode.CONFIG
    return ExitCode.FAILED if failed else ExitCode.OK


def _preview(scheduler: Scheduler, moment: datetime | None) -> ExitCode:
    from pinstripe_jobs.textsafe import literal

    due = scheduler.preview(moment)
    for firing, tenants in due:
        more = f", … ({len(tenants)} in all)" if len(tenants) > 50 else ""
        shown = ", ".join(literal(t) for t in tenants[:50]) + more
        who = f"{len(tenants)} tenant(s): {shown}" if firing.spec.multi_tenant else "once (not per tenant)"
        print(f"{firing.spec.name}: tick {firing.tick.isoformat()} would fire for {who}")
    if not due:
        print("Nothing due.")
    print("Dry run: nothing was claimed or run.")
    return ExitCode.CONFIG if scheduler.broken else ExitCode.OK


def start_bot(settings: Settings, grace: float, since: str | None = None, stop: StopFlag | None = None) -> ExitCode:
    """``start-bot``. The caller installs the signal handlers that set ``stop`` (without escalation: a
    second signal stops the waiting for running jobs)."""
    from pinstripe_jobs.execution.logs import setup_logging
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.observers.terminal import whole_lines
    from pinstripe_jobs.scheduling.bot import Scheduler

    since_at = parse_at(since, settings, "--since") if since else None  # a bad value: before anything starts
    setup_logging(sys.stderr)
    runner = Runner(settings, stop=stop)
    scheduler = Scheduler(runner, observer=_scheduled_observer(runner))
    now = scheduler.now()
    print(f"pinstripe bot started (time zone {settings.timezone}, misfire grace {settings.misfire_grace:g}s)")
    for spec, when in scheduler.next_runs(now):
        print(f"  {spec.name}: next run {when.astimezone(scheduler.tz(spec)).isoformat()}")
    sys.stdout.flush()
    import signal

    lines = whole_lines(sys.stdout)
    with contextlib.redirect_stdout(lines):
        scheduler.loop(since_at)
        name = signal.Signals(runner.stop.signal).name if runner.stop.signal else "stop"
        print(f"{name} received: no new runs; waiting up to {grace:g}s for {len(scheduler.threads)} running job(s)")
        interrupted = scheduler.shutdown(grace, time.monotonic)
    lines.close()
    print(f"pinstripe bot stopped ({interrupted} run(s) recorded as interrupted)")
    return ExitCode.OK
