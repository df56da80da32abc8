"""Reading invocations: one as an operator sees it (status computed on read: ``crashed`` when its holder is
provably gone), a filtered list, and the newest status of each tenant it has run (what a resume skips)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pinstripe_jobs.model.status import InvocationStatus, Status
from pinstripe_jobs.store.common import ABANDONED, LIVE, Row, parse_counts
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.invocations import CLOSED_CRASHED, RAN, RECORD, SELECT_INVOCATION, whole_counts

_NOT_DONE = (Status.QUEUED.value, Status.RUNNING.value)


class InvocationReads:
    """``StateStore``'s invocation reads (see ``contracts.InvocationQueries``)."""

    engine: Engine

    def get_invocation(self, invocation: str) -> Row | None:
        """The invocation as shown (``present_invocation``), or None. Reads only."""
        engine = self.engine
        rows = engine.query(f"{SELECT_INVOCATION} WHERE id = ?", (invocation,))
        return self.present_invocation(dict(zip(RECORD, rows[0], strict=True))) if rows else None

    def list_invocations(self, *, job: str | None = None, status: str | None = None, limit: int = 50
                         ) -> list[Row]:
        """Invocations newest first, of ``job`` and with ``status`` (as shown: ``running``/``crashed`` are
        computed) when given, at most ``limit``. Reads only."""
        where, params = [], []
        if job:
            where.append("job = ?")
            params.append(job)
        if status == InvocationStatus.RUNNING:
            where.append("ended_at IS NULL")
        elif status == InvocationStatus.CRASHED:  # unended with its holder gone, or closed as such
            where.append("(ended_at IS NULL OR status = ?)")
            params.append(CLOSED_CRASHED)
        elif status:
            where.append("status = ?")
            params.append(status)
        sql = f"{SELECT_INVOCATION}{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY started_at DESC, id DESC"
        found: list[Row] = []
        offset, page = 0, max(limit, 50)
        while len(found) < limit:
            rows = self.engine.query(f"{sql} LIMIT {page} OFFSET {offset}", params)
            for row in rows:
                record = dict(zip(RECORD, row, strict=True))
                shown = self.present_invocation(record, counts=record["ended_at"] is None)
                if not status or shown["status"] == status:
                    found.append(shown)
            if len(rows) < page:
                break
            offset += page
        return found[:limit]

    def invocation_tenants(self, invocation: str) -> dict[str, str]:
        """Each tenant (as text, ``-`` for none) with a run in the invocation that started (not a row only
        claimed, skipped or recorded without running) -> the status of its newest such run (``running`` whose
        holder is provably gone: ``abandoned``)."""
        engine = self.engine
        rows = engine.query("SELECT first_id FROM pinstripe_invocations WHERE id = ?", (invocation,))
        first = (rows[0][0] if rows else 0) or 0
        found: dict[str, str] = {}
        running: dict[str, tuple[Any, ...]] = {}
        for tenant, status, host, pid, token, beat in engine.query(
                "SELECT COALESCE(tenant, '-'), status, host, pid, pid_token, heartbeat_at FROM pinstripe_runs "
                f"WHERE id > ? AND invocation = ? AND {RAN} ORDER BY id", (first, invocation)):
            found[tenant] = status
            if status == LIVE:
                running[tenant] = (host, pid, token, beat)
        for tenant, holder in running.items():
            if found[tenant] == LIVE and not engine.holder_alive(*holder):
                found[tenant] = ABANDONED.value
        return found

    def present_invocation(self, row: Row, *, counts: bool = True) -> Row:
        """A record as shown: JSON columns parsed, status computed for an unended one (``running``, or
        ``crashed`` when its holder is provably gone), counts (an unended one's from its runs, unless not
        ``counts``), ``done`` and ``total``, and an ETA in seconds while it runs and the total is known."""
        import json  # here, not at import: a run never reads invocations back (start-up time)

        engine = self.engine
        for name in ("args", "selection", "options"):
            row[name] = json.loads(row[name]) if row[name] else None
        if row["ended_at"] is None:
            alive = engine.holder_alive(row["host"], row["pid"], row["pid_token"], row["heartbeat_at"])
            row["status"] = (InvocationStatus.RUNNING if alive else InvocationStatus.CRASHED).value
            row["counts"] = engine.call(lambda conn: whole_counts(engine, conn, row["id"], row["first_id"] or 0)) \
                if counts else {}
        else:
            row["counts"] = parse_counts(row["counts"])
            if row["status"] == CLOSED_CRASHED:
                row["status"] = InvocationStatus.CRASHED.value
        row.pop("pid_token", None)
        row["done"] = sum(n for s, n in row["counts"].items() if s not in _NOT_DONE)
        row["eta_s"] = None
        if row["status"] == InvocationStatus.RUNNING and row["total"] and row["done"]:
            elapsed = (engine.clock() - datetime.fromisoformat(row["started_at"])).total_seconds()
            row["eta_s"] = round(elapsed / row["done"] * max(row["total"] - row["done"], 0), 1)
        return row

