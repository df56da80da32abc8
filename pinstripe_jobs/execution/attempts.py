"""One attempt of one tenant's run: a fresh workspace, the job called here (a plain job; an async one on
its own event loop, or as a task of the caller's loop) or in a forked child (``isolation = "process"``, and
timed plain jobs), and its outcome as a ``RunResult``. Retries, locks and history are the caller's: this
module knows nothing of the state store or the runner.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from pinstripe_jobs.errors import PermanentError, RetryAfter, cap, mask_secrets
from pinstripe_jobs.execution.aio import is_coroutine, run_coroutine
from pinstripe_jobs.execution.limits import Limit, Limiter, LimitSpec, LimitStore
from pinstripe_jobs.execution.signals import RunInterrupted, StopFlag
from pinstripe_jobs.execution.workspace import (
    Nested,
    ServiceCleanupError,
    ServiceConfigError,
    ServiceFactories,
    Workspace,
    current_workspace,
)
from pinstripe_jobs.model.plan import Plan
from pinstripe_jobs.model.results import FAILED, INTERRUPTED, SUCCEEDED, TIMED_OUT, RunResult, job_traceback
from pinstripe_jobs.model.results import tenant_id as _tid
from pinstripe_jobs.registry.loading import describe_exception

if TYPE_CHECKING:
    from pinstripe_jobs.tenants import Tenant

T = TypeVar("T")
MAX_ERROR = 4000  # what is kept of a job's error message and traceback (linear to handle, bounded to keep)
MAX_TRACEBACK = 20000
# Entered around each attempt with the job running inside it (telemetry: the run's span is the current context
# while the job runs, in its thread, task or child); what it yields is told the attempt's result.
AttemptScope = Callable[["Plan", "Tenant | None", int], AbstractContextManager[Callable[["RunResult"], None]]]


class JobTimedOut(Exception):
    """The run took longer than its timeout."""


def backoff_delay(base: float, attempt: int, rand: Callable[[], float] | None = None) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, scaled by a random factor in [0.5, 1.5)."""
    if rand is None:
        import random

        rand = random.random
    return float(base * (2 ** (attempt - 1)) * (0.5 + rand()))


def retryable(plan: Plan, result: RunResult) -> bool:
    """A failed attempt that may be retried: never a ``PermanentError`` or one of the job's ``give_up_on``;
    with ``retry_on``, only those (a timeout counts as ``TimeoutError``)."""
    spec = plan.spec
    exc: BaseException | None = result.exception
    if exc is None and result.status == TIMED_OUT:
        exc = TimeoutError()
    if isinstance(exc, PermanentError) or (spec.give_up_on and isinstance(exc, spec.give_up_on)):
        return False
    if spec.retry_on is not None:
        return isinstance(exc, spec.retry_on)
    return True


class Tries:
    """The attempts of one tenant's run: whether another follows, and after how long. A ``RetryAfter``
    counts against the job's ``max_retry_after``, any other failure against ``retries``."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.attempt = 0  # attempts made (each recorded)
        self.failed = 0  # ordinary failures retried so far
        self.after = 0  # RetryAfter honoured so far

    def next(self) -> int:
        """Start the next attempt: its number."""
        self.attempt += 1
        return self.attempt

    @property
    def most(self) -> int:
        """Attempts at most, as far as is known now (for the progress line)."""
        return 1 + self.plan.retries + self.after

    def delay(self, result: RunResult, stopping: bool, observer: Any) -> float | None:
        """None: this result is the run's outcome. Else the seconds until the next attempt (told to
        ``observer.retrying``): what ``RetryAfter`` asked for, or the backoff."""
        if result.ok or result.status == INTERRUPTED or stopping:
            return None
        exc = result.exception
        if isinstance(exc, RetryAfter):
            if self.after >= self.plan.spec.max_retry_after:
                return None
            self.after += 1
            delay = exc.seconds
        elif self.failed >= self.plan.retries or not retryable(self.plan, result):
            return None
        else:
            self.failed += 1
            delay = backoff_delay(self.plan.spec.retry_backoff, self.failed)
        observer.retrying(result.tenant, self.attempt, self.most, delay, result.error)
        return delay


class Attempts:
    """Calls a plan's job for one tenant. ``nested`` is handed to workspaces (``ctx.run_background_job``)."""

    def __init__(self, factories: ServiceFactories, stop: StopFlag, clock: Callable[[], float],
                 nested: Nested, limits: tuple[dict[str, LimitSpec], Callable[[], LimitStore]] | None = None):
        self.factories = factories
        self.stop = stop
        self.clock = clock
        self.nested = nested
        self.pid = os.getpid()  # a job that forks: its child ends at once, the fan-out goes on only here
        self.config_error: str | None = None  # a service could not be set up: the config's fault, not the job's
        self.scope: AttemptScope | None = None  # set by telemetry (observers/telemetry.py)
        self.child_ends: Callable[[], None] | None = None  # a forked child's last act (telemetry: send its spans)
        # the named limits (``ctx.limit``): ([limits] of the config, the state store that shares them)
        self.limiter = Limiter(limits[0] if limits else {}, limits[1] if limits else _no_store, stop)

    def _scoped(self, plan: Plan, tenant: Tenant | None, attempt: int, call: Callable[[], RunResult]) -> RunResult:
        if self.scope is None:
            return call()
        with self.scope(plan, tenant, attempt) as told:
            result = call()
            told(result)
        return result

    def in_child(self, plan: Plan, tenant: Tenant | None, attempt: int, forget: Callable[[], None]) -> RunResult:
        """The attempt in a forked child (``isolation.run_in_child``). ``forget`` drops what the child must
        never use of its parent (the state store's connection: nested runs open their own)."""
        from pinstripe_jobs.execution.isolation import run_in_child

        def child() -> RunResult:
            forget()
            self.pid = os.getpid()
            try:
                return self._here(plan, tenant, attempt, restore=False)
            finally:
                if self.child_ends is not None:
                    self.child_ends()

        return self._scoped(plan, tenant, attempt, lambda: run_in_child(
            child, _tid(tenant), timeout=plan.timeout, stopping=self.stop.grace_over, clock=self.clock))

    def _workspace(self, plan: Plan, tenant: Tenant | None, attempt: int) -> Workspace:
        return Workspace(job=plan.spec.name, tenant=tenant, args=plan.args, params=plan.params,
                         factories=self.factories, nested=self.nested, tick=plan.options.tick, attempt=attempt,
                         limit=self._limit(plan, tenant))

    def _limit(self, plan: Plan, tenant: Tenant | None) -> Callable[[str, Any], Any]:
        limiter, observer = self.limiter, plan.observer
        told = None if observer is None else (lambda name, waited: observer.limit_waited(_tid(tenant), name, waited))
        return lambda name, key: Limit(limiter, name, key, told)

    def here(self, plan: Plan, tenant: Tenant | None, attempt: int, restore: bool = True) -> RunResult:
        """The attempt in this thread. ``restore``: put the working directory and environment back as they
        were (a job's chdir stays in its tenant)."""
        return self._scoped(plan, tenant, attempt, lambda: self._here(plan, tenant, attempt, restore))

    def _here(self, plan: Plan, tenant: Tenant | None, attempt: int, restore: bool) -> RunResult:
        workspace = self._workspace(plan, tenant, attempt)
        token = current_workspace.set(workspace)
        saved = _Process.save() if restore else None
        started = self.clock()
        try:
            with self.stop.job_running(), workspace.scope():
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

    async def as_task(self, plan: Plan, tenant: Tenant | None, attempt: int) -> RunResult:
        """The attempt of an ``async def`` job as a task of the running event loop."""
        if self.scope is None:
            return await self._as_task(plan, tenant, attempt)
        with self.scope(plan, tenant, attempt) as told:
            result = await self._as_task(plan, tenant, attempt)
            told(result)
        return result

    async def _as_task(self, plan: Plan, tenant: Tenant | None, attempt: int) -> RunResult:
        import asyncio

        workspace = self._workspace(plan, tenant, attempt)
        token = current_workspace.set(workspace)
        started = self.clock()
        try:
            with workspace.scope():
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
            workspace.close(succeeded=exc is None)
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


def _no_store() -> LimitStore:
    raise RuntimeError("no state store: named limits need a runner")


def end_of_output() -> None:
    """This thread's tenant is done: end its unterminated last line of output (see ``LineSink``)."""
    for stream in (sys.stdout, sys.stderr):
        end_run = getattr(stream, "end_run", None)
        if end_run is not None:
            end_run()


def _close_quietly(workspace: Workspace) -> None:
    try:
        workspace.close()
    except ServiceCleanupError:
        pass


class _Process:
    """The working directory and environment before a tenant's run, put back after it."""

    __slots__ = ("cwd", "env")

    def __init__(self, cwd: str | None, env: dict[str, str]):
        self.cwd = cwd
        self.env = env

    @classmethod
    def save(cls) -> _Process:
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


def _environ_snapshot() -> dict[Any, Any]:
    """The environment as stored (bytes on POSIX): copying it costs a microsecond, decoding it fifty."""
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else dict(os.environ)


def _text(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else value


async def _with_timeout(awaitable: Awaitable[T], timeout: float | None) -> T:
    if not timeout:
        return await awaitable
    import asyncio

    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise JobTimedOut() from None
