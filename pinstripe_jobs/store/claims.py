"""Claims: a page of tenants claimed ahead of running them (each gets its lock and a ``queued`` row, in one
transaction), then started one by one (``running``, durably, before its job is called; concurrent starts
share commits)."""
from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from pinstripe_jobs.store.common import HOST, QUEUED, Lease, iso, tenant_key, tenant_kind
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine


class ClaimRecords:
    """``StateStore``'s claims (see ``contracts.Claims``)."""

    engine: Engine

    def claim(self, job: str, tenants: list[Any], trigger: str, *, tick: datetime | None = None, lock: bool = True,
              invocation: str | None = None) -> dict[str, Lease]:
        """Claim a page of tenants ahead of running them, in one transaction: each gets its lock and a
        ``queued`` history row. Returns tenant key -> lease for those claimed; a tenant whose lock is held
        (or that appears twice) is left out and goes through ``begin_run`` when its turn comes. A claimed
        tenant runs after ``start`` (which marks it ``running``, durably, before its job is called); one
        that never starts is ended as skipped, or, if this process dies first, stays ``queued`` (never
        started: resumed by the next tick, rerun by ``--only-failed``)."""
        engine = self.engine
        now = engine.now()
        token = os.urandom(12).hex()  # this claim's rows: found again if a dropped connection hid its commit
        rows, keys = [], []
        for tenant in tenants:
            key = tenant_key(tenant)
            if key in keys:
                continue
            keys.append(key)
            rows.append((job, None if tenant is None else str(tenant), tenant_kind(tenant), trigger, iso(tick), now,
                         QUEUED, HOST, engine.pid, engine.token, key if lock else None, now, invocation, token))
        if not rows:
            return {}
        write = _ClaimWrite(engine, job, keys, rows, token)
        found = engine.call(lambda conn: engine.transaction(conn, lambda: write(conn), pipelined=True))
        if lock:
            claimed = {key: Lease(run_id) for run_id, key in found}
        else:  # no lock, no conflict: ids in the order of the values
            claimed = {key: Lease(run_id) for key, run_id in zip(keys, sorted(r[0] for r in found), strict=False)}
        for lease in claimed.values():
            engine.leases.add(lease.run_id)
        if claimed:
            engine.hold()
        return claimed

    def start(self, lease: Lease, linger: float = 0.0) -> bool:
        """Mark a claimed run ``running``, durably, before its job is called. Starts of concurrent runs are
        committed together (with any deferred run ends): whoever holds the connection commits them all;
        ``linger`` (under concurrency) waits that long first, so that the starts around it join one commit.
        False when the claim was taken over meanwhile (this process looked dead: it must not run)."""
        engine = self.engine
        engine.starting[lease.run_id] = None  # no lock: a dict's item assignment is atomic
        if linger:
            time.sleep(linger)
        try:
            engine.call(lambda conn: engine.commit_pending(conn) if lease.run_id in engine.starting else None)
        except BaseException:
            engine.starting.pop(lease.run_id, None)  # not started: its row stays queued, never marked later
            raise
        return engine.started.pop(lease.run_id, True)


class _ClaimWrite:
    """The claim's write: its rows inserted, or, on a retry, those the try before committed (it may have
    committed before its connection dropped: the rows carry this claim's token)."""

    def __init__(self, engine: Engine, job: str, keys: list[str], rows: list[tuple[Any, ...]], token: str):
        values = ", ".join(["(?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        self.insert = ("INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, attempt, started_at, "
                       f"status, host, pid, pid_token, lock_key, heartbeat_at, invocation, lease) VALUES {values} "
                       "ON CONFLICT DO NOTHING RETURNING id, COALESCE(tenant, '-')")
        self.flat = [value for row in rows for value in row]
        named = [k for k in keys if k != "-"]
        self.mine = (f"SELECT id, COALESCE(tenant, '-') FROM pinstripe_runs WHERE job = ? AND (tenant IN "
                     f"({', '.join('?' * len(named)) or 'NULL'}){' OR tenant IS NULL' if '-' in keys else ''}) "
                     "AND lease = ?")
        self.mine_params = (job, *named, token)
        self.engine = engine
        self.tries = 0

    def __call__(self, conn: Connection) -> list[Any]:
        self.tries += 1
        if self.tries > 1:  # a retry: the try before may have committed before its connection dropped
            found: list[Any] = self.engine.execute(conn, self.mine, self.mine_params).fetchall()
            if found:
                return found
        return self.engine.execute(conn, self.insert, self.flat).fetchall()
