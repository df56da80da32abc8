"""Invocations: one per command or tick. Its runs get ids above its ``first_id`` (reading them is a range of the
primary key); when it ends it keeps its counts by status and its runs' p50/p95/max duration. An invocation
whose process died is closed (``abandoned``, its runs counted and folded) by the next invocation of its job."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pinstripe_jobs.store.common import ABANDONED, HOST, LIVE, QUEUED, iso, storable
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.schema import latest_of

_WHERE = "id > ? AND invocation = ?"


class InvocationRecords:
    """``StateStore``'s invocations (see ``contracts.Invocations``)."""

    engine: Engine

    def begin_invocation(self, invocation: str, job: str, trigger: str, *, tick: datetime | None = None,
                         args: Any = None) -> None:
        """Record an invocation (one per command or tick). Its runs get ids above ``first_id``, so reading
        them is a range of the primary key. An earlier invocation of the job whose process died is closed
        first: its runs are folded into the tenants' newest statuses and it reads ``abandoned``."""
        engine = self.engine
        stored = None
        if args is not None:
            import json  # here, not at import: start-up time

            stored = storable(json.dumps(args, default=str))

        def write(conn: Connection) -> None:
            close_abandoned(engine, conn, job)
            first = engine.execute(conn, "SELECT COALESCE(max(id), 0) FROM pinstripe_runs").fetchone()[0]
            engine.execute(conn, "INSERT INTO pinstripe_invocations (id, job, trigger, tick, args, started_at, host, "
                                 "pid, pid_token, first_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO "
                                 "NOTHING", (invocation, job, trigger, iso(tick), stored, engine.now(), HOST,
                                             engine.pid, engine.token, first))

        engine.call(lambda conn: engine.transaction(conn, lambda: write(conn)))

    def end_invocation(self, invocation: str, status: str, exit_code: int, counts: dict[str, int]) -> None:
        """The invocation's outcome, its counts by status and its runs' p50/p95/max duration. Counts are kept
        as ``status=n`` pairs (no JSON on the run path: start-up time)."""
        engine = self.engine
        engine.flush()

        def write(conn: Connection) -> None:
            row = engine.execute(conn, "SELECT first_id FROM pinstripe_invocations WHERE id = ?",
                                 (invocation,)).fetchone()
            close(engine, conn, invocation, (row[0] if row else 0) or 0, status, exit_code,
                  ",".join(f"{k}={v}" for k, v in sorted(counts.items())))

        engine.call(lambda conn: engine.transaction(conn, lambda: write(conn)))

    def close_abandoned_invocations(self, job: str) -> None:
        """Close the invocations of ``job`` whose process is gone (``abandoned``, their runs counted and
        folded). ``begin_invocation`` does it first, in its own transaction."""
        engine = self.engine
        engine.call(lambda conn: engine.transaction(conn, lambda: close_abandoned(engine, conn, job)))

    def invocation_outcomes(self, job: str, invocation: str, tenants: list[Any], *, running: bool = False
                            ) -> dict[str, tuple[str, str | None]]:
        """Of ``tenants``, those with a finished run of ``job`` in ``invocation``: tenant (as text) -> (status,
        error). A batch delivered again (its worker was lost) does not run them twice."""
        keys = ["-" if t is None else str(t) for t in tenants]
        rows: list[tuple[Any, ...]] = []
        for chunk in range(0, len(keys), 500):  # the database's limit on parameters
            part = keys[chunk:chunk + 500]
            rows += self.engine.query(
                f"SELECT COALESCE(tenant, '-'), status, error FROM pinstripe_runs WHERE job = ? AND "
                f"(tenant IN ({', '.join('?' * len(part))}){' OR tenant IS NULL' if '-' in part else ''}) "
                f"AND invocation = ? AND status <> ? {'' if running else 'AND status <> ?'} ORDER BY id",
                (job, *part, invocation, QUEUED) + (() if running else (LIVE,)))
        return {row[0]: (row[1], row[2]) for row in rows}


def close_abandoned(engine: Engine, conn: Connection, job: str) -> None:
    for row in engine.execute(conn, "SELECT id, first_id, host, pid, pid_token FROM pinstripe_invocations WHERE "
                                    "job = ? AND ended_at IS NULL", (job,)).fetchall():
        if not engine.holder_alive(row[2], row[3], row[4], None):
            close(engine, conn, row[0], row[1] or 0, ABANDONED.value, None)


def close(engine: Engine, conn: Connection, invocation: str, first_id: int, status: str, exit_code: int | None,
          counts: str | None = None) -> None:
    """Close an invocation: its counts (given, or, when its process died, counted and its runs folded) and
    its runs' exact p50/p95/max duration, sorted by the database (nothing held in memory here)."""
    if counts is None:  # its process died: count what it recorded, fold its runs
        found: dict[str, int] = {}
        for key, n in engine.execute(conn, f"SELECT status, count(*) FROM pinstripe_runs WHERE {_WHERE} GROUP BY "
                                           "status", (first_id, invocation)).fetchall():
            key = ABANDONED.value if key == LIVE else key  # its holder is gone
            found[key] = found.get(key, 0) + n
        counts = ",".join(f"{k}={v}" for k, v in sorted(found.items()))
        engine.execute(conn, latest_of(_WHERE), (first_id, invocation))
    n = engine.execute(conn, f"SELECT count(duration_ms) FROM pinstripe_runs WHERE {_WHERE}",
                       (first_id, invocation)).fetchone()[0]
    quantiles = []
    for q in (0.5, 0.95, 1.0):
        row = engine.execute(conn, f"SELECT duration_ms FROM pinstripe_runs WHERE {_WHERE} AND duration_ms IS NOT "
                                   "NULL ORDER BY duration_ms LIMIT 1 OFFSET ?",
                             (first_id, invocation, max(0, min(n - 1, int(q * n + 0.999999) - 1)))).fetchone() \
            if n else None
        quantiles.append(row[0] if row else None)
    engine.execute(conn, "UPDATE pinstripe_invocations SET ended_at = ?, status = ?, exit_code = ?, counts = ?, "
                         "p50_ms = ?, p95_ms = ?, max_ms = ? WHERE id = ?",
                   (engine.now(), status, exit_code, counts, *quantiles, invocation))
