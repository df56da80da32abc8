"""Runs one job over its tenants and returns a ``Summary``. The CLI, the Python API, nested calls, the
scheduler and Celery workers all go through it. Never imports rich: progress goes to an ``Observer``.

The pieces, each with one job: ``planner`` (a checked plan and its tenant query), ``leases`` (claims,
locks, slots and the history rows that record each run), ``attempts`` (one call of the job: workspace,
timeout, child process). Where and how tenants are spread is an ``Executor`` (``executors``: inline,
threads, asyncio tasks, or the Celery fleet, chosen by name); executors call back into the per-tenant
path (``run_one``), which reads top to bottom here.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.config import Settings
from pinstripe_jobs.database.django import uses_django
from pinstripe_jobs.errors import JobFailed, RetryAfter
from pinstripe_jobs.execution.attempts import Attempts, Tries, end_of_output
from pinstripe_jobs.execution.executors.base import Defer, Executor
from pinstripe_jobs.execution.executors.registry import executor_for
from pinstripe_jobs.execution.invocations import end_invocation, open_invocation, scanning
from pinstripe_jobs.execution.leases import STATE_DOWN, Leases
from pinstripe_jobs.execution.planner import Planner, guarded_tenants
from pinstripe_jobs.execution.signals import StopFlag
from pinstripe_jobs.execution.steering import pause_after_failures, skip_paused, watch_cancel
from pinstripe_jobs.execution.workspace import ServiceFactories, Workspace
from pinstripe_jobs.model.plan import Plan, RunOptions, spread_offset
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import LimitTally, NullObserver, Observer, Tee
from pinstripe_jobs.registry.jobs import JobRegistry, JobSpec

if TYPE_CHECKING:
    from pinstripe_jobs.store.state import StateStore
    from pinstripe_jobs.tenants import Tenant, TenantQuery

LOCK_POLL_S = 0.2
_OPEN_LOCK = threading.Lock()
_HOST = os.uname().nodename


class Runner:
    def __init__(self, settings: Settings, registry: JobRegistry | None = None, *, stop: StopFlag | None = None,
                 clock: Callable[[], float] = time.perf_counter, state: StateStore | None = None,
                 sleep: Callable[[float], Any] | None = None):
        self.settings = settings
        self.registry = registry or JobRegistry(settings)
        self.stop = stop or StopFlag()
        self.clock = clock
        self.sleep = sleep or self.stop.event.wait  # wakes at once when a stop is requested
        self._state = state
        self.planner = Planner(settings, self.registry, lambda job: self.state.failed_tenants(job))
        self.leases = Leases(lambda: self.state, self.stop, settings.tenant_concurrency, clock)
        django = uses_django(settings.tenants, settings.django_settings)
        factories = ServiceFactories(settings.services, settings.database,
                                     (django, settings.django_settings) if django else None)
        self.attempts = Attempts(factories, self.stop, clock, self.run_nested,
                                 limits=(dict(settings.limits), lambda: self.state))
        self.cancelled: dict[str, str] = {}  # invocation -> why, once cancelled (`pinstripe cancel`)
        self.stop_on_cancel = True  # a cancel also stops this runner's StopFlag (not for a scheduler's runner)

    @property
    def state(self) -> StateStore:
        state = self._state
        if state is None:
            with _OPEN_LOCK:
                state = self._state
                if state is None:
                    from pinstripe_jobs.store.state import open_store

                    state = open_store(self.settings, cancelled=self.stop.grace_over,
                                       guard=self.stop.interruptible_write)
                    if state is None:  # only a read-only open finds no store
                        raise AssertionError("open_store returned no store for a read-write open")
                    self._state = state
        return state

    @property
    def state_error(self) -> str | None:
        """The state store became unavailable during this run (exit 3)."""
        return self.leases.state_error

    @state_error.setter
    def state_error(self, value: str | None) -> None:
        self.leases.state_error = value

    @property
    def config_error(self) -> str | None:
        """A service could not be set up: a configuration error, not the job's (exit 3)."""
        return self.attempts.config_error

    @config_error.setter
    def config_error(self, value: str | None) -> None:
        self.attempts.config_error = value

    def close(self) -> None:
        """Release the state store's connection and the tenant source; runs still open (the caller was
        interrupted) are recorded as interrupted."""
        if self._state is not None:
            self.attempts.limiter.close()
            self.interrupt_active("stopped before it finished")
            self._state.close()
            self._state = None
        self.planner.close()

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, job: str | JobSpec, options: RunOptions) -> Plan:
        return self.planner.plan(job, options)

    def tenant_query(self, spec: JobSpec) -> TenantQuery:
        return self.planner.tenant_query(spec)

    # -- running -----------------------------------------------------------------------------------
    def run(self, job: str | JobSpec, options: RunOptions | None = None, observer: Observer | None = None) -> Summary:
        plan = self.plan(job, options or RunOptions())
        return self.execute(plan, observer or NullObserver())

    def execute(self, plan: Plan, observer: Observer) -> Summary:
        summary = Summary(plan.spec.name, runs=[] if plan.options.keep_runs else None)
        executor = self.executor(plan)
        with self.stop.interruptible():
            executor.check(plan)  # a fleet that cannot work is a configuration error before anything runs
        go: list[bool] = []  # recorded before any tenant runs; nothing to run: a finished key, a live invocation
        begun = self.leases.quietly(lambda: go.append(open_invocation(self.state, self.settings, plan, summary,
                                                                      self.sleep, lambda: self.stop.requested)))
        summary.invocation = plan.invocation
        if begun and not go[0]:
            observer.started(plan)
            observer.finished(summary)
            return summary
        selected = scanning(self.planner.checked(plan.tenants()), plan.invocation, self.state, len(plan.done))
        with self.stop.interruptible():  # a source that never answers does not outlast a signal
            first = list(itertools.islice(selected, 1))  # a broken source fails here, before anything is printed
        tenants = guarded_tenants(itertools.chain(first, selected), summary, self.stop)
        tenants = skip_paused(self, plan, tenants, observer, summary) if plan.multi_tenant else tenants
        plan.observer = Tee(observer, LimitTally(summary))
        if executor.claims_ahead and plan.multi_tenant and not plan.spread:
            tenants = self.leases.claiming(plan, tenants, lambda: self.stop_reason(plan, summary))
        observer.started(plan)
        started = self.clock()
        ran = False
        try:
            with watch_cancel(self, plan):  # `pinstripe cancel` from anywhere: polled about once a second
                executor.run(plan, tenants, observer, summary)
            ran = True
        finally:
            tenants.close()  # a claim still in flight is in before what was never started is recorded
            if plan.io_pool is not None:
                plan.io_pool.shutdown(wait=True)
            if plan.claims:  # claimed, then never reached (a bug of ours): recorded, not lost
                self.record_skipped(plan, list(plan.claims), "not started: the run ended first")
            if self._state is not None:
                self.leases.quietly(self._state.flush)
            summary.duration_s = self.clock() - started
            summary.signal, summary.cancelled = self.stop.signal, self.cancelled.get(plan.invocation)
            if (self.state_error or self.config_error) and not summary.error:
                summary.error = self.state_error or self.config_error
            if ran:  # report files: one that cannot be written is the run's error (exit 3)
                observer.closing(summary)
            state = self._state
            if begun and state is not None and not self.state_error:
                self.leases.quietly(lambda: end_invocation(state, plan, summary))
                self.leases.quietly(lambda: pause_after_failures(self, plan, summary, self.settings.notify))
        observer.finished(summary)
        return summary

    def executor(self, plan: Plan) -> Executor:
        """Where and how the tenants run: the executor named by the settings (``executors.registry``)."""
        return executor_for(self.settings.executor, self, plan)

    def record_skipped(self, plan: Plan, tenants: list[Any], reason: str) -> None:
        self.leases.record_skipped(plan, tenants, reason)

    def interrupt_active(self, reason: str) -> int:
        return self.leases.interrupt_active(reason)

    def wait_for_start(self, plan: Plan, tenant: Tenant | None) -> bool:
        """With a spread: wait until this tenant's offset. False when a stop came first."""
        if not plan.spread or tenant is None:
            return True
        if plan.spread_base is None:
            plan.spread_base = plan.options.tick.timestamp() if plan.options.tick else time.time()
        delay = plan.spread_base + spread_offset(tenant.id, plan.spread) - time.time()
        if delay > 0:
            self.stop.event.wait(delay)
        return not self.stop.requested

    def stop_reason(self, plan: Plan, summary: Summary) -> str | None:
        """Why no further tenant should start, or None."""
        if self.stop.requested or plan.invocation in self.cancelled:  # a signal, or `pinstripe cancel`
            return self.cancelled.get(plan.invocation, "interrupted")
        if self.state_error:
            return STATE_DOWN
        if self.config_error:
            return "configuration error"
        if plan.options.skip_reason:
            return plan.options.skip_reason
        if not plan.multi_tenant and plan.options.shard and plan.options.shard[0] != 0:
            return "not this shard: a job that does not run per tenant runs on shard 0 only"
        if plan.options.fail_fast and summary.failures:
            return "fail-fast: an earlier tenant failed"
        limit = plan.options.max_failures
        if limit is not None and len(summary.failures) >= limit:
            return f"max failures ({limit}) reached"
        return summary.failure_brake(plan.max_failure_rate, plan.options.min_runs)

    # -- one tenant: lease, attempt, record, retry ---------------------------------------------------
    def run_one(self, plan: Plan, tenant: Tenant | None, observer: Observer, defer: Defer | None = None,
                tries: Tries | None = None) -> RunResult:
        """All attempts of one tenant's run in this thread (``Tries``; ``defer`` and ``tries``: ``TenantRunner``)."""
        if tries is None and (skipped := self._paced(plan, tenant, observer)) is not None:
            return skipped
        tries = tries or Tries(plan)
        while True:
            attempt, told = tries.next(), set[str]()
            lease = self.leases.acquire(plan, tenant, attempt, told, observer)
            while lease is None:  # overlap = "wait": the lock or the tenant's slots are held
                self.sleep(LOCK_POLL_S)
                lease = self.leases.acquire(plan, tenant, attempt, told, observer)
            if isinstance(lease, RunResult):  # not run: skipped (and recorded)
                return lease
            if plan.isolated:
                result = self.attempts.in_child(plan, tenant, attempt, self._forget_parent)
            else:
                result = self.attempts.here(plan, tenant, attempt)
            end_of_output()
            self.leases.end(lease, result, attempt)
            delay = tries.delay(result, self.stop.requested or bool(self.config_error), observer)
            if delay is None:
                return _placed(result)
            if defer is not None and isinstance(result.exception, RetryAfter):
                defer(self.clock() + delay, tries)
                return _placed(result)
            self.sleep(delay)

    async def arun_one(self, plan: Plan, tenant: Tenant | None, observer: Observer) -> RunResult:
        """All attempts of one tenant's run of an ``async def`` job, as an asyncio task (not isolated:
        isolated async jobs go through ``run_one``, their child process runs the event loop)."""
        import asyncio

        if plan.spec.rate_limit and (skipped := await asyncio.to_thread(self._paced, plan, tenant, observer)):
            return skipped
        tries = Tries(plan)
        while True:
            attempt, told = tries.next(), set[str]()
            lease = await self.leases.aacquire(plan, tenant, attempt, told, observer)
            while lease is None:
                await asyncio.sleep(LOCK_POLL_S)
                lease = await self.leases.aacquire(plan, tenant, attempt, told, observer)
            if isinstance(lease, RunResult):
                return lease
            result = await self.attempts.as_task(plan, tenant, attempt)
            end_of_output()
            self.leases.end(lease, result, attempt)
            delay = tries.delay(result, self.stop.requested or bool(self.config_error), observer)
            if delay is None:
                return _placed(result)
            await asyncio.sleep(delay)

    def _paced(self, plan: Plan, tenant: Tenant | None, observer: Observer) -> RunResult | None:  # rate_limit
        tid, told = (tenant.id if tenant is not None else None), plan.observer or observer
        if self.attempts.limiter.pace(plan.spec.name, plan.spec.rate_limit, lambda n, s: told.limit_waited(tid, n, s)):
            return None
        self.record_skipped(plan, [tid], "interrupted while waiting for the job's rate_limit")
        return RunResult(tid, Status.SKIPPED, reason="interrupted while waiting for the job's rate_limit")

    def _forget_parent(self) -> None:
        """In a forked child: never use the parent's database connection (nested runs open their own)."""
        self._state = None
        self.leases.active = {}

    # -- nested calls ------------------------------------------------------------------------------
    def run_nested(self, name: str, args: tuple[Any, ...], params: dict[str, Any], workspace: Workspace | None
                   ) -> Summary:
        """``ctx.run_background_job``: inside a tenant's workspace, for that tenant only."""
        spec = self.registry.load(name)
        plan = self.plan(spec, RunOptions(args=args, params=params, trigger="api", keep_runs=True))
        tenant = workspace.tenant if workspace is not None else None
        if tenant is not None and plan.query is not None:  # a job per tenant: this workspace's tenant only
            plan.fixed = list(plan.query.only_ids([tenant.id]))
            if not plan.fixed:
                summary = Summary(spec.name, runs=[])
                summary.add(RunResult(tenant.id, Status.SKIPPED, reason="not matched by the job's tenants_filter"))
                return summary
        summary = self.execute(plan, NullObserver())
        if summary.failures:
            raise JobFailed(summary) from summary.failures[0].exception
        return summary


def _placed(result: RunResult) -> RunResult:
    """Where the run happened: this host and process (the JSON's runs[].host and pid)."""
    result.host, result.pid = _HOST, os.getpid()
    return result

