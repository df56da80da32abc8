"""What the state store promises, one contract per kind of record. ``StateStore`` satisfies every one
(``Store`` is all of them); the contract suite (tests/store/) checks each promise on SQLite and PostgreSQL.

Common to every method: each is retried through passing faults (a dropped connection, a restart, a lock or
statement timeout) for up to ``retry_s`` seconds and then raises ``StateUnavailable`` (a ConfigError, exit 3;
also when the database refuses the operation, or a stop cuts the wait short), never a raw driver error.
After ``StateUnavailable`` the store fails fast until a call succeeds again. "Holder" means a process named by
a row (host, pid, process start time) with a heartbeat; it is *provably gone* when its process is dead on
this host, or, elsewhere, its heartbeat is older than ``lock_stale_s``. A kill -9 runs no cleanup: whatever
a method has committed stands, and rows naming the killed process are taken over once it is provably gone.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pinstripe_jobs.store.common import Lease, Row
from pinstripe_jobs.store.dialects import Params
from pinstripe_jobs.store.invocations import Begun


@runtime_checkable
class Runs(Protocol):
    """Runs and their leases. The lock of (job, tenant) is its held (``queued``/``running``) row."""

    def begin_run(self, job: str, tenant: Any, trigger: str, *, tick: datetime | None = None, attempt: int = 1,
                  lock: bool = True, invocation: str | None = None) -> Lease | None:
        """Insert a ``running`` row for (job, tenant), committed before it returns, and renew its heartbeat
        from then on. With ``lock``: at most one held row per (job, tenant) across processes and hosts;
        returns None (writing nothing) while a live holder has it; a holder provably gone is taken over
        first (its row ends ``abandoned``, or ``skipped`` if it was only queued). Deferred ends and pending
        starts commit with it. A dropped connection after the commit is not a second run (the row's lease
        token finds it). Kill -9 after it: the row stays ``running`` and reads ``abandoned``."""
        ...

    def end_run(self, lease: Lease, status: str, error: str | None = None, *, traceback: str | None = None,
                duration_s: float | None = None, defer: bool = False) -> None:
        """Set the run's status, end time, error, traceback (capped, secrets masked, NULs escaped) and duration,
        releasing its lock (and its tenant slot, at once). Without ``defer`` it is committed when this returns;
        with it, on this store's next commit, ``flush()`` or within about a second (heartbeat thread).
        Kill -9 before that commit: the run reads ``abandoned``."""
        ...

    def holder(self, job: str, tenant: Any) -> str | None:
        """Who holds the lock of (job, tenant) ("host H, pid P, since T"), or None. Reads only."""
        ...

    def record(self, job: str, tenant: Any, trigger: str, status: str, *, error: str | None = None,
               tick: datetime | None = None, invocation: str | None = None) -> None:
        """One finished row for a run that never started (skipped), folded into the newest statuses;
        committed when this returns."""
        ...

    def record_many(self, job: str, tenants: Iterable[Any], trigger: str, status: str, *,
                    error: str | None = None, tick: datetime | None = None, invocation: str | None = None) -> None:
        """``record`` for many tenants, one transaction per 500: a kill -9 keeps whole groups only."""
        ...


@runtime_checkable
class Claims(Protocol):
    """A page of tenants claimed ahead of running them, then started one by one."""

    def claim(self, job: str, tenants: list[Any], trigger: str, *, tick: datetime | None = None,
              lock: bool = True, invocation: str | None = None) -> dict[str, Lease]:
        """In one transaction, a ``queued`` row (holding the lock, with ``lock``) for each tenant whose lock
        is free; returns tenant key (id as text, ``-`` for none) -> lease, each tenant once. A retried
        transaction that had committed returns the same rows (never claims twice). Kill -9 after it: the rows
        stay ``queued`` (never started), and the next run of those tenants ends them ``skipped``."""
        ...

    def start(self, lease: Lease, linger: float = 0.0) -> bool:
        """Mark a claimed run ``running``, committed before it returns (concurrent starts, and deferred ends,
        share one commit; ``linger`` waits that long first to join them). False, changing nothing, when the
        claim was taken over meanwhile: the caller must not run it."""
        ...


@runtime_checkable
class Ticks(Protocol):
    """Tick claims: a schedule's tick fired exactly once across processes and machines."""

    def claim_tick(self, key: str, tick: datetime, kind: str = "fired") -> bool:
        """True for exactly one caller per (key, tick), ever (the claim is committed when True returns),
        and held (heartbeat) until ``finish_tick``. Kill -9 before that: an orphan (``orphan_ticks``)."""
        ...

    def finish_tick(self, key: str, tick: datetime) -> None:
        """Mark the tick done (every tenant has a recorded status): it is never resumed."""
        ...

    def release_tick(self, key: str, tick: datetime) -> None:
        """Give up an unfinished claim (holder cleared): the next scheduler resumes the tick."""
        ...

    def orphan_ticks(self) -> list[tuple[str, datetime]]:
        """Unfinished claims whose holder is provably gone (or released), not held by this store. Reads only."""
        ...

    def take_over_tick(self, key: str, tick: datetime) -> bool:
        """Take over an orphaned claim (kind ``resumed``): True for exactly one caller, False while its holder
        is alive or when it is finished."""
        ...

    def tick_tenants(self, job: str, tick: datetime) -> set[str | None]:
        """Tenants with a run row of ``job`` for ``tick`` other than ``queued`` (those never started)."""
        ...

    def last_claimed_tick(self, key: str) -> datetime | None:
        """The newest tick claimed for ``key``, finished or not; None when none is left (pruned)."""
        ...


@runtime_checkable
class Slots(Protocol):
    """Tenant slots: at most ``cap`` runs of one tenant at a time, across jobs, processes and hosts."""

    def take_slot(self, tenant: Any, cap: int) -> tuple[str, int] | None:
        """One of the tenant's ``cap`` slots (renewed by the heartbeat), or None when all have live holders;
        slots of holders provably gone are freed first. Kill -9: the slot is freed by the next taker."""
        ...

    def release_slot(self, slot: tuple[str, int]) -> None:
        """Free a slot this process holds (another process's slot is left alone)."""
        ...


@runtime_checkable
class Invocations(Protocol):
    """Invocations: one per command, tick or resume; a durable record written before any tenant runs, with
    counts and durations once ended. Status: ``running``, ``succeeded``, ``failed``, ``interrupted``,
    ``cancelled``, ``crashed`` (``InvocationStatus``; an unended one whose holder is provably gone reads
    ``crashed``, computed on read; a closed one is stored ``abandoned`` and read ``crashed``)."""

    def begin_invocation(self, invocation: str, job: str, trigger: str, *, tick: datetime | None = None,
                         args: Any = None, details: dict[str, Any] | None = None, key: str | None = None,
                         unique: str | None = None) -> Begun:
        """Record an invocation (once per id: recording an id again changes nothing and says ``new``) with its
        ``details`` (``selection``, ``options``: JSON-able; ``started_by``, ``executor``: text), held by this
        process: its heartbeat is renewed from then on. First closes the job's invocations whose holder is
        provably gone (``crashed``), in the same transaction. ``key`` (idempotency): when an invocation has
        it already, records nothing and returns ``finished`` (it succeeded or failed), ``busy`` (its holder is
        alive) or ``resume`` (it is taken over as this process's, exactly once across racing callers).
        ``unique`` (a unique job's job-and-arguments text): ``busy``, recording nothing, while a live
        invocation has the same; race-free (a unique index), a holder provably gone is closed first.
        Committed when it returns. Kill -9 after it: the invocation reads ``crashed``."""
        ...

    def resume_invocation(self, invocation: str, *, unique: str | None = None) -> Begun:
        """Take over ``invocation`` to run the rest of it: ``resume`` (now held by this process, reopened:
        no end, no status, ``resumed`` + 1, a fleet's cancel marker ``cancel:<id>`` cleared; exactly one of
        racing callers), ``finished`` (it succeeded or
        failed: nothing changes), ``busy`` (its holder is alive, or another live invocation has its unique
        key) or ``missing``. A crashed holder's invocation is closed first (its runs counted and folded)."""
        ...

    def invocation_progress(self, invocation: str, scanned: int, total: int | None = None) -> None:
        """How many tenants the invocation's scan has read, and the total once the scan ended: kept in
        memory, written by the heartbeat thread and by ``end_invocation`` (a kill -9 loses at most one
        heartbeat's worth). Only for an invocation this process holds."""
        ...

    def end_invocation(self, invocation: str, status: str, exit_code: int, counts: dict[str, int]
                       ) -> tuple[str, int]:
        """Commit deferred ends, then set its end, status, exit code, counts and p50/p95/max duration, and free
        its unique key; returns the status and exit code recorded. A resumed invocation's counts are its whole
        (each tenant's newest run in it), and it reads ``failed`` (exit 1) instead of ``succeeded`` when its
        whole holds a failed, timed out, interrupted or abandoned tenant. Stops its heartbeat. Kill -9 before
        it: the invocation reads ``crashed`` until the job's next one closes it."""
        ...

    def close_abandoned_invocations(self, job: str) -> None:
        """Close ``job``'s unended invocations whose holder is provably gone: stored ``abandoned`` (as earlier
        releases did; read as ``crashed``), counts taken from
        their runs (``running`` counted as ``abandoned``), their runs folded."""
        ...

    def invocation_outcomes(self, job: str, invocation: str, tenants: list[Any], *, running: bool = False,
                            ran_only: bool = False) -> dict[str, tuple[str, str | None]]:
        """Of ``tenants``, those with a run of ``job`` in ``invocation`` that ended (or, with ``running``,
        started; with ``ran_only``, rows only recorded, skipped or reported without running, left out):
        tenant key -> (status, error), the newest last. Reads only."""
        ...


@runtime_checkable
class InvocationQueries(Protocol):
    """Reading invocations (the CLI's ``invocations``/``invocation``, resume planning). Reads only."""

    def get_invocation(self, invocation: str) -> Row | None:
        """The invocation as shown (``present_invocation``), or None."""
        ...

    def list_invocations(self, *, job: str | None = None, status: str | None = None, limit: int = 50
                         ) -> list[Row]:
        """Newest first, filtered by job and by status as shown, at most ``limit``."""
        ...

    def invocation_tenants(self, invocation: str) -> dict[str, str]:
        """Tenant key -> the status of its newest run in the invocation that started (rows only claimed,
        skipped, or recorded without running are left out; ``running`` whose holder is provably gone reads
        ``abandoned``)."""
        ...

    def present_invocation(self, row: Row, *, counts: bool = True) -> Row:
        """A record (``invocations.RECORD`` by name) as shown: ``args``/``selection``/``options`` parsed,
        status computed when unended, ``counts`` (dict), ``done``, ``eta_s``; the process token dropped."""
        ...


@runtime_checkable
class LatestStatus(Protocol):
    """Each tenant's newest finished status per job (``pinstripe_latest``): the dashboard's grid."""

    def flush(self) -> None:
        """Commit deferred ends and pending starts, and fold every ended run into the newest statuses (a
        newer run wins; folding twice changes nothing). Kill -9 before a fold: the next invocation of the
        job (or ``rebuild_latest``) folds it."""
        ...

    def rebuild_latest(self) -> None:
        """Fold every tenant's newest finished run (after history was written outside the store)."""
        ...


@runtime_checkable
class Meta(Protocol):
    """Small named values (``pinstripe_meta``)."""

    def remember(self, key: str, value: str) -> str | None:
        """Store ``value`` under ``key`` and return the value it replaced (None if new); committed."""
        ...

    def recall(self, key: str) -> str | None:
        """The value under ``key``, or None. Reads only."""
        ...


@runtime_checkable
class Maintenance(Protocol):
    """Steps run apart from the record path; opening a store runs none of them."""

    def maintain(self, now: datetime | None = None) -> bool:
        """Prune unless a prune ran in the last day (kept in meta as ``pruned_at``), in one transaction that
        waits for others' locks only briefly: True when it pruned. Never raises for the store: when it cannot
        run now (a table locked, the database down or refusing, a stop) it logs a warning, returns False and
        leaves the store's state as it was; the next command tries again. ``open_store`` runs it for commands
        that write; read-only commands never do. Kill -9 midway: nothing of it is committed."""
        ...

    def prune(self, now: datetime | None = None) -> int:
        """Delete finished runs started more than ``history_days`` ago (never a held row: a lock stays),
        finished ticks, ended invocations and newest statuses as old; returns the runs deleted. Nothing
        with ``history_days`` 0. Each table's delete commits on its own (a kill -9 may leave the later
        tables for the next prune). Retried and raising like every call."""
        ...


@runtime_checkable
class History(Protocol):
    """The public read API (the CLI's history, the dashboard's ``reads.HistoryQueries``). Nothing writes
    (except committing what this process has waiting, so that it reads its own writes)."""

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, written with ``?`` placeholders for either database."""
        ...

    def present(self, row: Row) -> Row:
        """A run row as shown: ``running`` with a holder provably gone reads ``abandoned`` (ended at its
        last heartbeat), integer tenant ids are ints, the process token is dropped. Changes ``row``."""
        ...

    def holder_alive(self, host: str | None, pid: int | None, token: str | None, heartbeat: str | None) -> bool:
        """False only when the named holder is provably gone (or names no process)."""
        ...

    def runs(self, *, job: str | None = None, tenant: str | None = None, status: str | None = None,
             limit: int | None = 50, invocation: str | None = None, since: str | None = None) -> list[Row]:
        """Runs, newest first, filtered; ``status`` matches what is shown (``abandoned`` included);
        ``invocation``: its runs only; ``since``: started at or after that ISO UTC time."""
        ...

    def last_runs(self) -> dict[str, Row]:
        """The newest run of every job, by job."""
        ...

    def failed_tenants(self, job: str) -> list[str]:
        """Tenants (as text) whose newest run of ``job`` is to be rerun (failed, timed out, interrupted,
        skipped, queued or abandoned)."""
        ...


@runtime_checkable
class Pauses(Protocol):
    """Paused jobs, and paused tenants of a job: not fired by the scheduler, refused by a manual run."""

    def pause(self, job: str, tenant: Any = None, *, who: str, reason: str | None = None) -> bool:
        """Pause ``job`` (``tenant`` None) or one tenant of it, committed when this returns. True when it was
        not paused; an existing pause is kept as it was (who, why, when)."""
        ...

    def unpause(self, job: str, tenant: Any = None) -> bool:
        """Lift that pause, committed when this returns; True when there was one."""
        ...

    def pauses(self, job: str | None = None) -> list[Row]:
        """Every pause (of ``job``): job, tenant (None for the whole job), who, reason, paused_at. Reads only."""
        ...

    def paused(self, job: str) -> Row | None:
        """The whole job's pause, or None. Reads only (one primary-key read)."""
        ...

    def paused_tenants(self, job: str) -> dict[str, Row]:
        """The paused tenants of ``job``: tenant id as text -> its pause. Reads only."""
        ...


@runtime_checkable
class Audit(Protocol):
    """The audit trail of manual actions. Append-only; pruned after ``history_days``."""

    def audit(self, action: str, *, who: str, source: str = "cli", job: str | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Append one action (``source``: cli, dashboard or api; ``details`` kept as JSON, capped, secrets
        masked), committed when this returns. Kill -9 before: the action is not recorded."""
        ...

    def audit_trail(self, *, job: str | None = None, action: str | None = None, limit: int | None = 50) -> list[Row]:
        """Actions, newest first: id, at, who, source, action, job, details (decoded). Reads only."""
        ...


@runtime_checkable
class Cancels(Protocol):
    """Requests to stop an invocation, wherever it runs."""

    def request_cancel(self, invocation: str, *, who: str, reason: str | None = None) -> bool:
        """Record the request, committed when this returns; True for the first (later ones change nothing)."""
        ...

    def cancel_request(self, invocation: str, *, poll: bool = False) -> Row | None:
        """The request (invocation, who, reason, requested_at), or None: one primary-key read, cheap enough to
        poll every second; it does not commit this process's waiting writes. ``poll``: retried for about a
        second only, and its ``StateUnavailable`` leaves the store's fail-fast state as it was."""
        ...

    def withdraw_cancel(self, invocation: str) -> bool:
        """Forget the request (the invocation is resumed), committed when this returns; True if there was one."""
        ...


@runtime_checkable
class Store(Runs, Claims, Ticks, Slots, Invocations, InvocationQueries, LatestStatus, Meta, Maintenance, History,
            Pauses, Audit, Cancels, Protocol):
    """Every contract: what ``StateStore`` is."""

    @property
    def local(self) -> bool:
        """True for a store on this machine only (SQLite): not shared by a fleet."""
        ...

    def close(self) -> None:
        """Commit what waits (logged, not raised, when the store is down), stop the heartbeat, disconnect."""
        ...


@runtime_checkable
class Limits(Protocol):
    """Named limits shared by every process and host on this store (``limits.py``, issue #22)."""

    def take_tokens(self, name: str, bucket: str, count: int, window: float, want: int, hold: float) -> Any:
        """Up to ``want`` tokens of the rate limit ``name`` for ``bucket`` (``count`` per ``window`` seconds):
        a ``Grant`` with the number granted (0 when none may be now, with ``retry_in`` seconds to wait) and
        its block id. Guarantees: the tokens of all blocks ending within any ``window`` never exceed
        ``count``; each granted token is to be used within ``hold`` seconds of sending the request (the
        block ends then, on the database's clock). Changes: one committed row per grant; deletes the
        bucket's blocks that left the window. Raises ``StateUnavailable`` like every call. Kill -9 of a
        holder: its block counts until it leaves the window (``hold + window`` at most), then is gone."""
        ...

    def return_tokens(self, block: int, unused: int) -> None:
        """Give back ``unused`` tokens of a block this process holds (they stop counting at once).
        Committed; kill -9 before it: they count until the block leaves the window."""
        ...

    def take_limit_slot(self, name: str, bucket: str, cap: int) -> tuple[str, int] | None:
        """One of ``cap`` slots of the concurrency limit ``name`` for ``bucket`` (a tenant slot under a key no
        tenant has: renewed by the heartbeat, released with ``release_slot``), or None when all have live
        holders. Kill -9: the slot is freed by the next taker once the holder is provably gone."""
        ...

    def limit_usage(self, name: str, bucket: str, window: float) -> int:
        """Tokens of ``name``/``bucket`` in blocks ending within the last ``window`` seconds. Reads only."""
        ...
