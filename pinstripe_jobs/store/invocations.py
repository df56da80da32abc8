"""Invocations: one per command or tick, a durable record written before any tenant runs. Its runs get ids above
its ``first_id`` (reading them is a range of the primary key); it keeps what it was asked to do (arguments, the
tenant selection, options, who started it, its executor), a heartbeat and how far its tenant scan got; when
it ends it keeps its counts by status and its runs' p50/p95/max duration.

An invocation whose process died reads ``crashed``; the next invocation of its job closes it (stored as
``abandoned``, as earlier releases did, and read as ``crashed``; its runs counted and folded). A crashed,
interrupted or cancelled one can be resumed: taken over by a new holder, as the same invocation. An
idempotency key names at most one invocation (a unique index); a unique job's live key is unique while its
invocation is live, so that two of them cannot both be live (race-free)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pinstripe_jobs.model.status import INVOCATION_FINISHED, InvocationStatus, Status, sql_list
from pinstripe_jobs.store.common import ABANDONED, HOST, LIVE, QUEUED, Row, iso, storable
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.schema import latest_of

_WHERE = "id > ? AND invocation = ?"
RECORD = ("id", "job", "trigger", "tick", "args", "started_at", "ended_at", "status", "exit_code", "counts", "p50_ms",
          "p95_ms", "max_ms", "host", "pid", "pid_token", "first_id", "selection", "options", "started_by",
          "executor", "heartbeat_at", "scanned", "total", "resumed", "idem_key", "live_key")
SELECT_INVOCATION = f"SELECT {', '.join(RECORD)} FROM pinstripe_invocations"
CRASHED = InvocationStatus.CRASHED.value
# What a closed crashed invocation is stored as: the word earlier releases (and the dashboard) use; read as
# ``crashed`` (``present_invocation``).
CLOSED_CRASHED = Status.ABANDONED.value


@dataclass
class Begun:
    """What ``begin_invocation`` did. ``outcome``: ``new`` (recorded; run it), ``resume`` (its key named an
    unfinished invocation, now held by this process: run the tenants it has not run), ``finished`` (its key
    named a finished invocation: run nothing, exit with ``record["exit_code"]``) or ``busy`` (a live
    invocation holds the key or the unique job: ``record`` is it; run nothing)."""

    outcome: str
    id: str
    record: Row | None = field(default=None)


class InvocationRecords:
    """``StateStore``'s invocations (see ``contracts.Invocations``)."""

    engine: Engine

    def begin_invocation(self, invocation: str, job: str, trigger: str, *, tick: datetime | None = None,
                         args: Any = None, details: dict[str, Any] | None = None, key: str | None = None,
                         unique: str | None = None) -> Begun:
        """Record an invocation (once per id) and hold it (heartbeat). Closes the job's dead invocations
        first, in the same transaction; see ``contracts.Invocations.begin_invocation``."""
        engine = self.engine
        details = details or {}
        values = {"id": invocation, "job": job, "trigger": trigger, "tick": iso(tick),
                  "args": None if args is None else storable(encode(args)),
                  "selection": _json(details.get("selection")), "options": _json(details.get("options")),
                  "started_by": storable(details.get("started_by")), "executor": details.get("executor"),
                  "idem_key": key, "live_key": unique}

        def write(conn: Connection) -> Begun:
            close_abandoned(engine, conn, job)
            if key is not None:
                found = _one(engine, conn, "idem_key = ?", key)
                if found is not None:
                    return _keyed(engine, conn, found, unique)
            for _ in range(3):
                if _insert(engine, conn, values):
                    return Begun("new", invocation)
                if _one(engine, conn, "id = ?", invocation) is not None:
                    return Begun("new", invocation)  # recorded already (a batch's worker, a retried commit)
                holder = _one(engine, conn, "live_key = ?", unique) if unique else None
                if holder is None and key is not None:
                    holder = _one(engine, conn, "idem_key = ?", key)
                if holder is None:
                    continue
                if _alive(engine, holder):
                    return Begun("busy", holder["id"], holder)
                close(engine, conn, holder["id"], holder["first_id"] or 0, CLOSED_CRASHED, None)  # frees its key
            raise AssertionError("an invocation could not be recorded")

        begun: Begun = engine.call(lambda conn: engine.transaction(conn, lambda: write(conn)))
        if begun.outcome in ("new", "resume"):
            engine.hold(invocation=begun.id)
        return begun

    def resume_invocation(self, invocation: str, *, unique: str | None = None) -> Begun:
        """Take over an unfinished invocation (crashed, interrupted, cancelled) as this process's; see
        ``contracts.Invocations.resume_invocation``."""
        engine = self.engine

        def write(conn: Connection) -> Begun:
            found = _one(engine, conn, "id = ?", invocation)
            if found is None:
                return Begun("missing", invocation)
            close_abandoned(engine, conn, found["job"])
            found = _one(engine, conn, "id = ?", invocation)
            assert found is not None
            return _keyed(engine, conn, found, unique)

        begun: Begun = engine.call(lambda conn: engine.transaction(conn, lambda: write(conn)))
        if begun.outcome == "resume":
            engine.hold(invocation=begun.id)
        return begun

    def invocation_progress(self, invocation: str, scanned: int, total: int | None = None) -> None:
        """How far the invocation's tenant scan got (and the total once it finished): kept in memory, written
        with the heartbeat and by ``end_invocation``. Writes nothing now."""
        if invocation in self.engine.invocations:
            self.engine.invocations[invocation] = (scanned, total)

    def end_invocation(self, invocation: str, status: str, exit_code: int, counts: dict[str, int]
                       ) -> tuple[str, int]:
        """The invocation's outcome, its counts by status and its runs' p50/p95/max duration. Counts are kept
        as ``status=n`` pairs. A resumed invocation's counts are those of its whole: each tenant's newest run in it."""
        engine = self.engine
        engine.flush()
        scanned, total = engine.invocations.pop(invocation, (None, None))

        def write(conn: Connection) -> tuple[str, int]:
            row = engine.execute(conn, "SELECT first_id, resumed FROM pinstripe_invocations WHERE id = ?",
                                 (invocation,)).fetchone()
            first = (row[0] if row else 0) or 0
            text = ",".join(f"{k}={v}" for k, v in sorted(counts.items()))
            final, code = status, exit_code
            if row and row[1]:  # resumed: the whole, each tenant once (its newest run in the invocation)
                whole = whole_counts(engine, conn, invocation, first)
                text = ",".join(f"{k}={v}" for k, v in sorted(whole.items()))
                if code == 0 and any(whole.get(s) for s in (Status.FAILED, Status.TIMED_OUT, Status.ABANDONED,
                                                            Status.INTERRUPTED)):
                    final, code = InvocationStatus.FAILED.value, 1
            if scanned is not None:
                engine.execute(conn, "UPDATE pinstripe_invocations SET scanned = ?, total = COALESCE(?, total) "
                                     "WHERE id = ?", (scanned, total, invocation))
            close(engine, conn, invocation, first, final, code, text)
            return final, code

        ended: tuple[str, int] = engine.call(lambda conn: engine.transaction(conn, lambda: write(conn)))
        return ended

    def close_abandoned_invocations(self, job: str) -> None:
        """Close the invocations of ``job`` whose process is gone (``abandoned``: crashed, their runs counted and
        folded). ``begin_invocation`` does it first, in its own transaction."""
        engine = self.engine
        engine.call(lambda conn: engine.transaction(conn, lambda: close_abandoned(engine, conn, job)))

    def invocation_outcomes(self, job: str, invocation: str, tenants: list[Any], *, running: bool = False,
                            ran_only: bool = False) -> dict[str, tuple[str, str | None]]:
        """Of ``tenants``, those with a finished row of ``job`` in ``invocation`` (with ``ran_only``, of a run
        that started: rows only recorded, skipped or reported without news, left out): tenant (as text) ->
        (status, error). A batch delivered again (its worker was lost) does not run them twice; a resumed
        invocation's batch runs the tenants that never started."""
        keys = ["-" if t is None else str(t) for t in tenants]
        rows: list[tuple[Any, ...]] = []
        for chunk in range(0, len(keys), 500):  # the database's limit on parameters
            part = keys[chunk:chunk + 500]
            rows += self.engine.query(
                f"SELECT COALESCE(tenant, '-'), status, error FROM pinstripe_runs WHERE job = ? AND "
                f"(tenant IN ({', '.join('?' * len(part))}){' OR tenant IS NULL' if '-' in part else ''}) "
                f"AND invocation = ? AND {RAN if ran_only else 'status <> ?'} {'' if running else 'AND status <> ?'} "
                "ORDER BY id",
                (job, *part, invocation) + (() if ran_only else (QUEUED,)) + (() if running else (LIVE,)))
        return {row[0]: (row[1], row[2]) for row in rows}


def _json(value: Any) -> str | None:
    return None if value is None else storable(encode(value), 20000)


def encode(value: Any) -> str:
    """JSON for plain values (None, bools, numbers, text, lists, dicts; anything else as its text), without
    importing ``json`` on the run path (start-up time). Read back with ``json.loads``."""
    if value is None or value is True or value is False:
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(encode(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{encode(str(k))}: {encode(v)}" for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in text) + '"'


def _insert(engine: Engine, conn: Connection, values: dict[str, Any]) -> bool:
    columns = (*values, "started_at", "host", "pid", "pid_token", "first_id", "heartbeat_at", "resumed")
    first = engine.execute(conn, "SELECT COALESCE(max(id), 0) FROM pinstripe_runs").fetchone()[0]
    now = engine.now()
    params = (*values.values(), now, HOST, engine.pid, engine.token, first, now, 0)
    row = engine.execute(conn, f"INSERT INTO pinstripe_invocations ({', '.join(columns)}) VALUES "
                               f"({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING RETURNING id",
                         params).fetchone()
    return row is not None


def _one(engine: Engine, conn: Connection, where: str, value: Any) -> Row | None:
    row = engine.execute(conn, f"{SELECT_INVOCATION} WHERE {where}", (value,)).fetchone()
    return dict(zip(RECORD, row, strict=True)) if row else None


def _alive(engine: Engine, row: Row) -> bool:
    return row["ended_at"] is None and engine.holder_alive(row["host"], row["pid"], row["pid_token"],
                                                           row["heartbeat_at"])


def _keyed(engine: Engine, conn: Connection, found: Row, unique: str | None) -> Begun:
    """An existing invocation named by its key or id: finished, busy (live), or taken over to be resumed."""
    if found["ended_at"] is not None and found["status"] in INVOCATION_FINISHED:
        return Begun("finished", found["id"], found)
    if _alive(engine, found):
        return Begun("busy", found["id"], found)
    if found["ended_at"] is None:  # its holder is gone: close it first (its runs counted and folded)
        close(engine, conn, found["id"], found["first_id"] or 0, CLOSED_CRASHED, None)
    live = found["live_key"] or unique
    if live is not None:
        row = engine.execute(conn, f"{SELECT_INVOCATION} WHERE live_key = ? AND id <> ?",
                             (live, found["id"])).fetchone()
        holder = dict(zip(RECORD, row, strict=True)) if row else None
        if holder is not None and _alive(engine, holder):
            return Begun("busy", holder["id"], holder)
        if holder is not None:
            close(engine, conn, holder["id"], holder["first_id"] or 0, CLOSED_CRASHED, None)
    now = engine.now()
    taken = engine.execute(conn, "UPDATE pinstripe_invocations SET ended_at = NULL, status = NULL, exit_code = NULL, "
                                 "host = ?, pid = ?, pid_token = ?, heartbeat_at = ?, live_key = ?, resumed = "
                                 "COALESCE(resumed, 0) + 1 WHERE id = ? AND ended_at IS NOT NULL",
                           (HOST, engine.pid, engine.token, now, live, found["id"]))
    if not taken.rowcount:  # another process took it over first
        return Begun("busy", found["id"], found)
    # a fleet's cancel marker of the invocation (workers skip its tenants while it is set): the rest runs now
    engine.execute(conn, "DELETE FROM pinstripe_meta WHERE key = ?", (f"cancel:{found['id']}",))
    return Begun("resume", found["id"], found)


# a row of a run that started (not a record)
RAN = f"lease IS NOT NULL AND status NOT IN {sql_list((Status.QUEUED, Status.SKIPPED))}"


def whole_counts(engine: Engine, conn: Connection, invocation: str, first_id: int) -> dict[str, int]:
    """Counts by status of each tenant in the invocation: its newest run that started, else its newest row
    (a tenant only recorded: skipped, or reported by a fleet's CLI that never heard back). A dead holder's
    ``running``: abandoned."""
    newest: dict[str, tuple[str, int]] = {}
    for tenant, status, ran in engine.execute(conn, f"SELECT COALESCE(tenant, '-'), status, CASE WHEN {RAN} THEN 1 "
                                                    f"ELSE 0 END FROM pinstripe_runs WHERE {_WHERE} AND status <> ? "
                                                    "ORDER BY id", (first_id, invocation, QUEUED)).fetchall():
        if ran or not newest.get(tenant, ("", 0))[1]:
            newest[tenant] = (status, ran)
    found: dict[str, int] = {}
    for status, _ in newest.values():
        key = ABANDONED.value if status == LIVE else status
        found[key] = found.get(key, 0) + 1
    return found


def close_abandoned(engine: Engine, conn: Connection, job: str) -> None:
    for row in engine.execute(conn, "SELECT id, first_id, host, pid, pid_token, heartbeat_at FROM "
                                    "pinstripe_invocations WHERE job = ? AND ended_at IS NULL", (job,)).fetchall():
        if row[0] not in engine.invocations and not engine.holder_alive(row[2], row[3], row[4], row[5]):
            close(engine, conn, row[0], row[1] or 0, CLOSED_CRASHED, None)


def close(engine: Engine, conn: Connection, invocation: str, first_id: int, status: str, exit_code: int | None,
          counts: str | None = None) -> None:
    """Close an invocation: its counts (given, or, when its process died, counted and its runs folded), its
    runs' exact p50/p95/max duration, sorted by the database (nothing held in memory here), and free its live
    key (a unique job may run again)."""
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
                         "p50_ms = ?, p95_ms = ?, max_ms = ?, live_key = NULL WHERE id = ?",
                   (engine.now(), status, exit_code, counts, *quantiles, invocation))
