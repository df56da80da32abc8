"""The store's engine: one connection per store, behind a lock; every operation retried with backoff;
transactions that carry the writes waiting for a commit (deferred run ends, pending starts, the folding
of ended runs into the tenants' newest statuses); the heartbeat thread that renews what this process holds.

Every operation is time-limited (connect, statement and lock timeouts on PostgreSQL, a short busy timeout on
SQLite) and retried with backoff, reconnecting, for up to ``retry_s`` seconds; past that it raises
``StateUnavailable`` (exit 3), never a raw driver error. What differs between databases is the dialect's.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pinstripe_jobs.errors import mask_secrets
from pinstripe_jobs.execution.signals import RunInterrupted
from pinstripe_jobs.store.common import (
    HELD_SQL,
    HOST,
    LIVE,
    StateUnavailable,
    first_line,
    log,
    process_alive,
    process_token,
    stamp,
)
from pinstripe_jobs.store.dialects import Connection, Cursor, Dialect, Params
from pinstripe_jobs.store.latest import Folder

T = TypeVar("T")
DEFERRED_S = 1.0  # a deferred run end is committed by the heartbeat thread after this long
_NO_GUARD: AbstractContextManager[Any] = nullcontext()
_END = "UPDATE pinstripe_runs SET status = ?, ended_at = ?, error = ?, traceback = ?, duration_ms = ? WHERE id = ?"
Marked = list[tuple[Any, list[int]]]  # per chunk of starts: its rows (or the cursor to read them), its ids


class Engine:
    """The connection and what rides on its commits. Thread-safe: one shared connection behind a lock."""

    def __init__(self, url: str, dialect: Dialect, *, clock: Callable[[], datetime], retry_s: float,
                 lock_stale_s: float, sleep: Callable[[float], Any] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 guard: Callable[[], AbstractContextManager[Any]] | None = None):
        self.url = url
        self.dialect = dialect
        self.clock = clock
        self.retry_s = retry_s
        self.lock_stale_s = lock_stale_s
        self.sleep: Callable[[float], Any] = sleep or time.sleep
        self.cancelled: Callable[[], bool] = cancelled or (lambda: False)  # a stop that may cut retries short
        self.guard = guard  # a context manager factory: a signal may cut a wait short (StopFlag.interruptible)
        self.pid = os.getpid()
        self.token = process_token(self.pid)
        self.mutex = threading.RLock()
        self.conn: Connection | None = None
        self.down_since: float | None = None  # set after the budget ran out once: fail fast from then on
        self.deferred: list[tuple[Any, ...]] = []  # run-end updates that ride on the next commit
        self.deferred_since = 0.0  # when the oldest of them was deferred (the heartbeat commits them)
        self.starting: dict[int, None] = {}  # claimed runs about to start: committed together
        self.started: dict[int, bool] = {}  # ... of those, the few whose claim was taken over: False
        self.folder = Folder()
        self.leases: set[int] = set()  # run rows this process holds: their heartbeats are renewed
        self.ticks: set[tuple[str, str]] = set()  # tick claims this process is firing
        self.slots: set[tuple[str, int]] = set()  # tenant slots (tenant_concurrency) this process holds
        self.invocations: dict[str, tuple[int, int | None]] = {}  # held invocations: (tenants scanned, total)
        self.heartbeat: threading.Thread | None = None
        self.closed = threading.Event()

    # -- calls -------------------------------------------------------------------------------------
    def call(self, operation: Callable[[Connection], T], budget: float | None = None) -> T:
        """Run ``operation(connection)`` under the lock, retrying transient failures (a dropped connection,
        a server restart, a lock or statement timeout, a full disk) with backoff and a fresh connection
        for up to ``retry_s`` seconds (or ``budget``). Raises ``StateUnavailable`` when the budget is spent,
        when a stop cuts it short, or when the database refuses the operation (no right, no table)."""
        with self.mutex:
            started = time.monotonic()
            delay = 0.05
            if budget is None:
                budget = 0.0 if self.down_since is not None else self.retry_s
            warned = False
            while True:
                try:
                    with self.guard() if self.guard else _NO_GUARD:
                        if self.conn is None:
                            self.conn = self.dialect.connect()
                        result = operation(self.conn)
                    self.down_since = None
                    return result
                except RunInterrupted:  # the grace period is over: give up on a database that hangs
                    self.discard()
                    self.down_since = self.down_since or time.monotonic()
                    raise StateUnavailable(f"The state store {mask_secrets(self.url)} did not answer before the "
                                           "grace period ended.", cause="interrupted") from None
                except Exception as exc:
                    self._give_up_unless_transient(exc)
                    elapsed = time.monotonic() - started
                    if elapsed + delay > budget or self.cancelled():
                        self.down_since = self.down_since or time.monotonic()
                        raise StateUnavailable(
                            f"The state store {mask_secrets(self.url)} is unavailable: {first_line(exc)}",
                            f"Tried for {elapsed:.0f}s (state_retry_s = {self.retry_s:g}). Check the database, "
                            "or `state` in the config / PINSTRIPE_STATE.", cause=first_line(exc)) from None
                    if not warned and elapsed + delay > 1:  # say so once a person would notice the wait
                        warned = True
                        log().warning("state store %s: %s; retrying for up to %gs", mask_secrets(self.url),
                                      first_line(exc), budget)
                    self.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def try_once(self, operation: Callable[[Connection], T]) -> T | None:
        """``operation`` once, without retrying or waiting out an outage, for housekeeping that the next
        command can do as well: None when it could not run now (a lock held, the database gone or refusing,
        a stop), logged as a warning. Whether the store counts as down is left as it was."""
        down = self.down_since
        try:
            return self.call(operation, budget=0)
        except StateUnavailable as exc:
            self.down_since = down
            log().warning("state store housekeeping skipped (the next command tries again): %s", exc.message)
            return None

    def _give_up_unless_transient(self, exc: Exception) -> None:
        """Re-raise what is not a passing fault (a driver's refusal as StateUnavailable); else drop the
        connection, to be retried on a fresh one."""
        if not self.dialect.transient(exc):
            if self.dialect.driver_error(exc):  # a refusal, not an outage: say so (exit 3), no traceback
                self.discard()
                raise StateUnavailable(
                    f"The state store {mask_secrets(self.url)} refused an operation: {first_line(exc)}",
                    "Check the database user's rights on the pinstripe_* tables, and `state` in the "
                    "config / PINSTRIPE_STATE.", cause=first_line(exc)) from None
            raise exc
        self.discard()

    def discard(self) -> None:
        """Drop the connection (the next call opens a new one)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            self.dialect.discard(conn)

    def execute(self, conn: Connection, sql: str, params: Params = ()) -> Cursor:
        """One statement (``?`` placeholders) on ``conn``; its cursor."""
        cursor: Cursor = conn.cursor()
        cursor.execute(self.dialect.sql(sql), params)
        return cursor

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of one read (``?`` placeholders), after committing what waits for a commit (so a read
        sees this process's own writes); retried like every call."""
        self.flush()
        rows: list[tuple[Any, ...]] = self.call(lambda conn: self.execute(conn, sql, params).fetchall())
        return rows

    def close(self) -> None:
        """Commit what waits (logging, not raising, if the store is down), stop the heartbeat, disconnect."""
        self.closed.set()
        try:
            self.flush()
        except StateUnavailable as exc:
            log().error("%s", exc.message)
        with self.mutex:
            self.discard()

    def holder_alive(self, host: str | None, pid: int | None, token: str | None, heartbeat: str | None) -> bool:
        """Alive unless provably gone: a dead process on this host, or a stale heartbeat elsewhere."""
        if not pid:
            return False  # released
        if host == HOST:
            return process_alive(pid, token or "")
        if not heartbeat:
            return True
        return self.clock() - datetime.fromisoformat(heartbeat) < timedelta(seconds=self.lock_stale_s)

    # -- transactions and what rides on them -------------------------------------------------------
    def transaction(self, conn: Connection, operation: Callable[[], T], pipelined: bool = False) -> T:
        """``operation`` in one transaction, with any deferred run ends and pending starts. ``pipelined``
        (PostgreSQL): its statements go in one round trip. What was written leaves the to-do lists only
        once the commit is known to have happened."""
        starts = list(self.starting)
        ends = self.deferred[:]
        try:
            with self.dialect.pipeline(conn, pipelined):
                self.execute(conn, self.dialect.begin)
                if ends:
                    self.write_ends(conn, ends)
                marked = self.write_starts(conn, starts) if starts else []
                result = operation()
                self.execute(conn, "COMMIT")
            lost = self.lost(marked)  # after the pipeline's sync: the commit's outcome is known
        except BaseException:
            _rollback(conn)
            self.folder.settle(committed=False)
            raise
        del self.deferred[:len(ends)]
        self.deferred_since = time.monotonic() if self.deferred else 0.0
        for run_id in starts:
            self.starting.pop(run_id, None)
        for run_id in lost:
            self.started[run_id] = False
        self.folder.settle()
        return result

    def in_transaction(self, conn: Connection, operation: Callable[[], T]) -> T:
        """Commit run ends deferred by ``end_run`` and pending starts together with ``operation`` (one
        commit); with nothing waiting, ``operation`` alone (autocommit)."""
        if not (self.deferred or self.starting):
            return operation()
        return self.transaction(conn, operation)

    def commit_pending(self, conn: Connection) -> None:
        """Commit pending starts, with the deferred run ends (each run's end rides on the next start's
        commit, so that a run that finished is recorded as finished even if this process is killed next;
        grouping them further was measured 1.7x faster on PostgreSQL but would leave finished runs reading
        ``abandoned`` after a kill -9). On PostgreSQL that is one pipelined round trip; a start with no end
        to carry is one statement. Every commit is synchronous: ``synchronous_commit = off`` was measured
        and dropped, as a database restart right after it lost committed run ends (the fault test)."""
        if self.deferred or not self.starting:
            self.transaction(conn, lambda: None, pipelined=True)
            return
        starts = list(self.starting)
        marked = self.write_starts(conn, starts)  # autocommit: one statement, its own transaction
        lost = self.lost(marked)
        for run_id in starts:
            self.starting.pop(run_id, None)
        for run_id in lost:
            self.started[run_id] = False

    def write_starts(self, conn: Connection, ids: list[int]) -> Marked:
        """Mark claimed runs running. Returns what tells, once committed, which claims were taken over
        meanwhile (``lost``): rows at once on SQLite, a cursor read after the pipeline's one round trip on
        PostgreSQL."""
        now = self.now()
        marked: Marked = []
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            cursor = self.execute(conn, f"UPDATE pinstripe_runs SET status = ?, started_at = ?, heartbeat_at = ? "
                                        f"WHERE id IN ({', '.join('?' * len(part))}) AND status IN {HELD_SQL} "
                                        "AND host = ? AND pid = ? AND pid_token = ? "  # ours, not a reused id
                                        "RETURNING id",
                                  (LIVE, now, now, *part, HOST, self.pid, self.token))  # running: ours, retried
            marked.append((self.dialect.rows_now(cursor), part))
        return marked

    @staticmethod
    def lost(marked: Marked) -> set[int]:
        lost: set[int] = set()
        for rows, part in marked:
            live = {row[0] for row in (rows if isinstance(rows, list) else rows.fetchall())}
            lost.update(run_id for run_id in part if run_id not in live)
        return lost

    def write_ends(self, conn: Connection, ends: list[tuple[Any, ...]]) -> None:
        """Run ends, in the caller's transaction (SQLite) or pipelined (PostgreSQL); the tenants' newest
        statuses follow in groups."""
        self.dialect.execute_many(conn, _END, ends)
        self.folder.add(end[-1] for end in ends)
        if self.folder.due():
            self.folder.fold(conn, self.execute)

    def defer_end(self, values: tuple[Any, ...]) -> None:
        """A run end that rides on the next commit. No lock: the list's append is atomic, and a commit takes
        only the ends it wrote off its front; an event loop that ends a run never waits for another
        thread's commit."""
        self.deferred.append(values)
        if not self.deferred_since:
            self.deferred_since = time.monotonic()

    def flush(self) -> None:
        """Commit deferred run ends and pending starts now, and fold what ended into the tenants' newest
        statuses."""
        with self.mutex:
            if self.deferred or self.starting:
                self.call(self.commit_pending)
            if self.folder.unfolded:
                self.call(lambda conn: self.transaction(conn, lambda: self.folder.fold(conn, self.execute)))

    def now(self) -> str:
        """The store clock's time, as stored."""
        return stamp(self.clock())

    # -- heartbeats --------------------------------------------------------------------------------
    @property
    def heartbeat_every(self) -> float:
        return max(self.lock_stale_s / 4, 0.05)

    def hold(self, run_id: int | None = None, tick: tuple[str, str] | None = None,
             invocation: str | None = None) -> None:
        """Renew this run's (or tick claim's, or invocation's) heartbeat from now on, starting the heartbeat
        thread if needed."""
        if run_id is not None:
            self.leases.add(run_id)
        if tick is not None:
            self.ticks.add(tick)
        if invocation is not None:
            self.invocations.setdefault(invocation, (0, None))
        if self.heartbeat is None or not self.heartbeat.is_alive():
            if os.getpid() != self.pid:
                return
            self.heartbeat = threading.Thread(target=self._beat, daemon=True, name="pinstripe-heartbeat")
            self.heartbeat.start()

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self.closed.wait(min(self.heartbeat_every, DEFERRED_S)):
            if os.getpid() != self.pid:
                return
            try:
                if self.deferred_since and time.monotonic() - self.deferred_since >= DEFERRED_S:
                    self.flush()  # run ends wait at most about a second for a commit to ride on
                if time.monotonic() - renewed >= self.heartbeat_every:
                    renewed = time.monotonic()
                    self.renew()
            except Exception as exc:  # the store is down: the next beat tries again; the lock row stands
                log().warning("could not renew leases: %s", getattr(exc, "message", exc))

    def renew(self) -> None:
        """Renew the heartbeat of every lease, tick claim and tenant slot this process holds."""
        runs, ticks, slots = list(self.leases), list(self.ticks), list(self.slots)
        invocations = list(self.invocations.items())
        if not runs and not ticks and not slots and not invocations:
            return
        now = self.now()

        def write(conn: Connection) -> None:
            for chunk in range(0, len(runs), 500):
                ids = runs[chunk:chunk + 500]
                self.execute(conn, f"UPDATE pinstripe_runs SET heartbeat_at = ? WHERE id IN "
                                   f"({', '.join('?' * len(ids))})", (now, *ids))
            for key, tick in ticks:
                self.execute(conn, "UPDATE pinstripe_ticks SET heartbeat_at = ? WHERE job = ? AND tick = ?",
                             (now, key, tick))
            for tenant, slot in slots:
                self.execute(conn, "UPDATE pinstripe_slots SET heartbeat_at = ? WHERE tenant = ? AND slot = ? AND "
                                   "pid = ? AND host = ?", (now, tenant, slot, self.pid, HOST))
            for invocation, (scanned, total) in invocations:  # its heartbeat and how far its tenant scan got
                self.execute(conn, "UPDATE pinstripe_invocations SET heartbeat_at = ?, scanned = ?, total = "
                                   "COALESCE(?, total) WHERE id = ? AND pid = ? AND host = ?",
                             (now, scanned, total, invocation, self.pid, HOST))

        self.call(write)


def _rollback(conn: Connection) -> None:
    try:
        conn.cursor().execute("ROLLBACK")
    except Exception:  # the connection is gone: the transaction went with it
        pass
