"""Runs one job over its tenants and returns a ``Summary``. The CLI, the Python API, nested calls and
the scheduler all go through ``Runner.run``. Never imports rich: progress goes to an ``Observer``.

Per tenant: take the overlap lock and start the history row, build a fresh workspace, call the job
(here, or in a child process for ``isolation = "process"`` and for timed plain jobs), retry as the job
says, and record the outcome. How tenants are spread (one by one, threads, asyncio tasks) is in
``fanout.py``.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .arguments import bind_arguments
from .config import Settings
from .errors import ConfigError, JobFailed, PinstripeError, UsageError, cap, mask_secrets
from .loading import describe_exception, error_location
from .registry import JobRegistry, JobSpec
from .results import (ALREADY_RUNNING, AT_CAP, FAILED, INTERRUPTED, SKIPPED, SUCCEEDED, TIMED_OUT, RunResult, Summary,
                      job_traceback, tenant_id as _tid)
from .aio import is_coroutine, run_coroutine
from .plan import NullObserver, Observer, Plan, RunOptions, spread_offset
from .signals import RunInterrupted, StopFlag
from .tenants import Tenant, TenantQuery, TenantSource, open_source
from .workspace import ServiceCleanupError, ServiceConfigError, ServiceFactories, Workspace, current_workspace

if TYPE_CHECKING:
    from .state import Lease, StateStore

LOCK_POLL_S = 0.2
MAX_ERROR = 4000  # what is kept of a job's error message and traceback (linear to handle, bounded to keep)
MAX_TRACEBACK = 20000
STATE_DOWN = "state store unavailable"
_OPEN_LOCK = threading.Lock()


class JobTimedOut(Exception):
    """The run took longer than its timeout."""


def backoff_delay(base: float, attempt: int, rand: Callable[[], float] | None = None) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, scaled by a random factor in [0.5, 1.5)."""
    if rand is None:
        import random

        rand = random.random
    return base * (2 ** (attempt - 1)) * (0.5 + rand())


class Runner:
    def __init__(self, settings: Settings, registry: JobRegistry | None = None, *, stop: StopFlag | None = None,
                 clock: Callable[[], float] = time.perf_counter, state: "StateStore | None" = None,
                 sleep: Callable[[float], Any] | None = None):
        self.settings = settings
        self.registry = registry or JobRegistry(settings)
        self.factories = ServiceFactories(settings.services)
        self.stop = stop or StopFlag()
        self.clock = clock
        self.sleep = sleep or self.stop.event.wait  # wakes at once when a stop is requested
        self._source: TenantSource | None = None
        self._state = state
        self._active: dict[int, Any] = {}  # run id -> lease of runs in progress
        self.pid = os.getpid()  # a job that forks: its child ends at once, the fan-out goes on only here
        self.state_error: str | None = None  # the state store became unavailable during this run
        self.config_error: str | None = None  # a service could not be set up: a configuration error, not the job's

    @property
    def state(self) -> "StateStore":
        if self._state is None:
            with _OPEN_LOCK:
                if self._state is None:
                    from .state import open_store

                    self._state = open_store(self.settings, cancelled=self.stop.grace_over,
                                             guard=self.stop.interruptible_write)
        return self._state

    def close(self) -> None:
        """Release the state store's connection and the tenant source; runs still open (the caller was
        interrupted) are recorded as interrupted."""
        if self._state is not None:
            self.interrupt_active("stopped before it finished")
            self._state.close()
            self._state = None
        if self._source is not None:
            self._source.close()
            self._source = None

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
        _check_options(options)
        if not spec.multi_tenant:
            if options.tenant_ids or options.exclude_ids or options.only_failed:
                raise UsageError(f"Job '{spec.name}' does not run per tenant, so --tenant, --exclude-tenant and "
                                 "--only-failed do not apply.", "Drop those options, or set multi_tenant = True.")
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
        from .fanout import fan_out

        summary = Summary(plan.spec.name, runs=[] if plan.options.keep_runs else None)
        plan.observer = observer
        executor = self.executor(plan)
        if executor is not None:
            with self.stop.interruptible():
                executor.check(plan)  # a fleet that cannot work is a configuration error before anything runs
        tenants = plan.tenants()
        with self.stop.interruptible():  # a source that never answers does not outlast a signal
            first = next(tenants, _END)  # a broken tenant source fails here, before anything is printed or run
        tenants = _guarded(itertools.chain([first], tenants) if first is not _END else iter(()), summary, self.stop)
        if executor is None and plan.multi_tenant and not plan.spread:
            tenants = self._claiming(plan, tenants, summary)
        observer.started(plan)
        started = self.clock()
        begun = self._quietly(lambda: self.state.begin_invocation(
            plan.invocation, plan.spec.name, plan.options.trigger, tick=plan.options.tick,
            args={"args": list(plan.options.args), "params": plan.options.params} if plan.options.args
            or plan.options.params else None))
        try:
            if executor is not None:
                executor.run(plan, tenants, observer, summary)
            else:
                fan_out(self, plan, tenants, observer, summary)
        finally:
            if plan.claims and not self.state_error:  # claimed, then never reached (a bug of ours): not lost
                self.record_skipped(plan, list(plan.claims), "not started: the run ended first")
            if self._state is not None:
                self._quietly(self._state.flush)
            summary.duration_s = self.clock() - started
            summary.signal = self.stop.signal
            if (self.state_error or self.config_error) and not summary.error:
                summary.error = self.state_error or self.config_error
            if begun and self._state is not None and not self.state_error:
                self._quietly(lambda: self._state.end_invocation(plan.invocation, summary.status,
                                                                 int(summary.exit_code), summary.counts))
        observer.finished(summary)
        return summary

    def executor(self, plan: Plan):
        """Where the tenants run: None for this machine (the fan-out strategies), or the Celery fleet."""
        if self.settings.executor != "celery":
            return None
        from .fleet import FleetExecutor

        return FleetExecutor(self, plan.options.deadline)

    def _claiming(self, plan: Plan, tenants: Iterator[Tenant | None], summary: Summary) -> Iterator[Tenant | None]:
        """Claim tenants a page ahead of running them (locks and ``queued`` rows in one transaction; see
        ``StateStore.claim``). Pages start at the concurrency and double while they go by fast (up to
        ``MAX_PAGE``), so slow jobs do not hold many tenants queued. Claiming stops with the run."""
        size = plan.concurrency
        while True:
            if self.stop_reason(plan, summary):
                yield from tenants
                return
            page = list(itertools.islice(tenants, size))
            if not page:
                return
            started = self.clock()
            self._quietly(lambda: plan.claims.update(self.state.claim(
                plan.spec.name, [_tid(t) for t in page], plan.options.trigger, tick=plan.options.tick,
                lock=plan.spec.overlap != "allow", invocation=plan.invocation)))
            yield from page
            if self.clock() - started < PAGE_FAST_S:
                size = min(size * 2, max(MAX_PAGE, plan.concurrency))
            else:
                size = max(plan.concurrency, size // 2)

    def _quietly(self, operation: Callable[[], Any]) -> bool:
        """Run a state store write; if the store is unavailable past its budget, note it (the run ends with
        exit 3 and every outcome still reported) and return False."""
        from .state import StateUnavailable

        try:
            operation()
            return True
        except StateUnavailable as exc:
            self.state_error = self.state_error or exc.render()
            return False

    def record_skipped(self, plan: Plan, tenants: list[Any], reason: str) -> None:
        """Tenants never started (a stop, --fail-fast, --max-failures): written to history, so that
        ``--only-failed`` picks them up."""
        if not tenants or reason == STATE_DOWN:
            return  # claimed rows stay queued: never started, resumable
        unclaimed = []
        for tenant in tenants:
            lease = plan.claims.pop(_key(tenant), None)
            if lease is None:
                unclaimed.append(tenant)
            else:  # claimed ahead: its queued row ends skipped
                self._quietly(lambda: self.state.end_run(lease, SKIPPED, reason, defer=True))
        if unclaimed:
            self._quietly(lambda: self.state.record_many(plan.spec.name, unclaimed, plan.options.trigger, SKIPPED,
                                                         invocation=plan.invocation, error=reason,
                                                         tick=plan.options.tick))

    def wait_for_start(self, plan: Plan, tenant: Tenant | None) -> bool:
        """With a spread: wait until this tenant's offset. False when a stop came first."""
        if not plan.spread or tenant is None:
            return True
        import time as _time

        if plan.spread_base is None:
            plan.spread_base = plan.options.tick.timestamp() if plan.options.tick else _time.time()
        delay = plan.spread_base + spread_offset(tenant.id, plan.spread) - _time.time()
        if delay > 0:
            self.stop.event.wait(delay)
        return not self.stop.requested

    def stop_reason(self, plan: Plan, summary: Summary) -> str | None:
        """Why no further tenant should start, or None."""
        if self.stop.requested:
            return "interrupted"
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
        return None

    # -- one tenant --------------------------------------------------------------------------------
    def _lock(self, plan: Plan, tenant: Tenant | None, attempt: int) -> "Lease | None":
        """Start the run's history row, taking the (job, tenant) lock unless overlap = "allow".
        Returns the lease, or None when another live run holds the lock."""
        claimed = plan.claims.pop(_key(_tid(tenant)), None) if attempt == 1 and plan.claims else None
        if claimed is not None and self.state.start(claimed):
            return claimed
        return self.state.begin_run(plan.spec.name, _tid(tenant), plan.options.trigger, tick=plan.options.tick,
                                    attempt=attempt, lock=plan.spec.overlap != "allow", invocation=plan.invocation)

    def _try_acquire(self, plan: Plan, tenant: Tenant | None, attempt: int, told: set[str]
                     ) -> "Lease | RunResult | None":
        """One try at what a run needs before it starts: a slot of its tenant (``tenant_concurrency``),
        then the (job, tenant) lock and history row. A lease: go. A result: do not run (skipped, and
        recorded). None: wait and try again (``overlap = "wait"`` or ``--wait``; told once why)."""
        from .state import StateUnavailable

        cap = self.settings.tenant_concurrency
        slot = None
        if cap and tenant is not None:
            try:
                slot = self.state.take_slot(tenant.id, cap)
            except StateUnavailable as exc:
                self.state_error = self.state_error or exc.render()
                return RunResult(_tid(tenant), SKIPPED, reason=STATE_DOWN)
            if slot is None:
                if not (self._waits(plan) or plan.spec.overlap == "allow"):
                    return self._locked_out(plan, tenant, f"{AT_CAP} ({cap})")
                if "cap" not in told:
                    told.add("cap")
                    plan.observer.waiting(_tid(tenant), f"tenant_concurrency = {cap}: that many runs of this "
                                                        "tenant are going")
                return None
        lease = self._take_lock(plan, tenant, attempt)
        if isinstance(lease, RunResult) or lease is None:
            if slot is not None:
                self._quietly(lambda: self.state.release_slot(slot))
            if lease is None and self._waits(plan):
                if "lock" not in told:
                    told.add("lock")
                    self._tell_waiting(plan, tenant)
                return None
            return lease if lease is not None else self._locked_out(plan, tenant)
        lease.slot = slot
        return lease

    def _tell_waiting(self, plan: Plan, tenant: Tenant | None) -> None:
        from .state import StateUnavailable

        try:
            holder = self.state.holder(plan.spec.name, _tid(tenant))
        except StateUnavailable:
            holder = None
        plan.observer.waiting(_tid(tenant), holder or "its holder just finished")

    def _waits(self, plan: Plan) -> bool:
        return (plan.options.wait or plan.spec.overlap == "wait") and not self.stop.requested

    def _locked_out(self, plan: Plan, tenant: Tenant | None, why: str = ALREADY_RUNNING) -> RunResult:
        reason = "interrupted while waiting for the lock" if self.stop.requested else why
        self.record_skipped(plan, [_tid(tenant)], reason)
        return RunResult(_tid(tenant), SKIPPED, reason=reason)

    def _take_lock(self, plan: Plan, tenant: Tenant | None, attempt: int) -> "Lease | None | RunResult":
        """The lease, None when another live run holds the lock, or a skipped result when the state store
        is unavailable (nothing runs without its history row and lock)."""
        from .state import StateUnavailable

        try:
            return self._lock(plan, tenant, attempt)
        except StateUnavailable as exc:
            self.state_error = self.state_error or exc.render()
            return RunResult(_tid(tenant), SKIPPED, reason=STATE_DOWN)

    def run_one(self, plan: Plan, tenant: Tenant | None) -> RunResult:
        """All attempts of one tenant's run, in this thread."""
        attempts = 1 + plan.retries
        for attempt in range(1, attempts + 1):
            told: set[str] = set()
            lease = self._try_acquire(plan, tenant, attempt, told)
            while lease is None:
                self.sleep(LOCK_POLL_S)
                lease = self._try_acquire(plan, tenant, attempt, told)
            if isinstance(lease, RunResult):
                return lease
            self._active[lease.run_id] = lease
            if plan.isolated:
                from .isolation import run_in_child

                result = run_in_child(lambda: self._attempt_in_child(plan, tenant, attempt), _tid(tenant),
                                      timeout=plan.timeout, stopping=self.stop.grace_over, clock=self.clock)
            else:
                result = self.attempt_here(plan, tenant, attempt)
            _end_of_output()
            self._end(lease, result, attempt)
            if result.ok or attempt == attempts or result.status == INTERRUPTED or self.stop.requested \
                    or self.config_error:
                return _placed(result)
            delay = backoff_delay(plan.spec.retry_backoff, attempt)
            plan.observer.retrying(_tid(tenant), attempt, attempts, delay, result.error)
            self.sleep(delay)
        raise AssertionError("unreachable")

    async def arun_one(self, plan: Plan, tenant: Tenant | None) -> RunResult:
        """All attempts of one tenant's run of an ``async def`` job, as an asyncio task (not isolated:
        isolated async jobs go through ``run_one``, their child process runs the event loop)."""
        import asyncio

        attempts = 1 + plan.retries
        for attempt in range(1, attempts + 1):
            told: set[str] = set()
            lease = self._try_acquire(plan, tenant, attempt, told)
            while lease is None:
                await asyncio.sleep(LOCK_POLL_S)
                lease = self._try_acquire(plan, tenant, attempt, told)
            if isinstance(lease, RunResult):
                return lease
            self._active[lease.run_id] = lease
            result = await self._aattempt_here(plan, tenant, attempt)
            _end_of_output()
            self._end(lease, result, attempt)
            if result.ok or attempt == attempts or result.status == INTERRUPTED or self.stop.requested \
                    or self.config_error:
                return _placed(result)
            delay = backoff_delay(plan.spec.retry_backoff, attempt)
            plan.observer.retrying(_tid(tenant), attempt, attempts, delay, result.error)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _workspace(self, plan: Plan, tenant: Tenant | None, attempt: int) -> Workspace:
        return Workspace(job=plan.spec.name, tenant=tenant, args=plan.args, params=plan.params,
                         factories=self.factories, nested=self.run_nested, tick=plan.options.tick, attempt=attempt)

    def _attempt_in_child(self, plan: Plan, tenant: Tenant | None, attempt: int) -> RunResult:
        """In a forked child: never use the parent's database connection (nested runs open their own)."""
        self._state = None
        self._active = {}
        self.pid = os.getpid()
        return self.attempt_here(plan, tenant, attempt, restore=False)

    def attempt_here(self, plan: Plan, tenant: Tenant | None, attempt: int, restore: bool = True) -> RunResult:
        """One attempt in this thread (a plain job; an async one gets its own event loop). ``restore``: put
        the working directory and environment back as they were (a job's chdir stays in its tenant)."""
        workspace = self._workspace(plan, tenant, attempt)
        token = current_workspace.set(workspace)
        saved = _Process.save() if restore else None
        started = self.clock()
        try:
            with self.stop.job_running():
                value = plan.spec.run(workspace, *plan.args, **plan.params)
                if is_coroutine(value):
                    value = run_coroutine(_with_timeout(value, plan.timeout))
        except (Exception, RunInterrupted, SystemExit) as exc:  # a job's sys.exit() fails its tenant only
            self._same_process()
            return self._finish(plan, tenant, workspace, started, exc)
        except BaseException as exc:
            self._same_process()
            if self.stop.armed and isinstance(exc, KeyboardInterrupt):  # raised by the job itself, not Ctrl-C
                return self._finish(plan, tenant, workspace, started, exc)
            _close_quietly(workspace)  # KeyboardInterrupt with no handler installed (the Python API): go
            raise
        finally:
            current_workspace.reset(token)
            if saved is not None:
                saved.restore()
        self._same_process()
        return self._finish(plan, tenant, workspace, started, None, value)

    def _same_process(self) -> None:
        """A job that forked and returned in its child: end that child now, silently."""
        if os.getpid() != self.pid:
            os._exit(0)

    async def _aattempt_here(self, plan: Plan, tenant: Tenant | None, attempt: int) -> RunResult:
        import asyncio

        workspace = self._workspace(plan, tenant, attempt)
        token = current_workspace.set(workspace)
        started = self.clock()
        try:
            value = await _with_timeout(plan.spec.run(workspace, *plan.args, **plan.params), plan.timeout)
        except asyncio.CancelledError as exc:
            return self._finish(plan, tenant, workspace, started, RunInterrupted(str(exc) or "cancelled"))
        except (Exception, SystemExit) as exc:
            return self._finish(plan, tenant, workspace, started, exc)
        except BaseException as exc:
            if self.stop.armed and isinstance(exc, KeyboardInterrupt):
                return self._finish(plan, tenant, workspace, started, exc)
            _close_quietly(workspace)
            raise
        finally:
            current_workspace.reset(token)
        return self._finish(plan, tenant, workspace, started, None, value)

    def _finish(self, plan: Plan, tenant: Tenant | None, workspace: Workspace, started: float,
                exc: BaseException | None, value: Any = None) -> RunResult:
        try:
            workspace.close()
        except ServiceCleanupError as cleanup:
            exc = exc or cleanup
        duration = self.clock() - started
        if exc is None:
            return RunResult(_tid(tenant), SUCCEEDED, duration, value=value)
        if isinstance(exc, RunInterrupted):
            return RunResult(_tid(tenant), INTERRUPTED, duration, error="interrupted before it finished")
        if isinstance(exc, JobTimedOut):
            return RunResult(_tid(tenant), TIMED_OUT, duration, error=f"timed out after {plan.timeout:g}s")
        if isinstance(exc, ServiceConfigError):  # the config's fault, not the job's: stop the run (exit 3)
            self.config_error = self.config_error or exc.render()
        return RunResult(_tid(tenant), FAILED, duration, error=mask_secrets(cap(describe_exception(exc), MAX_ERROR)),
                         traceback=mask_secrets(cap(job_traceback(exc, plan.spec.path), MAX_TRACEBACK)), exception=exc)

    def _end(self, lease: "Lease", result: RunResult, attempt: int) -> None:
        """Record the outcome; if the store stays unavailable, the result keeps its real status."""
        result.attempts = attempt
        if self._active.pop(lease.run_id, None) is not None:
            self._quietly(lambda: self.state.end_run(lease, result.status, result.error, traceback=result.traceback,
                                                     duration_s=result.duration_s, defer=True))

    def interrupt_active(self, reason: str) -> int:
        """Record every run still in progress as interrupted (used when a process must stop now)."""
        count = 0
        for run_id in list(self._active):
            lease = self._active.pop(run_id, None)
            if lease is not None:
                self._quietly(lambda: self.state.end_run(lease, INTERRUPTED, reason))
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


_END = object()
PAGE_FAST_S = 0.1  # a page of claimed tenants that went by faster than this: claim twice as many next
MAX_PAGE = 256


def _key(tenant_id: Any) -> str:
    """A tenant id as the state store keys it."""
    return "-" if tenant_id is None else str(tenant_id)


def _placed(result: RunResult) -> RunResult:
    """Where the run happened: this host and process (the JSON's runs[].host and pid)."""
    result.host, result.pid = _HOST, os.getpid()
    return result


_HOST = os.uname().nodename


def _end_of_output() -> None:
    """This thread's tenant is done: end its unterminated last line of output (see ``LineSink``)."""
    end_run = getattr(sys.stdout, "end_run", None)
    if end_run is not None:
        end_run()
    end_run = getattr(sys.stderr, "end_run", None)
    if end_run is not None:
        end_run()


def _close_quietly(workspace: Workspace) -> None:
    try:
        workspace.close()
    except ServiceCleanupError:
        pass


def _guarded(tenants: Iterator[Tenant | None], summary: Summary, stop: StopFlag) -> Iterator[Tenant | None]:
    """Stop cleanly when the tenant source breaks mid-stream (the error is kept on the summary: exit 3), or
    when a signal arrives while it is being read."""
    while True:
        try:
            with stop.interruptible():
                tenant = next(tenants)
        except StopIteration:
            return
        except RunInterrupted:
            summary.error = "Interrupted while reading tenants."
            return
        except PinstripeError as exc:
            summary.error = exc.render()
            return
        yield tenant


class _Process:
    """The working directory and environment before a tenant's run, put back after it."""

    __slots__ = ("cwd", "env")

    def __init__(self, cwd: str | None, env: dict[str, str]):
        self.cwd = cwd
        self.env = env

    @classmethod
    def save(cls) -> "_Process":
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        return cls(cwd, _environ_snapshot())

    def restore(self) -> None:
        if self.cwd is not None:
            try:
                if os.getcwd() != self.cwd:
                    os.chdir(self.cwd)
            except OSError:
                os.chdir(self.cwd)
        if _environ_snapshot() != self.env:  # rare: only then through os.environ (putenv/unsetenv)
            saved = {_text(k): _text(v) for k, v in self.env.items()}
            for key in set(os.environ) - set(saved):
                del os.environ[key]
            for key, value in saved.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value


def _environ_snapshot() -> dict:
    """The environment as stored (bytes on POSIX): copying it costs a microsecond, decoding it fifty."""
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _text(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _check_options(options: RunOptions) -> None:
    if options.shard is not None:
        k, n = options.shard
        if n < 1 or not 0 <= k < n:
            raise UsageError(f"--shard {k}/{n} is out of range: K must be 0..N-1 and N at least 1.",
                             "Example: --shard 0/4 ... --shard 3/4 (K is 0-based, like JOB_COMPLETION_INDEX).")
    for name, minimum in (("concurrency", 1), ("retries", 0), ("max_failures", 1)):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, int) or value < minimum):
            raise UsageError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    if options.timeout is not None and not options.timeout > 0:
        raise UsageError(f"timeout must be a number of seconds > 0, got {options.timeout!r}.")


async def _with_timeout(awaitable, timeout: float | None):
    if not timeout:
        return await awaitable
    import asyncio

    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise JobTimedOut() from None
