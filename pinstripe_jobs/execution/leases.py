"""Leases: what a tenant's run holds while it runs, and the history rows that record it.

Before a run starts it takes a slot of its tenant (``tenant_concurrency``), then the (job, tenant) lock
and its history row; when it ends, its outcome is recorded and both are released. Tenants are claimed a
page ahead (``claiming``): their locks and ``queued`` rows are written in one transaction, and each is
marked running, durably, just before its job is called. A tenant that never starts (a stop, --fail-fast,
a lock held elsewhere) is recorded as skipped with the reason. If the state store stays unavailable, the
first error is kept (``state_error``: the run ends with exit 3) and nothing more starts.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.execution.signals import StopFlag
from pinstripe_jobs.model.plan import Plan
from pinstripe_jobs.model.results import ALREADY_RUNNING, AT_CAP, INTERRUPTED, SKIPPED, RunResult, skip_status
from pinstripe_jobs.model.results import tenant_id as _tid

if TYPE_CHECKING:
    import threading

    from pinstripe_jobs.observers.base import Observer
    from pinstripe_jobs.store.state import Lease, StateStore
    from pinstripe_jobs.tenants import Tenant

STATE_DOWN = "state store unavailable"
PAGE_FAST_S = 0.1  # a page of claimed tenants that went by faster than this: claim twice as many next
MAX_PAGE = 256
LINGER_S = 0.001  # under concurrency (PostgreSQL), a start waits this long for others to share its commit


def key(tenant_id: Any) -> str:
    """A tenant id as the state store keys it."""
    return "-" if tenant_id is None else str(tenant_id)


class Leases:
    def __init__(self, state: Callable[[], StateStore], stop: StopFlag, tenant_concurrency: int | None,
                 clock: Callable[[], float]):
        self._state = state  # opens the store on first use
        self.stop = stop
        self.clock = clock
        self.tenant_concurrency = tenant_concurrency
        self.active: dict[int, Any] = {}  # run id -> lease of runs in progress
        self.state_error: str | None = None  # the state store became unavailable during this run

    @property
    def state(self) -> StateStore:
        return self._state()

    def quietly(self, operation: Callable[[], Any]) -> bool:
        """Run a state store write; if the store is unavailable past its budget, note it (the run ends with
        exit 3 and every outcome still reported) and return False."""
        from pinstripe_jobs.store.state import StateUnavailable

        try:
            operation()
            return True
        except StateUnavailable as exc:
            self.state_error = self.state_error or exc.render()
            return False

    # -- claiming ahead -----------------------------------------------------------------------------
    def claiming(self, plan: Plan, tenants: Iterator[Tenant | None], stopped: Callable[[], Any]
                 ) -> Generator[Tenant | None, None, None]:
        """Claim tenants a page ahead of running them (see ``StateStore.claim``). The next page is read and
        claimed on a thread of its own when half of the current one has started, so the claim overlaps
        the jobs instead of holding up the next start. Pages start at the concurrency and double while
        they go by fast (up to ``MAX_PAGE``), so slow jobs never hold many tenants queued. Claiming ends
        when ``stopped()`` says why nothing more starts; the tenants after that pass through unclaimed."""
        size = plan.concurrency
        page: list[Tenant | None] = [] if stopped() else list(itertools.islice(tenants, size))
        claim = self._claim(plan, page)
        last_page_s = 0.0  # how long the page before went by
        try:
            while page:
                begun = self.clock()
                upcoming: list[Tenant | None] = []
                upcoming_claim = None
                # the next page is claimed halfway through this one; after a lone tenant (not claimed: its
                # row is written when it starts), so that history ids follow the order tenants start in
                halfway = len(page) // 2 if len(page) > 1 else 1
                for index, tenant in enumerate(page + [None] if len(page) == 1 else page):
                    if claim is not None:  # a tenant runs only once its page's claim is in
                        claim.join()
                        claim = None
                    if index == halfway and not stopped():
                        size = min(size * 2, max(MAX_PAGE, plan.concurrency)) if last_page_s < PAGE_FAST_S else \
                            max(plan.concurrency, size // 2)
                        upcoming = list(itertools.islice(tenants, size))
                        upcoming_claim = self._claim(plan, upcoming)
                    if index < len(page):
                        yield tenant
                last_page_s = self.clock() - begun
                page, claim = upcoming, upcoming_claim
            yield from tenants
        finally:
            if claim is not None:
                claim.join()

    def _claim(self, plan: Plan, page: list[Tenant | None]) -> threading.Thread | None:
        """Claim ``page`` on a thread (one tenant: nothing to claim, its begin_run is one transaction)."""
        if len(page) < 2:
            return None
        import threading

        def claim() -> None:
            try:
                self.quietly(lambda: plan.claims.update(self.state.claim(
                    plan.spec.name, [_tid(t) for t in page], plan.options.trigger, tick=plan.options.tick,
                    lock=plan.spec.overlap != "allow", invocation=plan.invocation)))
            except Exception as exc:  # not fatal: each tenant of the page then takes its own lock and row
                import logging

                logging.getLogger("pinstripe.state").warning("could not claim tenants ahead: %s: %s",
                                                             type(exc).__name__, exc)

        thread = threading.Thread(target=claim, name="pinstripe-claim", daemon=True)
        thread.start()
        return thread

    # -- taking -------------------------------------------------------------------------------------
    def acquire(self, plan: Plan, tenant: Tenant | None, attempt: int, told: set[str], observer: Observer
                ) -> Lease | RunResult | None:
        """One try at what a run needs before it starts: a slot of its tenant (``tenant_concurrency``),
        then the (job, tenant) lock and history row. A lease: go. A result: do not run (skipped, and
        recorded). None: wait and try again (``overlap = "wait"`` or ``--wait``; told once why)."""
        from pinstripe_jobs.store.state import StateUnavailable

        cap = self.tenant_concurrency
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
                    observer.waiting(_tid(tenant), f"tenant_concurrency = {cap}: that many runs of this "
                                                        "tenant are going")
                return None
        lease = self._take_lock(plan, tenant, attempt)
        if isinstance(lease, RunResult) or lease is None:
            if slot is not None:
                self.quietly(lambda: self.state.release_slot(slot))
            if lease is None and self._waits(plan):
                if "lock" not in told:
                    told.add("lock")
                    self._tell_waiting(plan, tenant, observer)
                return None
            return lease if lease is not None else self._locked_out(plan, tenant)
        lease.slot = slot
        self.active[lease.run_id] = lease
        return lease

    async def aacquire(self, plan: Plan, tenant: Tenant | None, attempt: int, told: set[str], observer: Observer
                       ) -> Lease | RunResult | None:
        """``acquire`` for an asyncio task. PostgreSQL: its round trips run on a thread of the plan's own
        pool (one per concurrent task), never on the event loop, and concurrent starts share commits.
        SQLite: on the loop (a local commit costs less than a thread handoff; measured)."""
        import asyncio

        if self.state.local:
            return self.acquire(plan, tenant, attempt, told, observer)
        if plan.io_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            plan.io_pool = ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="pinstripe-io")
        return await asyncio.get_running_loop().run_in_executor(plan.io_pool, self.acquire, plan, tenant, attempt,
                                                                told, observer)

    def _take_lock(self, plan: Plan, tenant: Tenant | None, attempt: int) -> Lease | None | RunResult:
        """The lease (a claimed one, marked running; or a new row), None when another live run holds the
        lock, or a skipped result when the state store is unavailable (nothing runs without its history
        row and lock)."""
        from pinstripe_jobs.store.state import StateUnavailable

        try:
            claimed: Lease | None = plan.claims.pop(key(_tid(tenant)), None) if attempt == 1 and plan.claims else None
            linger = LINGER_S if plan.concurrency > 1 and not self.state.local else 0.0
            if claimed is not None and self.state.start(claimed, linger):
                return claimed
            return self.state.begin_run(plan.spec.name, _tid(tenant), plan.options.trigger, tick=plan.options.tick,
                                        attempt=attempt, lock=plan.spec.overlap != "allow",
                                        invocation=plan.invocation)
        except StateUnavailable as exc:
            self.state_error = self.state_error or exc.render()
            return RunResult(_tid(tenant), SKIPPED, reason=STATE_DOWN)

    def _tell_waiting(self, plan: Plan, tenant: Tenant | None, observer: Observer) -> None:
        from pinstripe_jobs.store.state import StateUnavailable

        try:
            holder = self.state.holder(plan.spec.name, _tid(tenant))
        except StateUnavailable:
            holder = None
        observer.waiting(_tid(tenant), holder or "its holder just finished")

    def _waits(self, plan: Plan) -> bool:
        return (plan.options.wait or plan.spec.overlap == "wait") and not self.stop.requested

    def _locked_out(self, plan: Plan, tenant: Tenant | None, why: str = ALREADY_RUNNING) -> RunResult:
        reason = "interrupted while waiting for the lock" if self.stop.requested else why
        self.record_skipped(plan, [_tid(tenant)], reason)
        return RunResult(_tid(tenant), SKIPPED, reason=reason)

    # -- recording ----------------------------------------------------------------------------------
    def end(self, lease: Lease, result: RunResult, attempt: int) -> None:
        """Record the outcome and release the lease (committed with the next start, or within a second).
        If the store stays unavailable, the result keeps its real status."""
        result.attempts = attempt
        if self.active.pop(lease.run_id, None) is not None:
            self.quietly(lambda: self.state.end_run(lease, result.status, result.error, traceback=result.traceback,
                                                    duration_s=result.duration_s, defer=True))

    def record_skipped(self, plan: Plan, tenants: list[Any], reason: str) -> None:
        """Tenants never started (a stop, --fail-fast, --max-failures, a lock held elsewhere): written to
        history, so that ``--only-failed`` picks them up. A tenant claimed ahead has its queued row ended."""
        if not tenants or reason == STATE_DOWN:
            return  # claimed rows stay queued: never started, resumable
        unclaimed = []
        for tenant in tenants:
            lease = plan.claims.pop(key(tenant), None)
            if lease is None:
                unclaimed.append(tenant)
            else:
                self._end_quietly(lease, skip_status(reason), reason, defer=True)
        if unclaimed:
            status = skip_status(reason)
            self.quietly(lambda: self.state.record_many(plan.spec.name, unclaimed, plan.options.trigger, status,
                                                        invocation=plan.invocation, error=reason,
                                                        tick=plan.options.tick))

    def _end_quietly(self, lease: Lease, status: str, reason: str, defer: bool = False) -> None:
        self.quietly(lambda: self.state.end_run(lease, status, reason, defer=defer))

    def interrupt_active(self, reason: str) -> int:
        """Record every run still in progress as interrupted (used when a process must stop now)."""
        count = 0
        for run_id in list(self.active):
            lease = self.active.pop(run_id, None)
            if lease is not None:
                self._end_quietly(lease, INTERRUPTED, reason)
                count += 1
        return count
