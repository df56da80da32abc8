"""Maintenance: pruning history older than ``history_days`` (at most once a day per store, the check one
indexed read), and rebuilding the tenants' newest statuses. Opening a store does none of it: ``open_store``
runs ``maintain`` for the commands that write (never for read-only ones)."""
from __future__ import annotations

from datetime import datetime, timedelta

from pinstripe_jobs.store.common import HELD_SQL, stamp
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.latest import rebuild

PRUNED_AT = "pruned_at"  # the meta key of the last prune


class Maintenance:
    """``StateStore``'s maintenance steps (see ``contracts.Maintenance``)."""

    engine: Engine
    history_days: float

    def maintain(self, now: datetime | None = None) -> bool:
        """Prune at most once a day per store (the check is one indexed read). True when it pruned."""
        engine = self.engine
        now = now or engine.clock()
        rows = engine.query("SELECT value FROM pinstripe_meta WHERE key = ?", (PRUNED_AT,))
        if rows and now - datetime.fromisoformat(rows[0][0]) < timedelta(days=1):
            return False
        self.prune(now)
        engine.call(lambda conn: engine.execute(conn, "INSERT INTO pinstripe_meta VALUES (?, ?) ON CONFLICT (key) DO "
                                                      "UPDATE SET value = excluded.value", (PRUNED_AT, stamp(now))))
        return True

    def prune(self, now: datetime | None = None) -> int:
        """Delete what is older than ``history_days``: finished runs (never a held one), finished ticks,
        ended invocations, newest statuses. Returns how many runs it deleted."""
        if not self.history_days:
            return 0
        engine = self.engine
        cutoff = stamp((now or engine.clock()) - timedelta(days=self.history_days))
        engine.flush()

        def delete(conn: Connection) -> int:
            removed = engine.execute(conn, f"DELETE FROM pinstripe_runs WHERE started_at < ? AND status NOT IN "
                                           f"{HELD_SQL}", (cutoff,)).rowcount
            engine.execute(conn, "DELETE FROM pinstripe_ticks WHERE claimed_at < ? AND finished_at IS NOT NULL",
                           (cutoff,))
            engine.execute(conn, "DELETE FROM pinstripe_invocations WHERE started_at < ? AND ended_at IS NOT NULL",
                           (cutoff,))
            engine.execute(conn, "DELETE FROM pinstripe_latest WHERE ended_at < ?", (cutoff,))
            return removed

        return engine.call(delete)

    def rebuild_latest(self) -> None:
        """Fold every tenant's newest finished run into the newest statuses (for history written outside the
        store, e.g. loaded in bulk)."""
        engine = self.engine
        engine.flush()
        engine.call(lambda conn: engine.transaction(conn, lambda: rebuild(conn, engine.execute)))
