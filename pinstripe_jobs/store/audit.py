"""The audit trail: every manual action (a run, a resume, a cancel, a pause, an unpause, a run or rerun from
the dashboard), with who did it, when, from where (``cli``, ``dashboard``, ``api``), on which job, and its
arguments as JSON. Append-only: nothing updates a row; pruning deletes rows older than ``history_days``."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import HOST, Row, storable
from pinstripe_jobs.store.engine import Engine

SOURCES = ("cli", "dashboard", "api")
_COLUMNS = ("id", "at", "who", "source", "action", "job", "details")
MAX_DETAILS = 8000


def whoami() -> str:
    """The person behind this process: OS user@host."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        import os

        user = f"uid {os.getuid()}"
    return f"{user}@{HOST}"


class AuditRecords:
    """``StateStore``'s audit trail (see ``contracts.Audit``)."""

    engine: Engine

    def audit(self, action: str, *, who: str, source: str = "cli", job: str | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Append one action to the trail, committed when this returns."""
        import json

        if source not in SOURCES:
            raise ValueError(f"audit source {source!r} is not one of {SOURCES}")
        text = storable(json.dumps(details or {}, default=str, sort_keys=True), MAX_DETAILS)
        engine = self.engine
        engine.call(lambda conn: engine.execute(
            conn, "INSERT INTO pinstripe_audit (at, who, source, action, job, details) VALUES (?, ?, ?, ?, ?, ?)",
            (engine.now(), storable(who, 200), source, action, job, text)))

    def audit_trail(self, *, job: str | None = None, action: str | None = None, limit: int | None = 50) -> list[Row]:
        """Actions, newest first, filtered; ``details`` decoded from JSON."""
        import json

        where, params = [], []
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if action is not None:
            where.append("action = ?")
            params.append(action)
        sql = ("SELECT id, at, who, source, action, job, details FROM pinstripe_audit"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = [dict(zip(_COLUMNS, row, strict=True)) for row in self.engine.query(sql, tuple(params))]
        for row in rows:
            try:
                row["details"] = json.loads(row["details"] or "{}")
            except ValueError:  # capped mid-document: shown as text
                row["details"] = {"text": row["details"]}
        return rows
