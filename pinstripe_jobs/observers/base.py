"""The observer contract: every hook the runner and the executors call while a job runs, each a documented
no-op here. Reporters (terminal, JSON, JUnit, GitHub), alerts and ``Tee`` subclass ``Observer`` and
override the hooks they need; the execution path only ever calls these methods.

The order of calls for one run: ``started`` once; per tenant ``run_started``, then any number of
``waiting``, ``limit_waited`` and ``retrying``, then ``run_finished`` (a tenant that was never started may get
``run_finished`` alone, with its ``skipped`` result); ``closing`` once, then ``finished`` once.
Hooks may be called from worker threads (the threads executor): an observer that keeps state guards it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import RunResult, Summary
    from pinstripe_jobs.tenants import Tenant


class Observer:
    """Told about one job run. Every hook does nothing unless a subclass overrides it."""

    def started(self, plan: Plan) -> None:
        """The run begins: the plan is checked and its tenant source answered; nothing ran yet."""

    def run_started(self, tenant: Tenant | None) -> None:
        """A tenant's run is about to start (``None``: the single run of a job that is not per tenant)."""

    def waiting(self, tenant: Any, holder: str) -> None:
        """A tenant (its id) waits for a lock or a slot held by ``holder`` (``overlap = "wait"``, ``--wait``,
        ``tenant_concurrency``); told once per wait."""

    def retrying(self, tenant: Any, attempt: int, attempts: int, delay: float, error: str | None) -> None:
        """Attempt ``attempt`` of ``attempts`` of a tenant (its id) failed with ``error``; the next one starts
        in ``delay`` seconds."""

    def limit_waited(self, tenant: Any, limit: str, seconds: float) -> None:
        """A tenant (its id) waited ``seconds`` for a token or slot of the named limit ``limit`` (``ctx.limit``;
        ``job:<name>`` for a job's ``rate_limit``), told once the wait is over, from the job's thread or task."""

    def run_finished(self, result: RunResult) -> None:
        """A tenant's outcome (after all its attempts), or why it was not run (``skipped``)."""

    def closing(self, summary: Summary) -> None:
        """The run is over, before ``finished`` (on every observer): write what must be written, such as a
        report file. A failure to write it sets ``summary.report_error`` (the run ends with exit 3), so that
        ``finished``, the history and the exit code all tell the same story."""

    def finished(self, summary: Summary) -> None:
        """The run is over: every tenant was reported; ``summary`` has the counts and the exit code."""


class NullObserver(Observer):
    """Tells no one (the Python API, nested runs)."""


class Tee(Observer):
    """Several observers as one: each hook is passed to every observer, in order."""

    def __init__(self, *observers: Observer):
        self.observers = observers

    def started(self, plan: Plan) -> None:
        for observer in self.observers:
            observer.started(plan)

    def run_started(self, tenant: Tenant | None) -> None:
        for observer in self.observers:
            observer.run_started(tenant)

    def waiting(self, tenant: Any, holder: str) -> None:
        for observer in self.observers:
            observer.waiting(tenant, holder)

    def retrying(self, tenant: Any, attempt: int, attempts: int, delay: float, error: str | None) -> None:
        for observer in self.observers:
            observer.retrying(tenant, attempt, attempts, delay, error)

    def limit_waited(self, tenant: Any, limit: str, seconds: float) -> None:
        for observer in self.observers:
            observer.limit_waited(tenant, limit, seconds)

    def run_finished(self, result: RunResult) -> None:
        for observer in self.observers:
            observer.run_finished(result)

    def closing(self, summary: Summary) -> None:
        for observer in self.observers:
            observer.closing(summary)

    def finished(self, summary: Summary) -> None:
        for observer in self.observers:
            observer.finished(summary)


class LimitTally(Observer):
    """Counts waits on limits into the summary (the runner tees it with the run's observer)."""

    def __init__(self, summary: Summary):
        self.summary = summary

    def limit_waited(self, tenant: Any, limit: str, seconds: float) -> None:
        self.summary.waited_on(limit, seconds)
