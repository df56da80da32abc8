"""Run history, overlap locks and tick claims, in one SQL database named by the ``state`` URL.

SQLite (the embedded default, ``.pinstripe/state.db`` beside the config) goes through the standard
library's ``sqlite3``; any other URL (PostgreSQL) through SQLAlchemy's pool, imported only then.

Every run is a row, written when it starts and updated when it ends (on SQLite the update is committed
with the next run's start, or when the batch of runs is done). A ``running`` row whose process is gone
reads as ``abandoned``. Overlap locks are released when their holder dies: on SQLite the lock *is*
the ``running`` row (a partial unique index on job and tenant), naming its holder's host, pid and process
start time, and is taken over once that process is gone; on PostgreSQL a session advisory lock is held
on its own connection, which the server drops with the process.
"""
from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from .errors import ConfigError, mask_secrets

HOST = os.uname().nodename
LIVE = "running"
BAD = ("failed", "timed_out", "interrupted", "abandoned")


def process_token(pid: int) -> str:
    """The start time of a process (from /proc), so a reused pid is not taken for the old process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, token: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not token or process_token(pid) in ("", token)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


class Lease:
    """A started run: its row id and, on PostgreSQL, the connection holding its advisory lock."""

    __slots__ = ("run_id", "connection")

    def __init__(self, run_id: int, connection: Any = None):
        self.run_id = run_id
        self.connection = connection


SCHEMA = """
CREATE TABLE IF NOT EXISTS pinstripe_runs (
    id {id_type},
    job TEXT NOT NULL,
    tenant TEXT,
    trigger TEXT NOT NULL,
    tick TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    error TEXT,
    host TEXT,
    pid INTEGER,
    pid_token TEXT,
    session INTEGER,
    lock_key TEXT
);
CREATE INDEX IF NOT EXISTS pinstripe_runs_job_tenant ON pinstripe_runs (job, tenant, id);
CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_runs_lock ON pinstripe_runs (job, lock_key) WHERE status = 'running';
CREATE TABLE IF NOT EXISTS pinstripe_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pinstripe_ticks (
    job TEXT NOT NULL,
    tick TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    PRIMARY KEY (job, tick)
);
"""


class StateStore:
    """One store per process and URL. Thread-safe: one shared connection behind a lock."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow, history_days: float = 30):
        self.url = url
        self.clock = clock
        self.history_days = history_days
        self.pid = os.getpid()
        self.token = process_token(self.pid)
        self._mutex = threading.RLock()
        self._deferred: list[tuple] = []  # SQLite: run-end updates that ride on the next commit (see end_run)
        self._engine = None
        backend = url.split(":", 1)[0].split("+")[0]
        self.is_sqlite = backend == "sqlite"
        self.is_postgres = backend in ("postgresql", "postgres")
        if not (self.is_sqlite or self.is_postgres):
            raise ConfigError(f"State store {mask_secrets(url)}: only SQLite and PostgreSQL URLs are supported.",
                              "Use sqlite:///path/state.db or postgresql+psycopg://user@host/db.")
        try:
            self._conn = self._connect_sqlite() if self.is_sqlite else self._connect_other()
            self._create_schema()
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"State store {mask_secrets(url)} is not usable: {type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                              "Check `state` in the config (a SQLAlchemy URL), or PINSTRIPE_STATE.") from None
        self._prune_daily()

    # -- connections -------------------------------------------------------------------------------
    def _connect_sqlite(self):
        import sqlite3
        from pathlib import Path

        path = self.url.split(":///", 1)[1].split("?", 1)[0] if ":///" in self.url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False, timeout=30)
        for attempt in range(300):  # switching to WAL does not wait on the busy timeout: retry for ~30s
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 299:
                    raise
                import time

                time.sleep(0.1)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _connect_other(self):
        import sqlalchemy as sa

        self._engine = sa.create_engine(self.url, pool_size=5, max_overflow=100, pool_pre_ping=True)
        return self._raw_autocommit()

    def _raw_autocommit(self):
        """A pooled DB-API connection in autocommit mode (each statement is its own transaction)."""
        conn = self._engine.raw_connection()
        driver = conn.driver_connection
        if hasattr(driver, "autocommit"):
            driver.autocommit = True
        elif hasattr(driver, "set_autocommit"):
            driver.set_autocommit(True)
        return conn

    def _sql(self, text: str) -> str:
        return text if self.is_sqlite else text.replace("?", "%s")

    def _execute(self, sql: str, params: tuple = (), conn=None):
        cursor = (conn or self._conn).cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def _create_schema(self) -> None:
        id_type = "INTEGER PRIMARY KEY AUTOINCREMENT" if self.is_sqlite else "BIGSERIAL PRIMARY KEY"
        statements = [s.strip() for s in SCHEMA.format(id_type=id_type).split(";") if s.strip()]
        with self._mutex:
            if self.is_postgres:
                self._execute("BEGIN")
                self._execute("SELECT pg_advisory_xact_lock(?)", (_advisory_key("schema"),))
            for statement in statements:
                self._execute(statement)
            if self.is_postgres:
                self._execute("COMMIT")

    def close(self) -> None:
        with self._mutex:
            self.flush()
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- runs and locks ----------------------------------------------------------------------------
    def begin_run(self, job: str, tenant: Any, trigger: str, *, tick: datetime | None = None, attempt: int = 1,
                  lock: bool = True) -> Lease | None:
        """Record a started run. With ``lock``, return None when a live run of (job, tenant) holds the lock."""
        key = "-" if tenant is None else str(tenant)
        if lock and self.is_postgres:
            return self._begin_pg_locked(job, key, tenant, trigger, tick, attempt)
        if not lock:
            with self._mutex:
                return Lease(self._insert_run(job, tenant, trigger, tick, attempt, None, None))
        import sqlite3

        with self._mutex:
            for _ in range(10):
                try:
                    return Lease(self._insert_run(job, tenant, trigger, tick, attempt, None, key))
                except sqlite3.IntegrityError:
                    pass
                holder = self._execute("SELECT id, host, pid, pid_token FROM pinstripe_runs WHERE job = ? AND "
                                       "lock_key = ? AND status = ?", (job, key, LIVE)).fetchone()
                if holder is not None:
                    if self._holder_alive(*holder[1:]):
                        return None
                    self._execute("UPDATE pinstripe_runs SET status = ?, ended_at = ?, error = ? WHERE id = ? "
                                  "AND status = ?", ("abandoned", iso(self.clock()), "its process is gone",
                                                     holder[0], LIVE))
        return None

    def _begin_pg_locked(self, job, key, tenant, trigger, tick, attempt) -> Lease | None:
        conn = self._raw_autocommit()
        got, session = self._execute("SELECT pg_try_advisory_lock(?), pg_backend_pid()",
                                     (_advisory_key(job, key),), conn).fetchone()
        if not got:
            conn.close()
            return None
        with self._mutex:
            return Lease(self._insert_run(job, tenant, trigger, tick, attempt, session, None), conn)

    def _insert_run(self, job, tenant, trigger, tick, attempt, session, lock_key) -> int:
        values = (job, None if tenant is None else str(tenant), trigger, iso(tick), attempt, iso(self.clock()),
                  LIVE, HOST, self.pid, self.token, session, lock_key)
        sql = ("INSERT INTO pinstripe_runs (job, tenant, trigger, tick, attempt, started_at, status, host, pid, "
               "pid_token, session, lock_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        if not self.is_sqlite:
            return self._execute(sql + " RETURNING id", values).fetchone()[0]
        if not self._deferred:
            return self._execute(sql, values).lastrowid
        self._execute("BEGIN IMMEDIATE")  # the previous run's end and this run's start: one commit
        try:
            self._flush_deferred()
            return self._execute(sql, values).lastrowid
        finally:
            self._execute("COMMIT")  # also when the insert hit the lock: the updates stand

    _END = "UPDATE pinstripe_runs SET status = ?, ended_at = ?, error = ? WHERE id = ?"

    def end_run(self, lease: Lease, status: str, error: str | None = None, *, defer: bool = False) -> None:
        """Record how a run ended and release its lock. With ``defer`` (SQLite), the update is committed
        together with this store's next write, at the latest by ``flush()``: back-to-back runs then cost one
        commit each instead of two. Callers flush when their batch of runs is done."""
        values = (status, iso(self.clock()), mask_secrets(error) if error else None, lease.run_id)
        with self._mutex:
            if defer and self.is_sqlite and lease.connection is None:
                self._deferred.append(values)
                return
            self._execute(self._END, values)
        if lease.connection is not None:
            try:
                self._execute("SELECT pg_advisory_unlock_all()", (), lease.connection)
            finally:
                lease.connection.close()

    def _flush_deferred(self) -> None:
        if self._deferred:
            self._conn.executemany(self._END, self._deferred)
            self._deferred.clear()

    def flush(self) -> None:
        """Commit deferred run ends now."""
        with self._mutex:
            self._flush_deferred()

    def record(self, job: str, tenant: Any, trigger: str, status: str, *, error: str | None = None,
               tick: datetime | None = None) -> None:
        """A run that never started (skipped): one finished row."""
        lease = self.begin_run(job, tenant, trigger, tick=tick, lock=False)
        self.end_run(lease, status, error)

    def _holder_alive(self, host: str, pid: int, token: str | None) -> bool:
        if host != HOST:
            return True  # another machine: only PostgreSQL can tell, through its own locks
        return process_alive(pid, token or "")

    def _row_alive(self, row: dict) -> bool:
        if self.is_postgres and row.get("session"):
            found = self._execute("SELECT 1 FROM pg_stat_activity WHERE pid = ?", (row["session"],)).fetchone()
            return found is not None
        return self._holder_alive(row["host"], row["pid"], row["pid_token"])

    # -- tick claims -------------------------------------------------------------------------------
    def claim_tick(self, job: str, tick: datetime) -> bool:
        """True for exactly one caller per (job, tick), across processes and machines sharing the store."""
        verb = "INSERT OR IGNORE INTO" if self.is_sqlite else "INSERT INTO"
        tail = "" if self.is_sqlite else " ON CONFLICT DO NOTHING"
        with self._mutex:
            self._flush_deferred()
            cursor = self._execute(f"{verb} pinstripe_ticks VALUES (?, ?, ?, ?, ?){tail}",
                                   (job, iso(tick), iso(self.clock()), HOST, self.pid))
            return cursor.rowcount == 1

    def last_claimed_tick(self, job: str) -> datetime | None:
        with self._mutex:
            self._flush_deferred()
            row = self._execute("SELECT max(tick) FROM pinstripe_ticks WHERE job = ?", (job,)).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    # -- reading -----------------------------------------------------------------------------------
    COLUMNS = ("id", "job", "tenant", "trigger", "tick", "attempt", "started_at", "ended_at", "status", "error",
               "host", "pid", "pid_token", "session", "lock_key")

    def runs(self, *, job: str | None = None, tenant: str | None = None, status: str | None = None,
             limit: int | None = 50) -> list[dict]:
        """Runs, newest first. ``running`` rows whose process is gone read as ``abandoned``."""
        where, params = [], []
        for column, value in (("job", job), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if status is not None:
            where.append("status = ?")
            params.append(LIVE if status == "abandoned" else status)
        sql = f"SELECT {', '.join(self.COLUMNS)} FROM pinstripe_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        with self._mutex:
            self._flush_deferred()
            rows = [self._present(dict(zip(self.COLUMNS, r))) for r in self._execute(sql, tuple(params)).fetchall()]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return rows[:limit] if limit is not None else rows

    def _present(self, row: dict) -> dict:
        if row["status"] == LIVE and not self._row_alive(row):
            row["status"] = "abandoned"
        for key in ("pid_token", "session", "lock_key"):
            row.pop(key, None)
        return row

    def last_runs(self) -> dict[str, dict]:
        """The newest run of every job."""
        sql = (f"SELECT {', '.join(self.COLUMNS)} FROM pinstripe_runs WHERE id IN "
               "(SELECT max(id) FROM pinstripe_runs GROUP BY job)")
        with self._mutex:
            self._flush_deferred()
            rows = [self._present(dict(zip(self.COLUMNS, r))) for r in self._execute(sql).fetchall()]
        return {row["job"]: row for row in rows}

    def failed_tenants(self, job: str) -> list[str]:
        """Tenants whose newest run of ``job`` did not succeed (failed, timed out, interrupted, abandoned)."""
        sql = ("SELECT id, job, tenant, status, host, pid, pid_token, session FROM pinstripe_runs WHERE id IN "
               "(SELECT max(id) FROM pinstripe_runs WHERE job = ? AND status <> 'skipped' GROUP BY tenant)")
        keys = ("id", "job", "tenant", "status", "host", "pid", "pid_token", "session")
        with self._mutex:
            self._flush_deferred()
            rows = [dict(zip(keys, r)) for r in self._execute(sql, (job,)).fetchall()]
        result = []
        for row in rows:
            status = row["status"]
            if status == LIVE and not self._row_alive(row):
                status = "abandoned"
            if status in BAD and row["tenant"] is not None:
                result.append(row["tenant"])
        return result

    def _prune_daily(self) -> None:
        """Prune at most once a day per store (the check is one indexed read)."""
        now = self.clock()
        with self._mutex:
            row = self._execute("SELECT value FROM pinstripe_meta WHERE key = 'pruned_at'").fetchone()
        if row and now - datetime.fromisoformat(row[0]) < timedelta(days=1):
            return
        self.prune(now)
        with self._mutex:
            self._execute("INSERT INTO pinstripe_meta VALUES ('pruned_at', ?) ON CONFLICT (key) "
                          "DO UPDATE SET value = excluded.value", (iso(now),))

    def prune(self, now: datetime | None = None) -> int:
        if not self.history_days:
            return 0
        cutoff = iso((now or self.clock()) - timedelta(days=self.history_days))
        with self._mutex:
            self._flush_deferred()
            removed = self._execute("DELETE FROM pinstripe_runs WHERE started_at < ? AND status <> ?",
                                    (cutoff, LIVE)).rowcount
            self._execute("DELETE FROM pinstripe_ticks WHERE claimed_at < ?", (cutoff,))
        return removed


def _advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for PostgreSQL, stable across processes and machines."""
    import hashlib

    digest = hashlib.blake2b("\0".join(("pinstripe-jobs", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
