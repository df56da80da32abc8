"""Pauses: a job (or one tenant of it) that the scheduler does not fire and a manual run refuses without
``--force``. One row per (job, tenant); the whole job's pause has tenant key ``*``. A pause names who set
it, why and when, so that the listing and the dashboard can say so."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import Row, storable
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

WHOLE_JOB = "*"  # the tenant key of a pause of the whole job
_COLUMNS = ("job", "tenant", "who", "reason", "paused_at")


def _key(tenant: Any) -> str:
    return WHOLE_JOB if tenant is None else str(tenant)


class PauseRecords:
    """``StateStore``'s pauses (see ``contracts.Pauses``)."""

    engine: Engine

    def pause(self, job: str, tenant: Any = None, *, who: str, reason: str | None = None) -> bool:
        """Pause ``job`` (or one tenant of it). True when it was not paused; a pause already in place is
        kept as it was (its who, why and when)."""
        engine = self.engine
        now = engine.now()

        def write(conn: Connection) -> bool:
            cursor = engine.execute(conn, "INSERT INTO pinstripe_pauses (job, tenant_key, tenant, who, reason, "
                                          "paused_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                    (job, _key(tenant), None if tenant is None else str(tenant), storable(who, 200),
                                     storable(reason, 1000), now))
            return bool(cursor.rowcount == 1)

        return engine.call(write)

    def unpause(self, job: str, tenant: Any = None) -> bool:
        """Lift the pause of ``job`` (or of one tenant of it). True when there was one."""
        engine = self.engine
        cursor = engine.call(lambda conn: engine.execute(
            conn, "DELETE FROM pinstripe_pauses WHERE job = ? AND tenant_key = ?", (job, _key(tenant))))
        return bool(cursor.rowcount == 1)

    def pauses(self, job: str | None = None) -> list[Row]:
        """Every pause (of ``job``), by job then tenant (the whole job's first, its ``tenant`` None)."""
        where, params = ("WHERE job = ?", (job,)) if job is not None else ("", ())
        rows = self.engine.query(f"SELECT job, tenant, who, reason, paused_at FROM pinstripe_pauses {where} "
                                 "ORDER BY job, CASE WHEN tenant IS NULL THEN 0 ELSE 1 END, tenant_key", params)
        return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]

    def paused(self, job: str) -> Row | None:
        """The pause of the whole job, or None. One primary-key read."""
        rows = self.engine.query("SELECT job, tenant, who, reason, paused_at FROM pinstripe_pauses WHERE job = ? "
                                 "AND tenant_key = ?", (job, WHOLE_JOB))
        return dict(zip(_COLUMNS, rows[0], strict=True)) if rows else None

    def paused_tenants(self, job: str) -> dict[str, Row]:
        """The paused tenants of ``job``: tenant id (as text) -> its pause."""
        return {row["tenant"]: row for row in self.pauses(job) if row["tenant"] is not None}
