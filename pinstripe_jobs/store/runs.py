"""Runs and their leases: a run's row, written when it starts and updated when it ends.

**Locks are leases, not sessions**: the lock of (job, tenant) *is* its ``queued``/``running`` row (a partial
unique index on job and lock key), naming its holder (host, pid, process start time) and a heartbeat the
holder renews while it runs. A second run may take the lock over only when the holder is provably gone: its
process is dead on this host, or its heartbeat is older than ``lock_stale_s``. A dropped connection is not
a lost lock: the holder reconnects and records its own outcome.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pinstripe_jobs.store.common import (
    ABANDONED,
    HELD_SQL,
    HOST,
    LIVE,
    MAX_TRACEBACK,
    QUEUED,
    SKIPPED,
    Lease,
    iso,
    storable,
    tenant_key,
    tenant_kind,
)
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.slots import release as release_slot

_INSERT = ("INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, attempt, started_at, status, host, "
           "pid, pid_token, lock_key, heartbeat_at, lease, invocation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
           "?, ?) ON CONFLICT DO NOTHING RETURNING id")


class RunRecords:
    """``StateStore``'s runs and leases (see ``contracts.Runs``)."""

    engine: Engine

    def begin_run(self, job: str, tenant: Any, trigger: str, *, tick: datetime | None = None, attempt: int = 1,
                  lock: bool = True, invocation: str | None = None) -> Lease | None:
        """Record a started run. With ``lock``, return None when a live run of (job, tenant) holds the lock."""
        engine = self.engine
        key = tenant_key(tenant) if lock else None
        lease = os.urandom(12).hex()
        now = engine.now()
        values = (job, None if tenant is None else str(tenant), tenant_kind(tenant), trigger, iso(tick), attempt, now,
                  LIVE, HOST, engine.pid, engine.token, key, now, lease, invocation)

        def attempt_lock(conn: Connection) -> int | None:
            for _ in range(10):
                row = engine.in_transaction(conn, lambda: engine.execute(conn, _INSERT, values).fetchone())
                if row is not None:
                    return int(row[0])
                holder = engine.execute(conn, "SELECT id, host, pid, pid_token, heartbeat_at, lease, status FROM "
                                              f"pinstripe_runs WHERE job = ? AND lock_key = ? AND status IN {HELD_SQL}",
                                        (job, key)).fetchone()
                if holder is None:
                    continue
                if holder[5] == lease:  # our own insert, committed before the connection dropped
                    return int(holder[0])
                if engine.holder_alive(*holder[1:5]):
                    return None
                take_over(engine, conn, holder[0], holder[6], holder[4] or now)
            return None

        run_id = engine.call(attempt_lock)
        if run_id is None:
            return None
        engine.hold(run_id)
        return Lease(run_id)

    def holder(self, job: str, tenant: Any) -> str | None:
        """Who holds the lock of (job, tenant): host, pid and since when, for a person who waits."""
        engine = self.engine
        row = engine.call(lambda conn: engine.execute(conn, "SELECT host, pid, started_at FROM pinstripe_runs WHERE "
                                                            f"job = ? AND lock_key = ? AND status IN {HELD_SQL}",
                                                      (job, tenant_key(tenant))).fetchone())
        return f"host {row[0]}, pid {row[1]}, since {row[2]}" if row else None

    def end_run(self, lease: Lease, status: str, error: str | None = None, *, traceback: str | None = None,
                duration_s: float | None = None, defer: bool = False) -> None:
        """Record how a run ended and release its lock. With ``defer``, the update is committed together
        with this store's next write (the next run's start), at the latest by ``flush()`` or a second later
        (the heartbeat thread): back-to-back runs then cost one commit each instead of two."""
        engine = self.engine
        values = (status, engine.now(), storable(error), storable(traceback, MAX_TRACEBACK),
                  None if duration_s is None else round(duration_s * 1000, 3), lease.run_id)
        engine.leases.discard(lease.run_id)
        if lease.slot is not None:  # at once, not deferred: another run of this tenant may be waiting
            release_slot(engine, lease.slot)
        engine.defer_end(values)
        if not defer:
            engine.flush()

    def flush(self) -> None:
        """Commit deferred run ends now, and fold what ended into the tenants' newest statuses."""
        self.engine.flush()

    def record(self, job: str, tenant: Any, trigger: str, status: str, *, error: str | None = None,
               tick: datetime | None = None, invocation: str | None = None) -> None:
        """A run that never started (skipped): one finished row."""
        self.record_many(job, [tenant], trigger, status, error=error, tick=tick, invocation=invocation)

    def record_many(self, job: str, tenants: Iterable[Any], trigger: str, status: str, *, error: str | None = None,
                    tick: datetime | None = None, invocation: str | None = None) -> None:
        """Runs that never started (skipped by a stop, --fail-fast, --max-failures): finished rows, with each
        tenant's newest status, in one transaction per 500."""
        engine = self.engine
        now = engine.now()
        rows = [(job, None if t is None else str(t), tenant_kind(t), trigger, iso(tick), now, now, status,
                 storable(error), HOST, engine.pid, invocation) for t in tenants]
        for chunk in range(0, len(rows), 500):
            _insert_finished(engine, rows[chunk:chunk + 500])


def take_over(engine: Engine, conn: Connection, run_id: int, status: str, since: str) -> None:
    """The lock of a holder that is provably gone: its run reads ``abandoned``, or ``skipped`` when it
    was only claimed and never started."""
    sql = "UPDATE pinstripe_runs SET status = ?, ended_at = ?, error = ? WHERE id = ? AND status = ?"
    if status == QUEUED:
        error = "never started: its process is gone (claimed ahead, then taken over by a later run)"
        engine.execute(conn, sql, (SKIPPED, since, error, run_id, QUEUED))
    else:
        engine.execute(conn, sql, (ABANDONED, since, "its process is gone (taken over by a later run)", run_id, LIVE))
    engine.folder.add([run_id])


def _insert_finished(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    """Finished rows and the tenants' newest statuses, in one transaction."""
    engine.call(lambda conn: engine.transaction(conn, lambda: _insert_rows(engine, conn, rows)))


def _insert_rows(engine: Engine, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
    ids = [row[0] for row in engine.execute(
        conn, "INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, started_at, ended_at, status, "
              f"error, host, pid, invocation) VALUES {values} RETURNING id",
        [value for row in rows for value in row]).fetchall()]
    engine.folder.add(ids)
    engine.folder.fold(conn, engine.execute)

