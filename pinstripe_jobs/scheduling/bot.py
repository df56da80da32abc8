"""The bot: fires each job on its cron schedules, through the same ``Runner`` as a manual run.

``Scheduler.run_due(at)`` is the one-shot used by ``run-due-jobs``; ``Scheduler.loop()`` is ``start-bot``.
Time is passed in (``now`` and ``wait`` callables), so tests drive both with a fake clock.
Every firing first claims its (job, tick) in the state store, so a tick fires once across processes.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from pinstripe_jobs.config import load_timezone
from pinstripe_jobs.errors import JobImportError, PinstripeError
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.model.plan import RunOptions
from pinstripe_jobs.model.results import Summary
from pinstripe_jobs.observers.base import NullObserver, Observer
from pinstripe_jobs.registry.spec import JobSpec, ScheduleEntry
from pinstripe_jobs.scheduling.cron import next_tick, ticks_between
from pinstripe_jobs.store.state import utcnow

log = logging.getLogger("pinstripe.bot")


@dataclass
class Firing:
    spec: JobSpec
    index: int
    entry: ScheduleEntry
    tick: datetime
    coalesced: int = 1  # how many ticks this one run stands for
    earlier: tuple[datetime, ...] = ()  # the other ticks it stands for (claimed with it)
    resume: bool = False  # an orphaned tick (its runner died): take it over, run only the tenants left
    skip_reason: str | None = None  # record the tenants left as skipped instead of running them

    @property
    def key(self) -> str:
        """The claim key: the job, plus the entry's index when the job has several schedules (per-tenant
        schedules: plus the arguments, when the entries have any)."""
        if self.spec.per_tenant_schedule:
            return self.spec.name + (f"#{self.entry.args!r}" if self.entry.args else "")
        return self.spec.name if len(self.spec.schedules) == 1 else f"{self.spec.name}#{self.index}"


def by_priority(firings: list[Firing]) -> list[Firing]:
    """Firings due at once, the highest job ``priority`` first (otherwise in their order)."""
    return sorted(firings, key=lambda firing: -firing.spec.priority)


@dataclass
class Outcome:
    firing: Firing
    summary: Summary | None  # None: the tick was already claimed elsewhere (or, ``paused``, not fired)
    error: BaseException | None = None
    paused: dict[str, Any] | None = None  # the job is paused (`pinstripe pause`): its tick recorded, not fired


class Scheduler:
    def __init__(self, runner: Runner, *, now: Callable[[], datetime] = utcnow,
                 wait: Callable[[float], Any] | None = None, observer: Callable[[Firing], Observer] | None = None):
        self.runner = runner
        runner.stop_on_cancel = False  # cancelling one invocation stops its tenants, not the scheduler
        self.settings = runner.settings
        self.now = now
        self.wait = wait or runner.stop.event.wait
        self.grace = timedelta(seconds=self.settings.misfire_grace)
        self.observer = observer or (lambda firing: NullObserver())
        self.threads: set[threading.Thread] = set()
        self.broken: list[JobImportError] = []  # job modules that failed to load: not scheduled, reported
        self.missed: list[tuple[str, str, int, datetime]] = []  # (key, job, count, last) ticks too late to fire
        self._specs: list[JobSpec] | None = None
        from pinstripe_jobs.scheduling.per_tenant import TenantSchedules

        self.tenant_schedules = TenantSchedules(self.settings, runner.tenant_query)

    # -- what is scheduled -------------------------------------------------------------------------
    def specs(self) -> list[JobSpec]:
        if self._specs is None:
            specs, self.broken = self.runner.registry.load_all()
            for problem in self.broken:
                log.error("not scheduling %s: %s", problem.job_name, problem.message)
            self._specs = [s for s in specs if s.scheduled]
        return self._specs

    def tz(self, spec: JobSpec) -> tzinfo:
        zone: tzinfo
        if spec.timezone and spec.timezone != "tenant":
            zone = load_timezone(spec.timezone, str(spec.path))
        else:
            zone = load_timezone(self.settings.timezone, self.settings.source_of("timezone"))
        return zone

    def next_runs(self, after: datetime) -> list[tuple[JobSpec, datetime]]:
        """Each job's next tick; per-tenant schedules are looked at every minute."""
        found = []
        for spec in self.specs():
            if spec.per_tenant_schedule:
                found.append((spec, after.replace(second=0, microsecond=0) + timedelta(minutes=1)))
                continue
            try:
                found.append((spec, min(next_tick(e.cron, self.tz(spec), after) for e in spec.schedules)))
            except Exception as exc:  # one job's schedule never stops the others
                log.error("%s: could not work out its next tick: %s: %s", spec.name, type(exc).__name__, exc)
        return sorted(found, key=lambda pair: pair[1])

    def due(self, start: datetime, end: datetime, now: datetime, starts: dict[str, datetime] | None = None
            ) -> list[Firing]:
        """Firings for ticks in ``(start, end]``: ticks missed by more than ``misfire_grace`` are skipped
        (logged) unless the job sets ``catch_up``. The due ticks of one schedule coalesce into one run.
        One job whose ticks cannot be worked out (a bug) is logged and left out; the others fire."""
        firings: list[Firing] = []
        for spec in self.specs():
            try:
                if spec.per_tenant_schedule:
                    firings += self._tenant_firings(spec, start, end, now, starts or {})
                    continue
                for index, entry in enumerate(spec.schedules):
                    firings += self._schedule_firings(Firing(spec, index, entry, now), start, end, starts or {})
            except PinstripeError:
                raise  # the store or the tenant source: the caller says it
            except Exception as exc:
                log.error("%s: could not work out its due ticks, so it does not fire now: %s: %s", spec.name,
                          type(exc).__name__, exc)
        return firings

    def _schedule_firings(self, probe: Firing, start: datetime, end: datetime, starts: dict[str, datetime]
                          ) -> list[Firing]:
        """The run for one schedule's due ticks (several coalesce into one, for the latest), if any."""
        spec, now = probe.spec, probe.tick
        ticks = ticks_between(probe.entry.cron, self.tz(spec), starts.get(probe.key, start), end)
        recent = ticks if spec.catch_up else [t for t in ticks if now - t <= self.grace]
        if len(recent) < len(ticks):
            self.missed.append((probe.key, spec.name, len(ticks) - len(recent), ticks[len(ticks) - len(recent) - 1]))
        if not recent:
            return []
        return [Firing(spec, probe.index, probe.entry, recent[-1], len(recent), tuple(recent[:-1]))]

    def _tenant_firings(self, spec: JobSpec, start: datetime, end: datetime, now: datetime,
                        starts: dict[str, datetime]) -> list[Firing]:
        """One firing per instant at which some tenant's schedule, in its own zone, fires."""
        from pinstripe_jobs.scheduling.per_tenant import summarize

        since = starts.get(spec.name, start)
        found, problems = self.tenant_schedules.instants(spec, since, end)
        problems = self.tenant_schedules.fresh(problems)
        if problems:
            log.warning("%s: %d tenant(s) not scheduled as they ask: %s", spec.name, len(problems),
                        summarize(problems))
        firings = []
        late: dict[tuple[object, ...], list[datetime]] = {}
        for instant, args in sorted(found, key=lambda pair: pair[0]):
            entry = ScheduleEntry("tenant", args)
            if spec.catch_up or now - instant <= self.grace:
                firings.append(Firing(spec, 0, entry, instant))
            else:
                late.setdefault(args, []).append(instant)
        for args, instants in late.items():
            key = Firing(spec, 0, ScheduleEntry("tenant", args), instants[-1]).key
            self.missed.append((key, spec.name, len(instants), instants[-1]))
        return firings

    # -- firing ------------------------------------------------------------------------------------
    def fire(self, firing: Firing) -> Outcome:
        """Claim the tick (or take over an orphaned one) and run it through the runner. The claim is
        finished once every tenant has a recorded status; a tick that could not be run is released, so the
        next scheduler (or this one, at its next tick) resumes it."""
        state = self.runner.state
        name, tick = firing.spec.name, firing.tick.isoformat()
        try:
            pause = None if firing.resume else state.paused(name)  # a tick taken over finishes what it began
            if pause is not None:
                return self._paused(firing, pause)
            claimed = state.take_over_tick(firing.key, firing.tick) if firing.resume else \
                state.claim_tick(firing.key, firing.tick)
        except PinstripeError as exc:
            log.error("%s: could not claim tick %s: %s", name, tick, exc.message)
            return Outcome(firing, None, exc)
        if not claimed:
            log.debug("%s: tick %s already fired elsewhere; skipping", name, tick)
            return Outcome(firing, None)
        try:
            for earlier in firing.earlier:  # coalesced into this run
                if state.claim_tick(firing.key, earlier, kind="caught_up"):
                    state.finish_tick(firing.key, earlier)
            if firing.coalesced > 1:
                log.info("%s: catching up %d missed ticks in one run", name, firing.coalesced)
            if firing.resume:
                log.info("%s: resuming tick %s, whose runner stopped before it was done", name, tick)
            summary = self._run(firing)
        except Exception as exc:  # a configuration problem (tenant source or store down...): log it, go on
            message = exc.message if isinstance(exc, PinstripeError) else f"{type(exc).__name__}: {exc}"
            log.error("%s: could not fire tick %s: %s", name, tick, message)
            self._release(firing)
            return Outcome(firing, None, exc)
        if summary.error:
            self._release(firing)
        else:
            try:
                state.finish_tick(firing.key, firing.tick)
            except PinstripeError as exc:
                log.error("%s: tick %s ran, but could not be marked done: %s", name, tick, exc.message)
        return Outcome(firing, summary)

    def _paused(self, firing: Firing, pause: dict[str, Any]) -> Outcome:
        """A paused job's tick: claimed as ``paused`` (once across schedulers) and finished, nothing fired."""
        state = self.runner.state
        if state.claim_tick(firing.key, firing.tick, kind="paused"):
            state.finish_tick(firing.key, firing.tick)
            log.info("%s: tick %s not fired: the job is paused (by %s%s)", firing.spec.name,
                     firing.tick.isoformat(), pause.get("who"), f": {pause['reason']}" if pause.get("reason") else "")
        return Outcome(firing, None, paused=pause)

    def report_missed(self) -> None:
        """Ticks missed by more than ``misfire_grace`` (the machine was down): said once per outage, with
        the true count, by whichever scheduler records the last of them as handled."""
        missed, self.missed = self.missed, []
        for key, name, count, last in missed:
            try:
                if not self.runner.state.claim_tick(key, last, kind="missed"):
                    continue  # another scheduler said it
                self.runner.state.finish_tick(key, last)
            except PinstripeError as exc:
                log.error("%s: could not record missed ticks: %s", name, exc.message)
                continue
            log.warning("%s: skipped %d tick(s) missed by more than misfire_grace (%gs), the last at %s "
                        "(set catch_up = True to run them late)", name, count, self.grace.total_seconds(),
                        last.isoformat())

    def _run(self, firing: Firing) -> Summary:
        options = RunOptions(args=firing.entry.args, trigger="schedule", tick=firing.tick,
                             skip_reason=firing.skip_reason)
        plan = self.runner.plan(firing.spec, options)
        if firing.spec.per_tenant_schedule:
            plan.admit = self.tenant_schedules.due_at(firing.spec, firing.tick, firing.entry.args)
        if firing.resume:
            done = self.runner.state.tick_tenants(firing.spec.name, firing.tick)
            if not plan.multi_tenant and None in done:
                return Summary(firing.spec.name)  # its one run already has a record
            plan.done = {t for t in done if t is not None}
        return self.runner.execute(plan, self.observer(firing))

    def _release(self, firing: Firing) -> None:
        try:
            self.runner.state.release_tick(firing.key, firing.tick)
        except PinstripeError:
            pass  # its claim ends with this process; the next scheduler resumes it then

    def orphans(self, now: datetime) -> list[Firing]:
        """Ticks whose runner stopped before every tenant had a status (killed, machine lost, store down):
        resumed within ``misfire_grace`` (or under ``catch_up``); older ones record what is left as skipped."""
        by_key: dict[str, Firing] = {}
        for spec in self.specs():
            if spec.per_tenant_schedule:
                probe = Firing(spec, 0, ScheduleEntry("tenant"), now)
                by_key[probe.key] = probe
                continue
            for index, entry in enumerate(spec.schedules):
                probe = Firing(spec, index, entry, now)
                by_key[probe.key] = probe
        firings = []
        for key, tick in self.runner.state.orphan_ticks():
            found = by_key.get(key)
            if found is None:
                continue
            late = not found.spec.catch_up and now - tick > self.grace
            firings.append(Firing(found.spec, found.index, found.entry, tick, resume=True,
                                  skip_reason="its tick was interrupted and is past misfire_grace" if late else None))
        return firings

    def fire_all(self, firings: list[Firing]) -> list[Outcome]:
        """Fire each in its own thread (a long job never delays another's start) and wait for all. On the
        fleet each firing's invocation keeps a bounded window of batches in flight, so jobs due at once
        share the workers (weighted by their ``priority``); the higher priorities start first."""
        outcomes: list[Outcome] = []
        threads = [threading.Thread(target=lambda f=f: outcomes.append(self.fire(f)), daemon=True)
                   for f in by_priority(firings)]
        for thread in threads:
            thread.start()
        stop = self.runner.stop
        for thread in threads:
            while thread.is_alive() and not stop.grace_over():
                thread.join(0.1)
        if stop.grace_over():  # runs still going after the grace period: record them, stop waiting
            self.runner.interrupt_active("still running after the grace period")
        return outcomes

    def preview(self, at: datetime | None = None) -> list[tuple[Firing, list[object]]]:
        """``run-due-jobs --dry-run``: what would fire in the minute of ``at``, and for which tenants.
        Claims nothing, runs nothing."""
        at = (at or self.now()).astimezone(UTC)
        minute = at.replace(second=0, microsecond=0)
        end = minute + timedelta(seconds=59, microseconds=999999)
        start = min(minute, at - self.grace) - timedelta(microseconds=1)
        result: list[tuple[Firing, list[object]]] = []
        for firing in self.due(start, end, at):
            plan = self.runner.plan(firing.spec, RunOptions(args=firing.entry.args, trigger="schedule",
                                                            tick=firing.tick))
            if firing.spec.per_tenant_schedule:
                plan.admit = self.tenant_schedules.due_at(firing.spec, firing.tick, firing.entry.args)
            result.append((firing, [None if t is None else t.id for t in plan.tenants()]))
        self.missed.clear()
        return result

    def run_due(self, at: datetime | None = None) -> list[Outcome]:
        """``run-due-jobs``: fire every tick due in the minute of ``at`` (and ticks since the last claimed
        one that are still within ``misfire_grace``, or all of them for ``catch_up`` jobs)."""
        at = (at or self.now()).astimezone(UTC)
        minute = at.replace(second=0, microsecond=0)
        end = minute + timedelta(seconds=59, microseconds=999999)
        default_start = min(minute, at - self.grace) - timedelta(microseconds=1)
        try:
            firings = self.orphans(at) + self.due(default_start, end, at, self.resume_points(default_start, at))
        except PinstripeError as exc:
            log.error("could not read the schedule's state: %s", exc.message)
            raise
        self.report_missed()
        return self.fire_all(firings)

    def resume_points(self, before: datetime, at: datetime) -> dict[str, datetime]:
        """For each schedule whose last claimed tick is older than ``before``: look for missed ticks from
        there, so they are fired, caught up or reported (once) as skipped."""
        starts = {}
        for spec in self.specs():
            entries = [ScheduleEntry("tenant")] if spec.per_tenant_schedule else spec.schedules
            for index, entry in enumerate(entries):
                key = Firing(spec, index, entry, at).key
                last = self.runner.state.last_claimed_tick(key)
                if last is not None and last < before:
                    starts[key] = last  # however long ago: the count of missed ticks is the true one
        return starts

    # -- the long-running bot ----------------------------------------------------------------------
    def loop(self, since: datetime | None = None) -> None:
        """Sleep until the next tick, fire what is due in threads, repeat until the stop flag is set.
        ``since``: treat it as the last time the bot looked, so ticks after it are due at once."""
        stop = self.runner.stop
        last = since or self.now()
        if since is None:  # ticks missed while no bot was running (restart, deploy): due now
            self._start_threads(self._guarded(lambda: self.orphans(last) + self.due(
                last, last, last, self.resume_points(last, last))))
            self.report_missed()
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
            self._start_threads(self._guarded(functools.partial(self.orphans, now)) + self.due(last, now, now))
            self.report_missed()
            last = max(last, now)

    def _guarded(self, find: Callable[[], list[Firing]]) -> list[Firing]:
        """The bot goes on when the store is down: one clear line, and the next tick tries again."""
        try:
            return find()
        except PinstripeError as exc:
            log.error("could not look for ticks to resume: %s", exc.message)
            return []

    def _start_threads(self, firings: list[Firing]) -> None:
        for firing in by_priority(firings):  # as fire_all
            thread = threading.Thread(target=self._fire_in_thread, args=(firing,), daemon=True,
                                      name=f"bot-{firing.spec.name}")
            self.threads.add(thread)
            thread.start()

    def _fire_in_thread(self, firing: Firing) -> None:
        try:
            self.fire(firing)
        except Exception:  # a bug of ours: the traceback is for us, the bot goes on
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
