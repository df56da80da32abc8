"""Tenant slots (``tenant_concurrency``): at most ``cap`` runs of one tenant at a time, of any jobs, across
processes and hosts. A slot is a row naming its holder, renewed by the heartbeat like a lease; the slot of a
holder that is provably gone is taken over."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import HOST
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

_INSERT = ("INSERT INTO pinstripe_slots (tenant, slot, host, pid, pid_token, heartbeat_at) VALUES "
           "(?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING slot")


class SlotRecords:
    """``StateStore``'s tenant slots (see ``contracts.Slots``)."""

    engine: Engine

    def take_slot(self, tenant: Any, cap: int) -> tuple[str, int] | None:
        """One of ``cap`` slots of this tenant (runs of any jobs, across processes and hosts), or None when
        all are held by live holders. Slots of holders that are provably gone are freed."""
        engine = self.engine
        key = str(tenant)
        now = engine.now()

        def take(conn: Connection) -> int | None:
            mine = (HOST, engine.pid, engine.token, now)
            for slot in range(cap):
                if engine.execute(conn, _INSERT, (key, slot, *mine)).fetchone():
                    return slot
            for slot, host, pid, token, heartbeat in engine.execute(
                    conn, "SELECT slot, host, pid, pid_token, heartbeat_at FROM pinstripe_slots WHERE tenant = ? "
                          "AND slot < ?", (key, cap)).fetchall():
                if not engine.holder_alive(host, pid, token, heartbeat):
                    engine.execute(conn, "DELETE FROM pinstripe_slots WHERE tenant = ? AND slot = ? AND pid IS NOT "
                                         "DISTINCT FROM ? AND host IS NOT DISTINCT FROM ?", (key, slot, pid, host))
                    if engine.execute(conn, _INSERT, (key, slot, *mine)).fetchone():
                        return int(slot)
            return None

        slot = engine.call(take)
        if slot is None:
            return None
        engine.slots.add((key, slot))
        engine.hold()
        return key, slot

    def release_slot(self, slot: tuple[str, int]) -> None:
        """Give a slot back (this process's only)."""
        release(self.engine, slot)


def release(engine: Engine, slot: tuple[str, int]) -> None:
    engine.slots.discard(slot)
    engine.call(lambda conn: engine.execute(conn, "DELETE FROM pinstripe_slots WHERE tenant = ? AND slot = ? AND "
                                                  "pid = ? AND host = ?", (*slot, engine.pid, HOST)))
