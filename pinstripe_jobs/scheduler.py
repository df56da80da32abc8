"""The bot: fires each job on its cron schedules, through the same ``Runner`` as a manual run.

``Scheduler.run_due(at)`` is the one-shot used by ``run-due-jobs``; ``Scheduler.loop()`` is ``start-bot``.
Time is passed in (``now`` and ``wait`` callables), so tests drive both with a fake clock.
Every firing first claims its (job, tick) in the state store, so a tick fires once across processes.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .config import load_timezone
from .registry import JobSpec, ScheduleEntry
from .results import Summary
from .runner import NullObserver, Observer, RunOptions, Runner
from .schedule import next_tick, ticks_between
from .state import utcnow

log = logging.getLogger("pinstripe.bot")
MAX_LOOKBACK = timedelta(days=1)  # how far back missed ticks are looked for


@dataclass
class Firing:
    spec: JobSpec
    index: int
    entry: ScheduleEntry
    tick: datetime
    coalesced: int = 1  # how many ticks this one run stands for
    earlier: tuple[datetime, ...] = ()  # the other ticks it stands for (claimed with it)

    @property
    def key(self) -> str:
        """The claim key: the job, plus the entry's index when the job has several schedules."""
        return self.spec.name if len(self.spec.schedules) == 1 else f"{self.spec.name}#{self.index}"


@dataclass
class Outcome:
    firing: Firing
    summary: Summary | None  # None: the tick was already claimed elsewhere
    error: BaseException | None = None


class Scheduler:
    def __init__(self, runner: Runner, *, now: Callable[[], datetime] = utcnow,
                 wait: Callable[[float], Any] | None = None, observer: Callable[[Firing], Observer] | None = None):
        self.runner = runner
        self.settings = runner.settings
        self.now = now
        self.wait = wait or runner.stop.event.wait
        self.grace = timedelta(seconds=self.settings.misfire_grace)
        self.observer = observer or (lambda firing: NullObserver())
        self.threads: set[threading.Thread] = set()
        self.broken: list = []  # job modules that failed to load: not scheduled, reported
        self._specs: list[JobSpec] | None = None

    # -- what is scheduled -------------------------------------------------------------------------
    def specs(self) -> list[JobSpec]:
        if self._specs is None:
            specs, self.broken = self.runner.registry.load_all()
            for problem in self.broken:
                log.error("not scheduling %s: %s", problem.job_name, problem.message)
            self._specs = [s for s in specs if s.schedules]
        return self._specs

    def tz(self, spec: JobSpec):
        return load_timezone(spec.timezone, str(spec.path)) if spec.timezone else self.settings.tz()

    def next_runs(self, after: datetime) -> list[tuple[JobSpec, datetime]]:
        return sorted(((spec, min(next_tick(e.cron, self.tz(spec), after) for e in spec.schedules))
                       for spec in self.specs()), key=lambda pair: pair[1])

    def due(self, start: datetime, end: datetime, now: datetime, starts: dict[str, datetime] | None = None
            ) -> list[Firing]:
        """Firings for ticks in ``(start, end]``: ticks missed by more than ``misfire_grace`` are skipped
        (logged) unless the job sets ``catch_up``. The due ticks of one schedule coalesce into one run."""
        firings = []
        for spec in self.specs():
            for index, entry in enumerate(spec.schedules):
                probe = Firing(spec, index, entry, now)
                since = (starts or {}).get(probe.key, start)
                ticks = ticks_between(entry.cron, self.tz(spec), since, end)
                if not ticks:
                    continue
                recent = ticks if spec.catch_up else [t for t in ticks if now - t <= self.grace]
                if len(recent) < len(ticks):
                    log.warning("%s: skipped %d tick(s) missed by more than misfire_grace (%ss), the last at %s",
                                spec.name, len(ticks) - len(recent), self.grace.total_seconds(),
                                ticks[len(ticks) - len(recent) - 1].isoformat())
                if recent:  # several due ticks of one schedule make one run, for the latest
                    firings.append(Firing(spec, index, entry, recent[-1], len(recent), tuple(recent[:-1])))
        return firings

    # -- firing ------------------------------------------------------------------------------------
    def fire(self, firing: Firing) -> Outcome:
        if not self.runner.state.claim_tick(firing.key, firing.tick):
            log.debug("%s: tick %s already fired elsewhere; skipping", firing.spec.name, firing.tick.isoformat())
            return Outcome(firing, None)
        for tick in firing.earlier:
            self.runner.state.claim_tick(firing.key, tick)
        if firing.coalesced > 1:
            log.info("%s: catching up %d missed ticks in one run", firing.spec.name, firing.coalesced)
        options = RunOptions(args=firing.entry.args, trigger="schedule", tick=firing.tick)
        try:
            summary = self.runner.run(firing.spec, options, self.observer(firing))
        except Exception as exc:  # a configuration problem (tenant source down...): log it and go on
            log.error("%s: could not run: %s", firing.spec.name, exc)
            return Outcome(firing, None, exc)
        return Outcome(firing, summary)

    def fire_all(self, firings: list[Firing]) -> list[Outcome]:
        """Fire each in its own thread (a long job never delays another's start) and wait for all."""
        outcomes: list[Outcome] = []
        threads = [threading.Thread(target=lambda f=f: outcomes.append(self.fire(f)), daemon=True)
                   for f in firings]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes

    def run_due(self, at: datetime | None = None) -> list[Outcome]:
        """``run-due-jobs``: fire every tick due in the minute of ``at`` (and ticks since the last claimed
        one that are still within ``misfire_grace``, or all of them for ``catch_up`` jobs)."""
        at = (at or self.now()).astimezone(timezone.utc)
        minute = at.replace(second=0, microsecond=0)
        end = minute + timedelta(seconds=59, microseconds=999999)
        default_start = min(minute, at - self.grace) - timedelta(microseconds=1)
        return self.fire_all(self.due(default_start, end, at, self.resume_points(default_start, at)))

    def resume_points(self, before: datetime, at: datetime) -> dict[str, datetime]:
        """For each schedule whose last claimed tick is older than ``before``: look for missed ticks from
        there (at most ``MAX_LOOKBACK`` back), so they are fired, caught up or reported as skipped."""
        starts = {}
        for spec in self.specs():
            for index, entry in enumerate(spec.schedules):
                key = Firing(spec, index, entry, at).key
                last = self.runner.state.last_claimed_tick(key)
                if last is not None and last < before:
                    starts[key] = max(last, at - MAX_LOOKBACK)
        return starts

    # -- the long-running bot ----------------------------------------------------------------------
    def loop(self, since: datetime | None = None) -> None:
        """Sleep until the next tick, fire what is due in threads, repeat until the stop flag is set.
        ``since``: treat it as the last time the bot looked, so ticks after it are due at once."""
        stop = self.runner.stop
        last = since or self.now()
        if since is None:  # ticks missed while no bot was running (restart, deploy): due now
            self._start_threads(self.due(last, last, last, self.resume_points(last, last)))
        while not stop.requested:
            upcoming = self.next_runs(last)
            if not upcoming:
                log.warning("no scheduled jobs; the bot has nothing to do")
                self.wait(3600)
                continue
            target = upcoming[0][1]
            while not stop.requested:
                remaining = (target - self.now()).total_seconds()
                if remaining <= 0:
                    break
                self.wait(min(remaining, 60.0))  # re-read the clock at least every minute (clock jumps)
            if stop.requested:
                break
            now = self.now()
            self._start_threads(self.due(last, now, now))
            last = max(last, now)

    def _start_threads(self, firings: list[Firing]) -> None:
        for firing in firings:
            thread = threading.Thread(target=self._fire_in_thread, args=(firing,), daemon=True,
                                      name=f"bot-{firing.spec.name}")
            self.threads.add(thread)
            thread.start()

    def _fire_in_thread(self, firing: Firing) -> None:
        try:
            self.fire(firing)
        except Exception:
            log.exception("%s: the bot could not fire tick %s", firing.spec.name, firing.tick.isoformat())
        finally:
            self.threads.discard(threading.current_thread())

    def shutdown(self, grace: float, clock: Callable[[], float]) -> int:
        """Wait up to ``grace`` seconds for running jobs; record what is still running as interrupted."""
        deadline = clock() + grace
        for thread in list(self.threads):
            while thread.is_alive() and clock() < deadline and not self.runner.stop.aborted:
                thread.join(min(0.1, max(0.0, deadline - clock())))
        return self.runner.interrupt_active(f"the bot stopped; still running after the {grace:g}s grace period")
