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
        """Prune unless a prune ran in the last day (the check is one indexed read), in one transaction that
        waits for others' locks only briefly. Housekeeping never holds a command up: when it cannot run now
        (a table locked, the database down) it is skipped with a warning. True when it pruned."""
        engine = self.engine
        moment = now or engine.clock()
        engine.flush()
        done = engine.try_once(lambda conn: engine.transaction(conn, lambda: self._prune_if_due(conn, moment)))
        return bool(done)

    def _prune_if_due(self, conn: Connection, now: datetime) -> bool:
        engine = self.engine
        row = engine.execute(conn, "SELECT value FROM pinstripe_meta WHERE key = ?", (PRUNED_AT,)).fetchone()
        if row and now - datetime.fromisoformat(row[0]) < timedelta(days=1):
            return False
        wait = engine.dialect.short_lock_wait()
        if wait:
            engine.execute(conn, wait)
        if self.history_days:
            _delete_old(engine, conn, stamp(now - timedelta(days=self.history_days)))
        engine.execute(conn, "INSERT INTO pinstripe_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                             "excluded.value", (PRUNED_AT, stamp(now)))
        return True

    def prune(self, now: datetime | None = None) -> int:
        """Delete what is older than ``history_days``: finished runs (never a held one), finished ticks,
        ended invocations, newest statuses. Returns how many runs it deleted."""
        if not self.history_days:
            return 0
        engine = self.engine
        cutoff = stamp((now or engine.clock()) - timedelta(days=self.history_days))
        engine.flush()
        return engine.call(lambda conn: _delete_old(engine, conn, cutoff))

    def rebuild_latest(self) -> None:
        """Fold every tenant's newest finished run into the newest statuses (for history written outside the
        store, e.g. loaded in bulk)."""
        engine = self.engine
        engine.flush()
        engine.call(lambda conn: engine.transaction(conn, lambda: rebuild(conn, engine.execute)))


def _delete_old(engine: Engine, conn: Connection, cutoff: str) -> int:
    """Delete history older than ``cutoff`` (never a held run); the runs deleted."""
    removed = engine.execute(conn, f"DELETE FROM pinstripe_runs WHERE started_at < ? AND status NOT IN {HELD_SQL}",
                             (cutoff,)).rowcount
    engine.execute(conn, "DELETE FROM pinstripe_ticks WHERE claimed_at < ? AND finished_at IS NOT NULL", (cutoff,))
    engine.execute(conn, "DELETE FROM pinstripe_invocations WHERE started_at < ? AND ended_at IS NOT NULL",
                   (cutoff,))
    engine.execute(conn, "DELETE FROM pinstripe_latest WHERE ended_at < ?", (cutoff,))
    engine.execute(conn, "DELETE FROM pinstripe_audit WHERE at < ?", (cutoff,))
    engine.execute(conn, "DELETE FROM pinstripe_cancels WHERE requested_at < ?", (cutoff,))
    return removed
