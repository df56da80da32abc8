"""The services behind ``start-bot`` and ``run-due-jobs``: wiring the scheduler to output and signals."""
from __future__ import annotations

import sys
import time
from datetime import datetime

from .config import Settings
from .errors import ExitCode, UsageError
from .reporting import PlainReporter, setup_logging
from .runner import Runner
from .scheduler import Firing, Scheduler
from .signals import stop_on_signals


def _observer(firing: Firing) -> PlainReporter:
    return PlainReporter(sys.stdout, prefix=f"[{firing.tick.isoformat()} {firing.spec.name}]")


def parse_at(text: str, settings: Settings) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--at {text!r} is not an ISO 8601 date and time.",
                         "Example: --at 2026-11-29T10:00 or --at 2026-11-29T10:00:00+01:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=settings.tz())


def run_due_jobs(settings: Settings, at: str | None) -> ExitCode:
    setup_logging(sys.stderr)
    scheduler = Scheduler(Runner(settings), observer=_observer)
    moment = parse_at(at, settings) if at else None
    outcomes = scheduler.run_due(moment)
    fired = [o for o in outcomes if o.summary is not None]
    claimed_elsewhere = [o for o in outcomes if o.summary is None and o.error is None]
    for outcome in claimed_elsewhere:
        print(f"{outcome.firing.spec.name}: tick {outcome.firing.tick.isoformat()} was already fired; skipped")
    if not outcomes:
        print("Nothing due.")
    failed = any(o.error is not None or o.summary.failures for o in outcomes if o.summary or o.error)
    print(f"run-due-jobs: {len(fired)} fired, {len(claimed_elsewhere)} already fired, "
          f"{'some failed' if failed else 'none failed'}")
    return ExitCode.FAILED if failed else ExitCode.OK


def start_bot(settings: Settings, grace: float, since: str | None = None) -> ExitCode:
    setup_logging(sys.stderr)
    runner = Runner(settings)
    scheduler = Scheduler(runner, observer=_observer)
    now = scheduler.now()
    print(f"pinstripe bot started (time zone {settings.timezone}, misfire grace {settings.misfire_grace:g}s)")
    for spec, when in scheduler.next_runs(now):
        print(f"  {spec.name}: next run {when.astimezone(scheduler.tz(spec)).isoformat()}")
    sys.stdout.flush()
    with stop_on_signals(runner.stop):
        scheduler.loop(parse_at(since, settings) if since else None)
    import signal

    name = signal.Signals(runner.stop.signal).name if runner.stop.signal else "stop"
    print(f"{name} received: no new runs; waiting up to {grace:g}s for {len(scheduler.threads)} running job(s)")
    sys.stdout.flush()
    interrupted = scheduler.shutdown(grace, time.monotonic)
    print(f"pinstripe bot stopped ({interrupted} run(s) recorded as interrupted)")
    return ExitCode.OK
