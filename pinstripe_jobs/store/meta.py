"""Meta: small named values kept in the store (``pinstripe_meta``), e.g. the bot's schedule fingerprint."""
from __future__ import annotations

from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

_UPSERT = "INSERT INTO pinstripe_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"


class MetaRecords:
    """``StateStore``'s meta values (see ``contracts.Meta``)."""

    engine: Engine

    def remember(self, key: str, value: str) -> str | None:
        """Store ``value`` under ``key`` (the meta table) and return what was there before."""
        engine = self.engine

        def swap(conn: Connection) -> str | None:
            row = engine.execute(conn, "SELECT value FROM pinstripe_meta WHERE key = ?", (key,)).fetchone()
            engine.execute(conn, _UPSERT, (key, value))
            return str(row[0]) if row else None

        return engine.call(swap)

    def recall(self, key: str) -> str | None:
        """The value stored under ``key`` (the meta table), or None."""
        engine = self.engine
        row = engine.call(lambda conn: engine.execute(conn, "SELECT value FROM pinstripe_meta WHERE key = ?",
                                                      (key,)).fetchone())
        return str(row[0]) if row else None
