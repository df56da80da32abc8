"""The audit trail: every manual action (a run, a resume, a cancel, a pause, an unpause, a run or rerun from
the dashboard), with who did it, when, from where (``cli``, ``dashboard``, ``api``), on which job, and its
arguments as JSON. Append-only: nothing updates a row; pruning deletes rows older than ``history_days``."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.store.common import HOST, Row, storable
from pinstripe_jobs.store.engine import Engine

SOURCES = ("cli", "dashboard", "api", "auto")  # auto: pinstripe itself (pause_after_failures)
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


def to_json(value: Any) -> str:
    """``value`` as JSON, keys sorted, anything else as its text: written without the json module, which a
    manual run (it records one action) does not otherwise import (start-up time)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(float(value))
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "{" + ", ".join(f"{_string(str(k))}: {to_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return _string(str(value))


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if ord(c) >= 0x20 else f"\\u{ord(c):04x}" for c in escaped) + '"'


class AuditRecords:
    """``StateStore``'s audit trail (see ``contracts.Audit``)."""

    engine: Engine

    def audit(self, action: str, *, who: str, source: str = "cli", job: str | None = None,
              details: dict[str, Any] | None = None) -> None:
        """Append one action to the trail, committed when this returns."""
        if source not in SOURCES:
            raise ValueError(f"audit source {source!r} is not one of {SOURCES}")
        text = storable(to_json(details or {}), MAX_DETAILS)
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
