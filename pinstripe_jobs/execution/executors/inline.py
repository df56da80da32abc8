"""The inline executor: a plan's tenants one by one, in this thread (``concurrency = 1``)."""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinstripe_jobs.execution.executors.base import Executor, TenantRunner, report, skip_rest

if TYPE_CHECKING:
    from pinstripe_jobs.execution.attempts import Tries
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import RunResult, Summary
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.tenants import Tenant


class InlineExecutor(Executor):
    """Starts each tenant while ``stop_reason`` allows; the first reason skips the rest. A stop interrupts
    the running tenant through the signal handlers (the job runs in this thread). A tenant that raised
    ``RetryAfter`` is deferred (``Deferred``), not slept on: the next tenants run meanwhile."""

    name = "inline"

    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        runner = self.runner
        deferred = Deferred(runner, plan, observer, summary)
        for tenant in tenants:
            deferred.run_due()
            reason = runner.stop_reason(plan, summary)
            if not reason and not runner.wait_for_start(plan, tenant):
                reason = runner.stop_reason(plan, summary)
            if reason:
                deferred.give_up()
                skip_rest(runner, plan, tenant, tenants, reason, observer, summary)
                return
            observer.run_started(tenant)
            deferred.run(tenant)
        deferred.drain()


class Deferred:
    """Tenants waiting out a ``RetryAfter``, by when they are due: a heap of (due, order, tenant, tries,
    last result). Due ones run between other tenants; after the last tenant, ``drain`` waits for the rest
    (``runner.sleep`` wakes on a stop). On a stop each is reported with its last result: never lost, each
    tenant reported exactly once."""

    def __init__(self, runner: TenantRunner, plan: Plan, observer: Observer, summary: Summary):
        self.runner, self.plan, self.observer, self.summary = runner, plan, observer, summary
        self.heap: list[tuple[float, int, Tenant | None, Tries, RunResult]] = []
        self.order = itertools.count()

    def run(self, tenant: Tenant | None, tries: Tries | None = None) -> None:
        """Run (or resume) ``tenant``: reported when done, pushed on the heap when deferred again."""
        later: list[tuple[float, Tries]] = []
        result = self.runner.run_one(self.plan, tenant, self.observer, lambda due, t: later.append((due, t)), tries)
        if later and not self.runner.stop_reason(self.plan, self.summary):
            heapq.heappush(self.heap, (later[0][0], next(self.order), tenant, later[0][1], result))
        else:
            report(result, self.observer, self.summary)

    def run_due(self) -> None:
        """Resume every tenant whose delay is over, while nothing says stop."""
        while self.heap and self.heap[0][0] <= self.runner.clock():
            if self.runner.stop_reason(self.plan, self.summary):
                return
            _, _, tenant, tries, _ = heapq.heappop(self.heap)
            self.run(tenant, tries)

    def drain(self) -> None:
        """After the last tenant: wait for each deferred tenant's turn and resume it; on a stop, give up."""
        while self.heap:
            if self.runner.stop_reason(self.plan, self.summary):
                self.give_up()
                return
            wait = self.heap[0][0] - self.runner.clock()
            if wait > 0:
                self.runner.sleep(wait)
            self.run_due()

    def give_up(self) -> None:
        """A stop: every deferred tenant is reported with its last result (the ``RetryAfter`` failure)."""
        while self.heap:
            report(heapq.heappop(self.heap)[4], self.observer, self.summary)
