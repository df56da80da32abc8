"""Cancel requests: an invocation asked to stop (``pinstripe cancel``, the dashboard), wherever it runs. The
process that holds the invocation polls its request about once a second (one primary-key read) and stops
starting tenants; fleet workers read it before each tenant. A request is never withdrawn."""
from __future__ import annotations

from pinstripe_jobs.store.common import Row, storable
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

_COLUMNS = ("invocation", "who", "reason", "requested_at")


class CancelRecords:
    """``StateStore``'s cancel requests (see ``contracts.Cancels``)."""

    engine: Engine

    def request_cancel(self, invocation: str, *, who: str, reason: str | None = None) -> bool:
        """Ask ``invocation`` to stop. True for the first request; a later one changes nothing."""
        engine = self.engine

        def write(conn: Connection) -> bool:
            cursor = engine.execute(conn, "INSERT INTO pinstripe_cancels (invocation, who, reason, requested_at) "
                                          "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                    (invocation, storable(who, 200), storable(reason, 1000), engine.now()))
            return bool(cursor.rowcount == 1)

        return engine.call(write)

    def cancel_request(self, invocation: str) -> Row | None:
        """The request to stop ``invocation`` (who, reason, when), or None. One primary-key read, without
        committing this process's waiting writes (it is polled while a run is writing)."""
        engine = self.engine
        row = engine.call(lambda conn: engine.execute(
            conn, "SELECT invocation, who, reason, requested_at FROM pinstripe_cancels WHERE invocation = ?",
            (invocation,)).fetchone())
        return dict(zip(_COLUMNS, row, strict=True)) if row else None


def cancel_reason(request: Row) -> str:
    """How a tenant not run because of ``request`` is recorded: ``cancelled by WHO: REASON``."""
    reason = request.get("reason")
    return f"cancelled by {request.get('who') or 'someone'}" + (f": {reason}" if reason else "")
