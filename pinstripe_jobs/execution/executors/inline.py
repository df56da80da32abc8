"""The inline executor: a plan's tenants one by one, in this thread (``concurrency = 1``)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinstripe_jobs.execution.executors.base import Executor, report, skip_rest

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import Summary
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.tenants import Tenant


class InlineExecutor(Executor):
    """Starts each tenant while ``stop_reason`` allows; the first reason skips the rest. A stop interrupts
    the running tenant through the signal handlers (the job runs in this thread)."""

    name = "inline"

    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        runner = self.runner
        for tenant in tenants:
            reason = runner.stop_reason(plan, summary)
            if not reason and not runner.wait_for_start(plan, tenant):
                reason = runner.stop_reason(plan, summary)
            if reason:
                skip_rest(runner, plan, tenant, tenants, reason, observer, summary)
                return
            observer.run_started(tenant)
            report(runner.run_one(plan, tenant, observer), observer, summary)
