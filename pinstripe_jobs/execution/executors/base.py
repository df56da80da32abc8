"""The executor contract: where and how a plan's tenants run. ``Runner.execute`` reads the tenants, tells
the observer the run started, hands the tenants to ``Executor.run`` and records the invocation's end;
an executor starts each tenant's run, reports every tenant it was given, and honours a stop.

Executors know the runner only through ``TenantRunner`` (handed in, never imported: no import cycle).
The executors are chosen by name (``execution.executors.registry``): "local" (inline, threads or asyncio
tasks, picked by the plan) and "celery" (a worker fleet, imported only when used).
"""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pinstripe_jobs.model.results import RunResult, Summary, skip_status, tenant_id
from pinstripe_jobs.model.status import Status

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.execution.attempts import Tries
    from pinstripe_jobs.execution.signals import StopFlag
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.store.state import StateStore
    from pinstripe_jobs.tenants import Tenant


# Told instead of sleeping out a ``RetryAfter``: retry this tenant at ``due`` (on ``runner.clock``) with these tries.
Defer = Callable[[float, "Tries"], None]


class TenantRunner(Protocol):
    """What an executor may call on the runner (``execution.runner.Runner`` is one)."""

    settings: Settings
    stop: StopFlag
    clock: Callable[[], float]
    sleep: Callable[[float], Any]  # waits the seconds given; wakes at once on a stop
    state_error: str | None  # the state store became unavailable (the run ends with exit 3)
    config_error: str | None  # a configuration error surfaced while running (exit 3)

    @property
    def state(self) -> StateStore: ...

    def run_one(self, plan: Plan, tenant: Tenant | None, observer: Observer, defer: Defer | None = None,
                tries: Tries | None = None) -> RunResult:
        """All attempts of one tenant's run in this thread: lease, attempt, record, retry. With ``defer``, a
        ``RetryAfter`` delay is handed back (``defer(due, tries)``) with the failed attempt instead of slept;
        calling again with those ``tries`` resumes the run."""
        ...

    async def arun_one(self, plan: Plan, tenant: Tenant | None, observer: Observer) -> RunResult:
        """``run_one`` for an ``async def`` job, as a task of the running event loop."""
        ...

    def stop_reason(self, plan: Plan, summary: Summary) -> str | None:
        """Why no further tenant should start (a stop, --fail-fast, ...), or None."""
        ...

    def wait_for_start(self, plan: Plan, tenant: Tenant | None) -> bool:
        """With a spread: wait until this tenant's start offset. False when a stop came first."""
        ...

    def record_skipped(self, plan: Plan, tenants: list[Any], reason: str) -> None:
        """Record tenants (their ids) that were never started, with the reason, in history."""
        ...

    def interrupt_active(self, reason: str) -> int:
        """Record every run still in progress as interrupted; how many there were."""
        ...


class Executor(ABC):
    """Runs a plan's tenants. One instance per run (``Runner.execute``)."""

    name: ClassVar[str]
    # True: the runner claims tenants a page ahead in this process's state store before handing them over
    # (their locks and queued rows written in one transaction). An executor whose tenants run elsewhere
    # (the fleet's workers take their own locks) sets it False.
    claims_ahead: ClassVar[bool] = True

    def __init__(self, runner: TenantRunner):
        self.runner = runner

    def check(self, plan: Plan) -> None:  # noqa: B027 - a hook with a default (nothing), not abstract
        """Called before anything is printed, read or run: raise a ``PinstripeError`` when this executor
        cannot run ``plan`` (a fleet without a shared state store, an unreachable broker). Nothing by default."""

    @abstractmethod
    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        """Run ``tenants`` of ``plan``: for each, ``observer.run_started`` then ``observer.run_finished`` with
        its result, added to ``summary`` (``report``). Tenants not started (a stop, ``stop_reason``) are
        reported and recorded as skipped, never dropped. On a stop, running tenants get the grace period
        (``runner.stop.grace_over()``), then are interrupted. Returns when every tenant was reported."""


def report(result: RunResult, observer: Observer, summary: Summary) -> None:
    """One tenant's outcome: counted in the summary, then told to the observer."""
    summary.add(result)
    observer.run_finished(result)


def internal_error(tenant: Tenant | None, exc: BaseException) -> RunResult:
    """A tenant lost to a bug of ours: reported as failed with what happened, never dropped."""
    return RunResult(tenant_id(tenant), Status.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")


def skip_rest(runner: TenantRunner, plan: Plan, tenant: Tenant | None, tenants: Iterator[Tenant | None], reason: str,
              observer: Observer, summary: Summary) -> None:
    """Report ``tenant`` and every tenant not yet started as skipped, in the output and in history (in
    batches of 1000): nothing is silently dropped."""
    batch: list[Any] = []
    for one in itertools.chain([tenant], tenants):
        report(RunResult(tenant_id(one), skip_status(reason), reason=reason), observer, summary)
        batch.append(tenant_id(one))
        if len(batch) >= 1000:
            runner.record_skipped(plan, batch, reason)
            batch = []
    runner.record_skipped(plan, batch, reason)
