"""Cancel requests: an invocation asked to stop (``pinstripe cancel``, the dashboard), wherever it runs. The
process that holds the invocation polls its request about once a second (one primary-key read) and stops
starting tenants; fleet workers read it before each tenant. A request stands until the invocation is
resumed (``withdraw_cancel``)."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import Row, StateUnavailable, storable
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

_COLUMNS = ("invocation", "who", "reason", "requested_at")
POLL_BUDGET_S = 1.0


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

    def cancel_request(self, invocation: str, *, poll: bool = False) -> Row | None:
        """The request to stop ``invocation`` (who, reason, when), or None. One primary-key read, without
        committing this process's waiting writes (it is polled while a run is writing). With ``poll``: retried
        for about a second only, and a store that does not answer then raises ``StateUnavailable`` without
        making the store fail fast for the run's own calls."""
        engine = self.engine
        down = engine.down_since

        def read(conn: Connection) -> Any:
            return engine.execute(conn, "SELECT invocation, who, reason, requested_at FROM pinstripe_cancels "
                                        "WHERE invocation = ?", (invocation,)).fetchone()

        try:
            row = engine.call(read, budget=POLL_BUDGET_S if poll else None)
        except StateUnavailable:
            if poll:
                engine.down_since = down
            raise
        return dict(zip(_COLUMNS, row, strict=True)) if row else None

    def withdraw_cancel(self, invocation: str) -> bool:
        """Forget the request to stop ``invocation`` (it is resumed); True when there was one."""
        engine = self.engine
        cursor = engine.call(lambda conn: engine.execute(conn, "DELETE FROM pinstripe_cancels WHERE invocation = ?",
                                                         (invocation,)))
        return bool(cursor.rowcount == 1)


def cancel_reason(request: Row) -> str:
    """How a tenant not run because of ``request`` is recorded: ``cancelled by WHO: REASON``."""
    reason = request.get("reason")
    return f"cancelled by {request.get('who') or 'someone'}" + (f": {reason}" if reason else "")
