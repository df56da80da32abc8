"""Reading history: runs newest first, each job's newest run, the tenants to rerun; and the public read API
the dashboard's queries (``reads.HistoryQueries``) are built on: ``query``, ``present``, ``holder_alive``."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import ABANDONED, BAD, COLUMNS, LIVE, LIVE_OR_GONE, LIVE_OR_GONE_SQL, Row
from pinstripe_jobs.store.dialects import Params
from pinstripe_jobs.store.engine import Engine

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs"


class HistoryReads:
    """``StateStore``'s reads (see ``contracts.History``)."""

    engine: Engine

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement (``?`` placeholders, either database), after committing what
        this process has waiting (so it reads its own writes). Retried like every call."""
        return self.engine.query(sql, params)

    def holder_alive(self, host: str | None, pid: int | None, token: str | None, heartbeat: str | None) -> bool:
        """Whether the holder of a lease, claim, slot or invocation is alive: False only when it is provably
        gone (a dead process on this host, or, elsewhere, a heartbeat older than ``lock_stale_s``)."""
        return self.engine.holder_alive(host, pid, token, heartbeat)

    def present(self, row: Row) -> Row:
        """A run row (``COLUMNS``, by name) as shown: a ``running`` row whose holder is gone reads
        ``abandoned`` (ended at its last heartbeat), integer tenant ids come back as ints, and the
        process token is dropped. Changes ``row`` in place and returns it."""
        if row["status"] == LIVE and not self.engine.holder_alive(row["host"], row["pid"], row["pid_token"],
                                                                  row["heartbeat_at"]):
            row["status"] = ABANDONED.value
            row["ended_at"] = row["heartbeat_at"]  # its last sign of life, not when someone looked
        row.pop("pid_token", None)
        if row.pop("tenant_kind", None) == "int" and row["tenant"] is not None:
            row["tenant"] = int(row["tenant"])  # the same id as in the run's own JSON
        return row

    def _select(self, sql: str, params: Params = ()) -> list[Row]:
        return [self.present(dict(zip(COLUMNS, r, strict=True))) for r in self.engine.query(sql, params)]

    def runs(self, *, job: str | None = None, tenant: str | None = None, status: str | None = None,
             limit: int | None = 50, invocation: str | None = None, since: str | None = None) -> list[Row]:
        """Runs, newest first. ``running`` rows whose holder is gone read as ``abandoned``. ``invocation``:
        only its runs; ``since`` (ISO text, UTC): only runs started at or after it."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("job", job), ("tenant", tenant), ("invocation", invocation)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if invocation is not None:  # its runs have ids above its first_id: a range of the primary key
            where.append("id > COALESCE((SELECT first_id FROM pinstripe_invocations WHERE id = ?), 0)")
            params.append(invocation)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if status in LIVE_OR_GONE:  # a running row may read as abandoned, and the other way round
            where.append(f"status IN {LIVE_OR_GONE_SQL}")
        elif status is not None:
            where.append("status = ?")
            params.append(status)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if status not in LIVE_OR_GONE and limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._select(sql, params)
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return rows[:limit] if limit is not None else rows

    def last_runs(self) -> dict[str, Row]:
        """The newest run of every job."""
        rows = self._select(f"{_SELECT} WHERE id IN (SELECT max(id) FROM pinstripe_runs GROUP BY job)")
        return {row["job"]: row for row in rows}

    def failed_tenants(self, job: str) -> list[str]:
        """Tenants whose newest run of ``job`` did not succeed (failed, timed out, interrupted, skipped,
        abandoned)."""
        rows = self._select(f"{_SELECT} WHERE id IN (SELECT max(id) FROM pinstripe_runs WHERE job = ? GROUP BY "
                            "tenant)", (job,))
        return [str(row["tenant"]) for row in rows if row["status"] in BAD and row["tenant"] is not None]
