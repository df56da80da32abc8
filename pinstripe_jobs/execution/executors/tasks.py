"""The asyncio executor: an ``async def`` job's tenants as tasks of one event loop, at most
``concurrency`` at a time. On a stop, running tasks finish until the grace period is over; then they are
cancelled (reported interrupted)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinstripe_jobs.execution.aio import run_coroutine
from pinstripe_jobs.execution.executors.base import Executor, internal_error, report, skip_rest
from pinstripe_jobs.model.results import RunResult, tenant_id
from pinstripe_jobs.model.status import Status

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import Summary
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.tenants import Tenant

POLL_S = 0.05


class AsyncioExecutor(Executor):
    name = "asyncio"

    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        run_coroutine(self.arun(plan, tenants, observer, summary))

    async def arun(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        runner = self.runner
        slots = asyncio.Semaphore(plan.concurrency)
        tasks: set[asyncio.Task[None]] = set()

        async def one(tenant: Tenant | None) -> None:
            try:
                result = await runner.arun_one(plan, tenant, observer)
            except asyncio.CancelledError:
                result = RunResult(tenant_id(tenant), Status.INTERRUPTED, error="interrupted before it finished")
            except Exception as exc:  # never lose a tenant, even to a bug of ours
                result = internal_error(tenant, exc)
            finally:
                slots.release()
            report(result, observer, summary)

        for tenant in tenants:
            got = await self._take_slot(slots)
            if got and plan.spread and not runner.stop_reason(plan, summary):
                await asyncio.to_thread(runner.wait_for_start, plan, tenant)
            reason = runner.stop_reason(plan, summary)
            if reason or not got:
                if got:
                    slots.release()
                skip_rest(runner, plan, tenant, tenants, reason or "interrupted", observer, summary)
                break
            observer.run_started(tenant)
            task = asyncio.create_task(one(tenant))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._finish(tasks)

    async def _take_slot(self, slots: asyncio.Semaphore) -> bool:
        """A free slot (True), or False when a stop came while waiting for one."""
        while True:
            try:
                await asyncio.wait_for(slots.acquire(), POLL_S)
                return True
            except TimeoutError:
                if self.runner.stop.requested:
                    return False

    async def _finish(self, tasks: set[asyncio.Task[None]]) -> None:
        """Wait for the running tasks; after the grace period, cancel them."""
        while tasks:
            await asyncio.wait(set(tasks), timeout=POLL_S)
            if tasks and self.runner.stop.grace_over():
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        self.runner.interrupt_active("interrupted: cancelled after the grace period")
