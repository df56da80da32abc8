"""Runs one job over its tenants and returns a ``Summary``. The CLI, the Python API, nested calls and
the scheduler all go through ``Runner.run``. Never imports rich: progress goes to an ``Observer``."""
from __future__ import annotations

import queue
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from .config import Settings
from .errors import ConfigError, JobFailed, UsageError
from .loading import describe_exception, error_location
from .registry import JobRegistry, JobSpec
from .results import ALREADY_RUNNING, FAILED, INTERRUPTED, SKIPPED, SUCCEEDED, RunResult, Summary, job_traceback
from .tenants import Tenant, TenantQuery, TenantSource, open_source
from .workspace import ServiceCleanupError, ServiceFactories, Workspace, current_workspace
from .arguments import bind_arguments

if TYPE_CHECKING:
    from .state import StateStore

LOCK_POLL_S = 0.2
_OPEN_LOCK = threading.Lock()


@dataclass
class RunOptions:
    args: tuple = ()
    params: dict = field(default_factory=dict)
    tenant_ids: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    fail_fast: bool = False
    concurrency: int | None = None
    shard: tuple[int, int] | None = None
    trigger: str = "manual"
    tick: Any = None  # the scheduled tick (a datetime) when the scheduler fires the run
    wait: bool = False  # wait for the overlap lock instead of skipping
    only_failed: bool = False  # only tenants whose last run of this job failed
    keep_runs: bool = False


class Observer(Protocol):
    def started(self, plan: "Plan") -> None: ...

    def run_started(self, tenant: Tenant | None) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...

    def finished(self, summary: Summary) -> None: ...


class NullObserver:
    def started(self, plan: "Plan") -> None:
        pass

    def run_started(self, tenant: Tenant | None) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        pass

    def finished(self, summary: Summary) -> None:
        pass


class StopFlag:
    """Set from a signal handler; the fan-out loop checks it before starting each tenant."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: int | None = None

    def request(self, signum: int) -> None:
        self.signal = self.signal or signum
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()


@dataclass
class Plan:
    spec: JobSpec
    args: tuple
    params: dict
    options: RunOptions
    query: TenantQuery | None = None
    fixed: list[Tenant] | None = None  # tenants already read (for --tenant)

    @property
    def multi_tenant(self) -> bool:
        return self.query is not None

    def tenants(self) -> Iterator[Tenant | None]:
        if not self.multi_tenant:
            yield None
            return
        source = self.fixed if self.fixed is not None else self.query
        shard = self.options.shard
        for tenant in source:
            if shard is None or shard_of(tenant.id, shard[1]) == shard[0]:
                yield tenant

    def count(self) -> int:
        if not self.multi_tenant:
            return 1
        if self.fixed is None and self.options.shard is None:
            return self.query.count()
        return sum(1 for _ in self.tenants())


def shard_of(tenant_id: Any, shards: int) -> int:
    """A stable shard number for a tenant id (CRC-32 of its text: the same on every machine and run)."""
    return zlib.crc32(str(tenant_id).encode("utf-8")) % shards


class Runner:
    def __init__(self, settings: Settings, registry: JobRegistry | None = None, *, stop: StopFlag | None = None,
                 clock: Callable[[], float] = time.perf_counter, state: "StateStore | None" = None,
                 sleep: Callable[[float], Any] | None = None):
        self.settings = settings
        self.registry = registry or JobRegistry(settings)
        self.factories = ServiceFactories(settings.services)
        self.stop = stop or StopFlag()
        self.clock = clock
        self.sleep = sleep or self.stop.event.wait
        self._source: TenantSource | None = None
        self._state = state
        self._active: dict[int, Any] = {}  # run id -> lease of runs in progress

    @property
    def state(self) -> "StateStore":
        if self._state is None:
            with _OPEN_LOCK:
                if self._state is None:
                    from .state import StateStore

                    self._state = StateStore(self.settings.state_url, history_days=self.settings.history_days)
        return self._state

    # -- tenants ------------------------------------------------------------------------------------
    @property
    def source(self) -> TenantSource:
        if self._source is None:
            if self.settings.tenants is None:
                raise ConfigError("No tenant source is configured.",
                                  "Set `tenants` in pinstripe.toml or pass --tenants / PINSTRIPE_TENANTS.")
            self._source = open_source(self.settings.tenants, self.settings.tenants_table)
        return self._source

    def tenant_query(self, spec: JobSpec) -> TenantQuery:
        query = TenantQuery(self.source)
        if spec.tenants_filter is None:
            return query
        try:
            narrowed = spec.tenants_filter(query)
        except Exception as exc:
            _, line = error_location(exc, str(spec.path))
            raise ConfigError(f"tenants_filter of job '{spec.name}' raised at {spec.path}:{line}: "
                              f"{describe_exception(exc)}") from exc
        if not isinstance(narrowed, TenantQuery):
            raise ConfigError(f"tenants_filter of job '{spec.name}' ({spec.path}) returned "
                              f"{type(narrowed).__name__}, not the tenant query.",
                              "Return the narrowed query, e.g. `return tenants.where(active=True)`.")
        return narrowed

    # -- planning ----------------------------------------------------------------------------------
    def plan(self, job: str | JobSpec, options: RunOptions) -> Plan:
        spec = job if isinstance(job, JobSpec) else self.registry.load(job)
        args, params = bind_arguments(spec.run, spec.name, options.args, options.params)
        if options.shard is not None:
            k, n = options.shard
            if n < 1 or not 0 <= k < n:
                raise UsageError(f"--shard {k}/{n} is out of range: K must be 0..N-1 and N at least 1.",
                                 "Example: --shard 0/4 ... --shard 3/4 (K is 0-based, like JOB_COMPLETION_INDEX).")
        if not spec.multi_tenant:
            if options.tenant_ids or options.exclude_ids:
                raise UsageError(f"Job '{spec.name}' does not run per tenant, so --tenant / --exclude-tenant "
                                 "do not apply.", "Drop those options, or set multi_tenant = True in the job.")
            return Plan(spec, args, params, options)
        query = self.tenant_query(spec)
        if options.exclude_ids:
            query = query.without_ids(options.exclude_ids)
        plan = Plan(spec, args, params, options, query=query)
        if options.tenant_ids:
            plan.fixed = self._fixed_tenants(spec, query, options.tenant_ids)
        if options.only_failed:
            failed = set(self.state.failed_tenants(spec.name))
            candidates = plan.fixed if plan.fixed is not None else query.only_ids(failed)
            plan.fixed = [t for t in candidates if str(t.id) in failed]
        return plan

    def _fixed_tenants(self, spec: JobSpec, query: TenantQuery, ids: tuple[str, ...]) -> list[Tenant]:
        found = list(query.only_ids(ids))
        missing = [i for i in dict.fromkeys(ids) if i not in {str(t.id) for t in found}]
        if missing:
            in_source = {str(t.id) for t in query.unfiltered().only_ids(missing)}
            problems = []
            for tenant_id in missing:
                if tenant_id in in_source:
                    problems.append(f"'{tenant_id}' is excluded by the job's tenants_filter or --exclude-tenant")
                else:
                    problems.append(f"'{tenant_id}' is not in {self.source.description}")
            raise UsageError(f"--tenant for job '{spec.name}': " + "; ".join(problems) + ".",
                             f"Run `pinstripe run-background-job --name {spec.name} --dry-run` to list the tenants "
                             "it would run for.")
        return found

    # -- running -----------------------------------------------------------------------------------
    def run(self, job: str | JobSpec, options: RunOptions | None = None, observer: Observer | None = None) -> Summary:
        plan = self.plan(job, options or RunOptions())
        return self.execute(plan, observer or NullObserver())

    def execute(self, plan: Plan, observer: Observer) -> Summary:
        summary = Summary(plan.spec.name, runs=[] if plan.options.keep_runs else None)
        observer.started(plan)
        started = self.clock()
        concurrency = plan.options.concurrency or plan.spec.concurrency
        tenants = plan.tenants()
        try:
            if plan.spec.is_async:
                import asyncio

                asyncio.run(self._fan_out_async(plan, tenants, concurrency, observer, summary))
            elif concurrency > 1:
                self._fan_out_threads(plan, tenants, concurrency, observer, summary)
            else:
                self._fan_out_inline(plan, tenants, observer, summary)
        finally:
            summary.duration_s = self.clock() - started
            summary.signal = self.stop.signal
        observer.finished(summary)
        return summary

    def _should_stop(self, plan: Plan, summary: Summary) -> str | None:
        if self.stop.requested:
            return "interrupted"
        if plan.options.fail_fast and summary.failures:
            return "fail-fast: an earlier tenant failed"
        return None

    def _record(self, result: RunResult, observer: Observer, summary: Summary) -> None:
        summary.add(result)
        observer.run_finished(result)

    def _skip_rest(self, tenants: Iterable[Tenant | None], reason: str, observer: Observer, summary: Summary) -> None:
        for tenant in tenants:
            self._record(RunResult(_tid(tenant), SKIPPED, reason=reason), observer, summary)

    def _fan_out_inline(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer,
                        summary: Summary) -> None:
        for tenant in tenants:
            reason = self._should_stop(plan, summary)
            if reason:
                self._record(RunResult(_tid(tenant), SKIPPED, reason=reason), observer, summary)
                return self._skip_rest(tenants, reason, observer, summary)
            observer.run_started(tenant)
            self._record(self.run_one(plan, tenant), observer, summary)

    def _fan_out_threads(self, plan: Plan, tenants: Iterator[Tenant | None], workers: int, observer: Observer,
                         summary: Summary) -> None:
        todo: queue.Queue = queue.Queue()
        done: queue.Queue = queue.Queue()

        def work() -> None:
            while (item := todo.get()) is not _STOP:
                done.put(self.run_one(plan, item))

        threads = [threading.Thread(target=work, daemon=True, name=f"pinstripe-{i}") for i in range(workers)]
        for thread in threads:
            thread.start()
        in_flight = 0
        try:
            for tenant in tenants:
                while in_flight >= workers:
                    self._record(done.get(), observer, summary)
                    in_flight -= 1
                reason = self._should_stop(plan, summary)
                if reason:
                    self._record(RunResult(_tid(tenant), SKIPPED, reason=reason), observer, summary)
                    self._skip_rest(tenants, reason, observer, summary)
                    break
                observer.run_started(tenant)
                todo.put(tenant)
                in_flight += 1
            while in_flight:
                self._record(done.get(), observer, summary)
                in_flight -= 1
        finally:
            for _ in threads:
                todo.put(_STOP)

    async def _fan_out_async(self, plan: Plan, tenants: Iterator[Tenant | None], limit: int, observer: Observer,
                             summary: Summary) -> None:
        import asyncio

        slots = asyncio.Semaphore(limit)
        tasks: set = set()

        async def one(tenant: Tenant | None) -> None:
            try:
                self._record(await self.arun_one(plan, tenant), observer, summary)
            finally:
                slots.release()

        try:
            for tenant in tenants:
                await slots.acquire()
                reason = self._should_stop(plan, summary)
                if reason:
                    slots.release()
                    self._record(RunResult(_tid(tenant), SKIPPED, reason=reason), observer, summary)
                    self._skip_rest(tenants, reason, observer, summary)
                    break
                observer.run_started(tenant)
                task = asyncio.create_task(one(tenant))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    # -- one tenant --------------------------------------------------------------------------------
    def _workspace(self, plan: Plan, tenant: Tenant | None) -> Workspace:
        return Workspace(job=plan.spec.name, tenant=tenant, args=plan.args, params=plan.params,
                         factories=self.factories, nested=self.run_nested, tick=plan.options.tick)

    def _lock(self, plan: Plan, tenant: Tenant | None):
        """Start the run's history row, taking the (job, tenant) lock unless overlap = "allow".
        Returns the lease, or None when another live run holds the lock."""
        return self.state.begin_run(plan.spec.name, _tid(tenant), plan.options.trigger, tick=plan.options.tick,
                                    lock=plan.spec.overlap != "allow")

    def _waits(self, plan: Plan) -> bool:
        return (plan.options.wait or plan.spec.overlap == "wait") and not self.stop.requested

    def _locked_out(self, plan: Plan, tenant: Tenant | None) -> RunResult:
        reason = "interrupted while waiting for the lock" if self.stop.requested else ALREADY_RUNNING
        self.state.record(plan.spec.name, _tid(tenant), plan.options.trigger, SKIPPED, error=reason,
                          tick=plan.options.tick)
        return RunResult(_tid(tenant), SKIPPED, reason=reason)

    def run_one(self, plan: Plan, tenant: Tenant | None) -> RunResult:
        lease = self._lock(plan, tenant)
        while lease is None and self._waits(plan):
            self.sleep(LOCK_POLL_S)
            lease = self._lock(plan, tenant)
        if lease is None:
            return self._locked_out(plan, tenant)
        self._active[lease.run_id] = lease
        workspace = self._workspace(plan, tenant)
        token = current_workspace.set(workspace)
        started = self.clock()
        try:
            value = plan.spec.run(workspace, *plan.args, **plan.params)
            if _is_coroutine(value):  # a plain function that returned a coroutine
                import asyncio

                value = asyncio.run(value)
        except Exception as exc:
            return self._finish(plan, lease, tenant, workspace, started, exc)
        finally:
            current_workspace.reset(token)
        return self._finish(plan, lease, tenant, workspace, started, None, value)

    async def arun_one(self, plan: Plan, tenant: Tenant | None) -> RunResult:
        import asyncio

        lease = self._lock(plan, tenant)
        while lease is None and self._waits(plan):
            await asyncio.sleep(LOCK_POLL_S)
            lease = self._lock(plan, tenant)
        if lease is None:
            return self._locked_out(plan, tenant)
        self._active[lease.run_id] = lease
        workspace = self._workspace(plan, tenant)
        token = current_workspace.set(workspace)
        started = self.clock()
        try:
            value = await plan.spec.run(workspace, *plan.args, **plan.params)
        except Exception as exc:
            return self._finish(plan, lease, tenant, workspace, started, exc)
        finally:
            current_workspace.reset(token)
        return self._finish(plan, lease, tenant, workspace, started, None, value)

    def _finish(self, plan: Plan, lease, tenant: Tenant | None, workspace: Workspace, started: float,
                exc: BaseException | None, value: Any = None) -> RunResult:
        try:
            workspace.close()
        except ServiceCleanupError as cleanup:
            exc = exc or cleanup
        duration = self.clock() - started
        if exc is None:
            result = RunResult(_tid(tenant), SUCCEEDED, duration, value=value)
        else:
            result = RunResult(_tid(tenant), FAILED, duration, error=describe_exception(exc),
                               traceback=job_traceback(exc, plan.spec.path), exception=exc)
        if self._active.pop(lease.run_id, None) is not None:
            self.state.end_run(lease, result.status, result.error)
        return result

    def interrupt_active(self, reason: str) -> int:
        """Record every run still in progress as interrupted (used when a process must stop now)."""
        count = 0
        for run_id in list(self._active):
            lease = self._active.pop(run_id, None)
            if lease is not None:
                self.state.end_run(lease, INTERRUPTED, reason)
                count += 1
        return count

    # -- nested calls ------------------------------------------------------------------------------
    def run_nested(self, name: str, args: tuple, params: dict, workspace: Workspace | None) -> Summary:
        """``ctx.run_background_job``: inside a tenant's workspace, for that tenant only."""
        spec = self.registry.load(name)
        options = RunOptions(args=args, params=params, trigger="api", keep_runs=True)
        tenant = workspace.tenant if workspace is not None else None
        if tenant is not None and spec.multi_tenant:
            plan = self.plan(spec, options)
            plan.fixed = list(plan.query.only_ids([tenant.id]))
            if not plan.fixed:
                summary = Summary(spec.name, runs=[])
                summary.add(RunResult(tenant.id, SKIPPED, reason="not matched by the job's tenants_filter"))
                return summary
            summary = self.execute(plan, NullObserver())
        else:
            summary = self.run(spec, options)
        if summary.failures:
            raise JobFailed(summary) from summary.failures[0].exception
        return summary


_STOP = object()


def _is_coroutine(value: Any) -> bool:
    return type(value).__name__ == "coroutine" and hasattr(value, "send")


def _tid(tenant: Tenant | None) -> Any:
    return None if tenant is None else tenant.id

