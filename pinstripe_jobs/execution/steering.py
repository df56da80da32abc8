"""Steering a run from elsewhere. Cancelling (``pinstripe cancel``, the dashboard): while a run goes on, a
daemon thread polls its invocation's cancel request in the state store about once a second (one primary-key
read) and, when there is one, tells the runner (``on_cancel``), which stops starting tenants. Like a signal
handler, the thread only sets flags; the fan-out loops act on them. Pausing one tenant of a job
(``pinstripe pause JOB --tenant ID``): that tenant is reported and recorded skipped, reason "paused"."""
from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import Status

if TYPE_CHECKING:
    from pinstripe_jobs.execution.leases import Leases
    from pinstripe_jobs.execution.signals import StopFlag
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.store.state import StateStore
    from pinstripe_jobs.tenants import Tenant

POLL_S = 1.0  # how often the holder of an invocation looks for a cancel request
PAUSED = "paused"  # the reason recorded for a tenant paused for the job


class CancelWatch:
    """``with CancelWatch(check, on_cancel):`` polls ``check()`` (the reason, or None) every ``every`` seconds
    until the block ends or a reason comes back, which is handed to ``on_cancel`` once. A failing check
    (the store down) is tried again at the next poll."""

    def __init__(self, check: Callable[[], str | None], on_cancel: Callable[[str], None], every: float = POLL_S):
        self.check = check
        self.on_cancel = on_cancel
        self.every = every
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> CancelWatch:
        self.thread = threading.Thread(target=self._poll, name="pinstripe-cancel-watch", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.done.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)  # a poll in progress ends before the store is closed

    def _poll(self) -> None:
        while not self.done.wait(self.every):
            try:
                reason = self.check()
            except Exception:  # the store is down or busy: the run itself says so; look again next time
                continue
            if reason and not self.done.is_set():
                self.on_cancel(reason)
                return


class _Cancellable(Protocol):
    """What ``watch_cancel`` needs of the runner."""

    cancelled: dict[str, str]
    stop_on_cancel: bool
    leases: Leases

    @property
    def state(self) -> StateStore: ...

    @property
    def stop(self) -> StopFlag: ...


def watch_cancel(runner: _Cancellable, plan: Plan) -> CancelWatch:
    """Poll ``plan``'s invocation for a cancel request while it runs; once there is one, its reason
    (``cancelled by WHO: WHY``) is kept in ``runner.cancelled`` (the runner's ``stop_reason`` says it: no new
    tenant starts, the rest are recorded cancelled) and, unless the runner serves a scheduler, the run's
    StopFlag is told (running tenants get the grace period)."""
    def check() -> str | None:
        from pinstripe_jobs.store.cancels import cancel_reason

        request = runner.state.cancel_request(plan.invocation, poll=True)
        return None if request is None else cancel_reason(request)

    def on_cancel(reason: str) -> None:
        import sys

        runner.cancelled[plan.invocation] = reason
        if runner.stop_on_cancel:
            runner.stop.cancel(reason)
        sys.stderr.write(f"{plan.spec.name}: invocation {plan.invocation} {reason}; no more tenants start, "
                         "running ones get the grace period.\n")
        sys.stderr.flush()

    return CancelWatch(check, on_cancel)


def skip_paused(runner: _Cancellable, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer,
                summary: Summary) -> Generator[Tenant | None, None, None]:
    """``tenants`` less those paused for this job (`pinstripe pause JOB --tenant ID`): each of those is
    reported and recorded skipped, reason "paused" (one read of the job's pauses per run)."""
    paused: dict[str, Any] = {}
    runner.leases.quietly(lambda: paused.update(runner.state.paused_tenants(plan.spec.name)))
    if not paused:
        yield from tenants
        return
    for tenant in tenants:
        if tenant is not None and str(tenant.id) in paused:
            runner.leases.record_skipped(plan, [tenant.id], PAUSED)
            result = RunResult(tenant.id, Status.SKIPPED, reason=PAUSED)
            summary.add(result)
            observer.run_finished(result)
            continue
        yield tenant


FAILED_WORDS = ("failed", "timed_out", "error")  # an invocation's overall word that counts as failed
AUTO = "pinstripe (pause_after_failures)"  # who an automatic pause is recorded as


def pause_after_failures(runner: _Cancellable, plan: Plan, summary: Summary, notify: dict[str, Any]) -> None:
    """A job with ``pause_after_failures = N``: once its last N invocations all failed, pause it (recorded as
    ``pinstripe``, audited, and announced through ``[notify]`` when configured). Never raises for the store."""
    limit = plan.spec.pause_after_failures
    if not limit or summary.status not in FAILED_WORDS:
        return
    state = runner.state
    recent = state.list_invocations(job=plan.spec.name, limit=limit)
    if len(recent) < limit or any(row["status"] not in FAILED_WORDS for row in recent):
        return
    reason = f"{limit} failed invocation{'s' if limit > 1 else ''} in a row (pause_after_failures = {limit})"
    if not state.pause(plan.spec.name, who=AUTO, reason=reason):
        return  # paused already
    state.audit("pause", who=AUTO, source="auto", job=plan.spec.name,
                details={"reason": reason, "invocation": plan.invocation})
    if any(notify.get(key) for key in ("webhook", "command", "callable")):
        from pinstripe_jobs.observers.notify import Notifier

        Notifier(notify).send({
            "text": f":double_vertical_bar: {plan.spec.name} paused: {reason}. Its schedule fires nothing until "
                    f"`pinstripe unpause {plan.spec.name}`.",
            "event": "paused", "job": plan.spec.name, "reason": reason, "invocation": plan.invocation,
            "unpause": f"pinstripe unpause {plan.spec.name}"})
