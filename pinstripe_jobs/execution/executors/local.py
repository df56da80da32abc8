"""How a plan's tenants are spread: one by one in this thread, over worker threads, or as asyncio tasks.

Each strategy starts tenants while ``Runner.stop_reason`` allows, records every tenant it was given
(those it never started as ``skipped`` with the reason), and on a stop request lets running tenants
finish until the grace period is over, then interrupts them.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from pinstripe_jobs.execution.signals import RunInterrupted
from pinstripe_jobs.model.results import FAILED, INTERRUPTED, SKIPPED, RunResult, Summary
from pinstripe_jobs.model.results import tenant_id as _tid

if TYPE_CHECKING:
    from pinstripe_jobs.execution.signals import StopFlag
    from pinstripe_jobs.model.plan import Observer, Plan
    from pinstripe_jobs.tenants import Tenant


class Runner(Protocol):
    """What a fan-out strategy needs from the runner: handed in, never imported (no import cycle)."""

    stop: StopFlag
    clock: Any

    def run_one(self, plan: Plan, tenant: Tenant | None) -> RunResult: ...

    async def arun_one(self, plan: Plan, tenant: Tenant | None) -> RunResult: ...

    def stop_reason(self, plan: Plan, summary: Summary) -> str | None: ...

    def wait_for_start(self, plan: Plan, tenant: Tenant | None) -> bool: ...

    def record_skipped(self, plan: Plan, tenants: list, reason: str) -> None: ...

    def interrupt_active(self, reason: str) -> int: ...

POLL_S = 0.05
AFTER_INTERRUPT_S = 2.0  # how long interrupted worker threads get to report back
_STOP = object()


def fan_out(runner: Runner, plan: Plan, tenants: Iterator, observer: Observer, summary: Summary) -> None:
    if plan.spec.is_async and not plan.isolated:
        from pinstripe_jobs.execution.aio import run_coroutine

        run_coroutine(_async_tasks(runner, plan, tenants, observer, summary))
    elif plan.concurrency > 1:
        _threads(runner, plan, tenants, observer, summary)
    else:
        _inline(runner, plan, tenants, observer, summary)


def _internal_error(tenant: Tenant | None, exc: BaseException) -> RunResult:
    return RunResult(_tid(tenant), FAILED, error=f"internal error: {type(exc).__name__}: {exc}")


def _record(result: RunResult, observer: Observer, summary: Summary) -> None:
    summary.add(result)
    observer.run_finished(result)


def _skip(runner: Runner, plan: Plan, tenant: Tenant | None, tenants: Iterator, reason: str,
          observer: Observer, summary: Summary) -> None:
    """Record ``tenant`` and every tenant not yet started as skipped, in the output and in history (in
    batches): nothing is silently dropped."""
    batch = []
    for one in itertools.chain([tenant], tenants):
        _record(RunResult(_tid(one), SKIPPED, reason=reason), observer, summary)
        batch.append(_tid(one))
        if len(batch) >= 1000:
            runner.record_skipped(plan, batch, reason)
            batch = []
    runner.record_skipped(plan, batch, reason)


def _inline(runner: Runner, plan: Plan, tenants: Iterator, observer: Observer, summary: Summary) -> None:
    for tenant in tenants:
        reason = runner.stop_reason(plan, summary)
        if not reason and not runner.wait_for_start(plan, tenant):
            reason = runner.stop_reason(plan, summary)
        if reason:
            return _skip(runner, plan, tenant, tenants, reason, observer, summary)
        observer.run_started(tenant)
        _record(runner.run_one(plan, tenant), observer, summary)


def _threads(runner: Runner, plan: Plan, tenants: Iterator, observer: Observer, summary: Summary) -> None:
    import queue

    todo: queue.Queue = queue.Queue()
    done: queue.Queue = queue.Queue()
    running: dict[int, Any] = {}  # thread ident -> tenant it is running

    def work() -> None:
        while (tenant := todo.get()) is not _STOP:
            running[threading.get_ident()] = tenant
            try:
                result = runner.run_one(plan, tenant)
            except RunInterrupted:  # landed outside the job's own code
                result = RunResult(_tid(tenant), INTERRUPTED, error="interrupted before it finished")
            except BaseException as exc:  # never lose a tenant, even to a bug of ours
                result = _internal_error(tenant, exc)
            running.pop(threading.get_ident(), None)
            done.put(result)

    threads = [threading.Thread(target=work, daemon=True, name=f"pinstripe-worker-{i}")
               for i in range(plan.concurrency)]
    for thread in threads:
        thread.start()
    in_flight = 0
    interrupted_at: float | None = None

    def collect_one() -> bool:
        """Wait for one result; after the grace period, interrupt the workers. False: gave up waiting."""
        nonlocal in_flight, interrupted_at
        while True:
            try:
                result = done.get(timeout=POLL_S)
            except queue.Empty:
                if runner.stop.grace_over():
                    now = runner.clock()
                    if interrupted_at is None:
                        interrupted_at = now
                        runner.stop.interrupt_threads()
                    elif now - interrupted_at > AFTER_INTERRUPT_S:
                        return False
                continue
            in_flight -= 1
            _record(result, observer, summary)
            return True

    try:
        for tenant in tenants:
            while in_flight >= plan.concurrency:
                if not collect_one():
                    break
            reason = runner.stop_reason(plan, summary)
            if not reason and not runner.wait_for_start(plan, tenant):
                reason = runner.stop_reason(plan, summary)
            if reason:
                _skip(runner, plan, tenant, tenants, reason, observer, summary)
                break
            observer.run_started(tenant)
            todo.put(tenant)
            in_flight += 1
        while in_flight and collect_one():
            pass
        if in_flight:  # workers stuck in blocking calls even after being interrupted
            runner.interrupt_active("interrupted: still running when the process stopped")
            for tenant in list(running.values())[:in_flight]:
                _record(RunResult(_tid(tenant), INTERRUPTED, error="still running after the grace period"),
                        observer, summary)
    finally:
        for _ in threads:
            todo.put(_STOP)


async def _async_tasks(runner: Runner, plan: Plan, tenants: Iterator, observer: Observer,
                       summary: Summary) -> None:
    import asyncio

    slots = asyncio.Semaphore(plan.concurrency)
    tasks: set[asyncio.Task] = set()

    async def one(tenant: Tenant | None) -> None:
        try:
            result = await runner.arun_one(plan, tenant)
        except asyncio.CancelledError:
            result = RunResult(_tid(tenant), INTERRUPTED, error="interrupted before it finished")
        except Exception as exc:  # never lose a tenant, even to a bug of ours
            result = _internal_error(tenant, exc)
        finally:
            slots.release()
        _record(result, observer, summary)

    async def take_slot() -> bool:
        while True:
            try:
                await asyncio.wait_for(slots.acquire(), POLL_S)
                return True
            except TimeoutError:
                if runner.stop.requested:
                    return False

    for tenant in tenants:
        got = await take_slot()
        if got and plan.spread and not runner.stop_reason(plan, summary):
            await asyncio.to_thread(runner.wait_for_start, plan, tenant)
        reason = runner.stop_reason(plan, summary)
        if reason or not got:
            if got:
                slots.release()
            _skip(runner, plan, tenant, tenants, reason or "interrupted", observer, summary)
            break
        observer.run_started(tenant)
        task = asyncio.create_task(one(tenant))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.wait(set(tasks), timeout=POLL_S)
        if tasks and runner.stop.grace_over():
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    runner.interrupt_active("interrupted: cancelled after the grace period")
