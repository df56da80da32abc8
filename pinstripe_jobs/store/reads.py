"""Read queries over the state store's history, for the dashboard and its JSON API.

Every query reads one page through an index (``pinstripe_latest`` for the tenant grid and failures,
``pinstripe_invocations`` for a job's invocations, the runs indexes for ``/api/runs``), so a page answers
in milliseconds whatever the size of the history. Pages are cursor-paged: a cursor is an opaque string
naming the last row of the page before. Nothing here writes.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pinstripe_jobs.model.status import RANK, Status
from pinstripe_jobs.store.common import ABANDONED, COLUMNS, LIVE, LIVE_OR_GONE, LIVE_OR_GONE_SQL, parse_counts
from pinstripe_jobs.store.common import HELD_SQL as HELD  # written as the lock index's own
from pinstripe_jobs.store.contracts import History

# condition, so that SQLite reads the running runs from that small partial index, not the whole history

PAGE = 50
_LATEST = ("job", "tenant_key", "tenant", "tenant_kind", "run_id", "status", "rank", "started_at", "ended_at", "error",
           "invocation", "failing_since")
_RANKS: dict[str, int] = {status.value: rank for status, rank in RANK.items()}
_NOT_OURS = "was not handed out by this query: pass the next_cursor of the page before"
_INVOCATION = ("id", "job", "trigger", "tick", "args", "started_at", "ended_at", "status", "exit_code", "counts",
               "p50_ms", "p95_ms", "max_ms", "host", "pid", "pid_token", "first_id")


class BadCursor(ValueError):
    """A cursor that this query did not hand out."""



def _split(cursor: str, parts: int) -> list[str]:
    fields = cursor.split("|", parts - 1)
    if len(fields) != parts:
        raise BadCursor(f"cursor {cursor!r} {_NOT_OURS}")
    return fields


class HistoryQueries:
    """The dashboard's reads, over a store's public read API (``contracts.History``: ``query``,
    ``present``, ``holder_alive``)."""

    def __init__(self, store: History):
        self.store = store

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        return self.store.query(sql, params)

    # -- invocations -------------------------------------------------------------------------------
    def invocations(self, job: str, *, cursor: str | None = None, limit: int = PAGE
                    ) -> tuple[list[dict[str, Any]], str | None]:
        """A job's invocations, newest first, with counts by status and p50/p95/max duration."""
        where: list[str] = ["job = ?"]
        params: list[Any] = [job]
        if cursor:
            started, inv = _split(cursor, 2)
            where.append("(started_at < ? OR (started_at = ? AND id < ?))")
            params += [started, started, inv]
        rows = self._rows(f"SELECT {', '.join(_INVOCATION)} FROM pinstripe_invocations WHERE {' AND '.join(where)} "
                          f"ORDER BY started_at DESC, id DESC LIMIT {int(limit) + 1}", params)
        items = [self._invocation(dict(zip(_INVOCATION, row, strict=False))) for row in rows[:limit]]
        more = len(rows) > limit
        return items, (f"{items[-1]['started_at']}|{items[-1]['id']}" if more and items else None)

    def _invocation(self, row: dict[str, Any]) -> dict[str, Any]:
        row["counts"] = parse_counts(row["counts"])
        token = row.pop("pid_token")
        first_id = row.pop("first_id") or 0
        if row["ended_at"] is None:  # still going, or its process died: count what it has recorded so far
            counts = self._rows("SELECT status, count(*) FROM pinstripe_runs WHERE id > ? AND invocation = ? "
                                "GROUP BY status", (first_id, row["id"]))
            row["counts"] = {status: n for status, n in counts}
            alive = self.store.holder_alive(row["host"], row["pid"], token, None)
            row["status"] = LIVE.value if alive else ABANDONED.value
        return row

    def recent_invocations(self, job: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.invocations(job, limit=limit)[0]

    # -- the tenant grid ---------------------------------------------------------------------------
    def grid(self, job: str, *, status: str | None = None, search: str | None = None, cursor: str | None = None,
             limit: int = PAGE) -> tuple[list[dict[str, Any]], str | None]:
        """Each tenant's newest status for ``job``, failing tenants first, then by tenant id; filtered by
        status and by a tenant id substring. Tenants with a run going now are marked ``running_now``."""
        where: list[str] = ["job = ?"]
        params: list[Any] = [job]
        if status:  # a range of the (job, rank, tenant) index: each status has one rank
            where += ["rank = ?", "status = ?"]
            params += [_RANKS.get(status, 2), status]
        if search:
            where.append("tenant_key LIKE ? ESCAPE '\\'")
            params.append("%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if cursor:
            rank, key = _split(cursor, 2)
            if not rank.isdigit():
                raise BadCursor(f"cursor {cursor!r} {_NOT_OURS}")
            where.append("(rank > ? OR (rank = ? AND tenant_key > ?))")
            params += [int(rank), int(rank), key]
        rows = self._rows(f"SELECT {', '.join(_LATEST)} FROM pinstripe_latest WHERE {' AND '.join(where)} "
                          f"ORDER BY rank, tenant_key LIMIT {int(limit) + 1}", params)
        items = [dict(zip(_LATEST, row, strict=False)) for row in rows[:limit]]
        if items:
            keys = [item["tenant_key"] for item in items]
            live = self._rows(f"SELECT COALESCE(tenant, '-'), host, pid, pid_token, heartbeat_at FROM pinstripe_runs "
                              f"WHERE job = ? AND status IN {HELD} AND status = '{LIVE.value}' AND "
                              f"COALESCE(tenant, '-') IN ({', '.join('?' * len(keys))})", [job, *keys])
            running = {row[0] for row in live if self.store.holder_alive(*row[1:5])}
        for item in items:
            item["running_now"] = item["tenant_key"] in running
            if item.pop("tenant_kind") == "int" and item["tenant"] is not None:
                item["tenant"] = int(item["tenant"])
        more = len(rows) > limit
        return items, (f"{items[-1]['rank']}|{items[-1]['tenant_key']}" if more and items else None)

    def grid_counts(self, job: str) -> dict[str, int]:
        """How many tenants have each newest status for ``job``."""
        return {status: n for status, n in self._rows("SELECT status, count(*) FROM pinstripe_latest WHERE job = ? "
                                                      "GROUP BY status", (job,))}

    def totals(self) -> dict[str, list[tuple[Any, ...]]]:
        """For /metrics: runs and invocations by job and status, and each job's last success (ended_at)."""
        return {"runs": self._rows("SELECT job, status, count(*) FROM pinstripe_runs GROUP BY job, status"),
                "invocations": self._rows("SELECT job, status, count(*) FROM pinstripe_invocations "
                                          "GROUP BY job, status"),
                "last_success": self._rows("SELECT job, max(ended_at) FROM pinstripe_runs WHERE status = ? "
                                           "GROUP BY job", (Status.SUCCEEDED,))}

    # -- failures ----------------------------------------------------------------------------------
    def failures(self, job: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Tenants whose newest run failed or timed out, grouped by job and error (exception type and
        message): how many, since when, and the newest run of the group (for its traceback)."""
        where: list[str] = ["rank = 0"]
        params: list[Any] = []
        if job:
            where.append("job = ?")
            params.append(job)
        rows = self._rows(f"SELECT job, error, count(*), min(COALESCE(failing_since, ended_at)), max(run_id) "
                          f"FROM pinstripe_latest WHERE {' AND '.join(where)} GROUP BY job, error "
                          f"ORDER BY count(*) DESC, job, error LIMIT {int(limit)}", params)
        groups = []
        for job_name, error, count, since, newest in rows:
            sample = self.run(newest) or {}
            tenants = self._rows("SELECT tenant, tenant_kind FROM pinstripe_latest WHERE rank = 0 AND job = ? AND "
                                 "error IS NOT DISTINCT FROM ? ORDER BY tenant_key LIMIT 20", (job_name, error))
            groups.append({"job": job_name, "error": error, "exception": (error or "").split(":", 1)[0],
                           "tenants": count, "since": since, "traceback": sample.get("traceback"),
                           "run_id": newest,
                           "sample_tenants": [int(t) if kind == "int" else t for t, kind in tenants]})
        return groups

    # -- runs --------------------------------------------------------------------------------------
    def runs(self, *, job: str | None = None, status: str | None = None, tenant: str | None = None,
             invocation: str | None = None, cursor: str | None = None, limit: int = PAGE
             ) -> tuple[list[dict[str, Any]], str | None]:
        """Run rows, newest first. ``running`` rows whose holder is gone read as ``abandoned`` (the status
        filter matches what is shown)."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("job", job), ("tenant", tenant), ("invocation", invocation)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if invocation is not None:  # its runs come after its first_id: a range of the primary key
            first = self._rows("SELECT first_id FROM pinstripe_invocations WHERE id = ?", (invocation,))
            where.append("id > ?")
            params.append((first[0][0] or 0) if first else 0)
        if status in LIVE_OR_GONE:
            where.append(f"status IN {LIVE_OR_GONE_SQL}")
        elif status:
            where.append("status = ?")
            params.append(status)
        if cursor:
            if not cursor.isdigit():
                raise BadCursor(f"cursor {cursor!r} {_NOT_OURS}")
            where.append("id < ?")
            params.append(int(cursor))
        base = f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs WHERE " + " AND ".join([*where, "id < ?"])
        items: list[dict[str, Any]] = []
        before = 2 ** 62
        while len(items) <= limit:  # abandoned vs running is decided after reading: read on until the page is full
            rows = self._rows(f"{base} ORDER BY id DESC LIMIT {int(limit) + 1}", [*params, before])
            for row in rows:
                item = self.store.present(dict(zip(COLUMNS, row, strict=False)))
                if status in LIVE_OR_GONE and item["status"] != status:
                    continue
                items.append(item)
            if len(rows) <= limit:
                break
            before = rows[-1][0]
        more = len(items) > limit
        items = items[:limit]
        return items, (str(items[-1]["id"]) if more and items else None)

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run with its error and traceback."""
        rows = self._rows(f"SELECT {', '.join(COLUMNS)}, traceback FROM pinstripe_runs WHERE id = ?", (int(run_id),))
        if not rows:
            return None
        row = self.store.present(dict(zip((*COLUMNS, "traceback"), rows[0], strict=False)))
        return row

    def running(self, now: datetime) -> list[dict[str, Any]]:
        """Runs going now, and ``running`` rows whose holder is gone (abandoned), oldest first."""
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs WHERE status IN {HELD} AND "
                          f"status = '{LIVE.value}' ORDER BY started_at LIMIT 1000")
        items = []
        for row in rows:
            item = self.store.present(dict(zip(COLUMNS, row, strict=False)))
            item["elapsed_s"] = round((now - datetime.fromisoformat(item["started_at"])).total_seconds(), 1)
            items.append(item)
        return items

    # -- ticks -------------------------------------------------------------------------------------
    def ticks(self, *, cursor: str | None = None, limit: int = PAGE) -> tuple[list[dict[str, Any]], str | None]:
        """The bot's tick claims, newest claim first: fired, caught_up (coalesced into a later run),
        resumed (taken over from a runner that died) and missed (skipped past ``misfire_grace``)."""
        columns = ("job", "tick", "kind", "claimed_at", "finished_at", "host", "pid")
        where = ""
        params: list[Any] = []
        if cursor:
            claimed, job, tick = _split(cursor, 3)
            where = "WHERE (claimed_at < ? OR (claimed_at = ? AND (job < ? OR (job = ? AND tick < ?))))"
            params = [claimed, claimed, job, job, tick]
        rows = self._rows(f"SELECT {', '.join(columns)} FROM pinstripe_ticks {where} ORDER BY claimed_at DESC, "
                          f"job DESC, tick DESC LIMIT {int(limit) + 1}", params)
        items = [dict(zip(columns, row, strict=False)) for row in rows[:limit]]
        for item in items:
            item["kind"] = item["kind"] or "fired"
            item["state"] = "done" if item["finished_at"] else ("running" if item["pid"] else "released")
        more = len(rows) > limit
        last = items[-1] if items else None
        return items, (f"{last['claimed_at']}|{last['job']}|{last['tick']}" if more and last else None)

    def job_names(self) -> list[str]:
        """Jobs that have history (also jobs whose module is gone)."""
        return [row[0] for row in self._rows("SELECT DISTINCT job FROM pinstripe_invocations ORDER BY job")]


__all__ = ["HistoryQueries", "BadCursor", "PAGE", "RANK"]
