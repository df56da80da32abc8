"""The threads executor: a plan's tenants over ``concurrency`` worker threads.

This thread reads the tenants, starts each while ``stop_reason`` allows and collects results; workers
run them. On a stop, running tenants finish until the grace period is over; then the workers are
interrupted (``RunInterrupted`` raised into them), and tenants still stuck in a blocking call after
``AFTER_INTERRUPT_S`` are reported interrupted.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pinstripe_jobs.execution.executors.base import Executor, internal_error, report, skip_rest
from pinstripe_jobs.execution.signals import RunInterrupted
from pinstripe_jobs.model.results import RunResult, tenant_id
from pinstripe_jobs.model.status import Status

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import Summary
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.tenants import Tenant

POLL_S = 0.05
AFTER_INTERRUPT_S = 2.0  # how long interrupted worker threads get to report back


class _Stop:
    """Tells a worker thread to end."""


_STOP = _Stop()


class ThreadsExecutor(Executor):
    name = "threads"

    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        pool = _Pool(self, plan, observer, summary)
        try:
            for tenant in tenants:
                while pool.in_flight >= plan.concurrency:
                    if not pool.collect_one():
                        break
                reason = self.runner.stop_reason(plan, summary)
                if not reason and not self.runner.wait_for_start(plan, tenant):
                    reason = self.runner.stop_reason(plan, summary)
                if reason:
                    skip_rest(self.runner, plan, tenant, tenants, reason, observer, summary)
                    break
                observer.run_started(tenant)
                pool.start(tenant)
            pool.finish()
        finally:
            pool.close()


class _Pool:
    """The worker threads of one run, and the results they hand back."""

    def __init__(self, executor: ThreadsExecutor, plan: Plan, observer: Observer, summary: Summary):
        self.runner = executor.runner
        self.plan, self.observer, self.summary = plan, observer, summary
        self.todo: queue.Queue[Tenant | None | _Stop] = queue.Queue()
        self.done: queue.Queue[RunResult] = queue.Queue()
        self.running: dict[int, Tenant | None] = {}  # thread ident -> the tenant it runs
        self.in_flight = 0
        self.interrupted_at: float | None = None
        self.threads: list[threading.Thread] = []  # started as tenants come: 20 tenants never start 1,000 threads

    def _work(self) -> None:
        while not isinstance(tenant := self.todo.get(), _Stop):
            self.running[threading.get_ident()] = tenant
            try:
                result = self.runner.run_one(self.plan, tenant, self.observer)
            except RunInterrupted:  # landed outside the job's own code
                result = RunResult(tenant_id(tenant), Status.INTERRUPTED, error="interrupted before it finished")
            except BaseException as exc:  # never lose a tenant, even to a bug of ours
                result = internal_error(tenant, exc)
            self.running.pop(threading.get_ident(), None)
            self.done.put(result)

    def start(self, tenant: Tenant | None) -> None:
        if len(self.threads) < self.plan.concurrency and self.in_flight >= len(self.threads):
            thread = threading.Thread(target=self._work, daemon=True, name=f"pinstripe-worker-{len(self.threads)}")
            self.threads.append(thread)
            thread.start()
        self.todo.put(tenant)
        self.in_flight += 1

    def collect_one(self) -> bool:
        """Wait for one result; after the grace period, interrupt the workers. False: gave up waiting."""
        stop = self.runner.stop
        while True:
            try:
                result = self.done.get(timeout=POLL_S)
            except queue.Empty:
                if stop.grace_over():
                    now = self.runner.clock()
                    if self.interrupted_at is None:
                        self.interrupted_at = now
                        stop.interrupt_threads()
                    elif now - self.interrupted_at > AFTER_INTERRUPT_S:
                        return False
                continue
            self.in_flight -= 1
            report(result, self.observer, self.summary)
            return True

    def finish(self) -> None:
        """Collect what is running; workers stuck in blocking calls even after being interrupted are
        reported (and recorded) interrupted."""
        while self.in_flight and self.collect_one():
            pass
        if self.in_flight:
            self.runner.interrupt_active("interrupted: still running when the process stopped")
            for tenant in list(self.running.values())[:self.in_flight]:
                report(RunResult(tenant_id(tenant), Status.INTERRUPTED, error="still running after the grace period"),
                       self.observer, self.summary)

    def close(self) -> None:
        for _ in self.threads:
            self.todo.put(_STOP)
