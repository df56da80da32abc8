"""What differs between the two databases the store runs on: connecting, which driver errors are passing
faults (retried) and which are refusals, the placeholder style, pipelining, how a write transaction begins,
how run ends are sent, and whether rows must be read at once.

SQLite (the embedded default) goes through the standard library's ``sqlite3``; PostgreSQL through
``psycopg`` directly. Both drivers are imported only when a store connects (start-up time). Nothing outside
this module asks which database a store is: callers ask the dialect (``local``, ``begin``...).
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from pinstripe_jobs.errors import ConfigError, mask_secrets

# bad login, no such database/schema, no right: a refusal, not an outage (PostgreSQL SQLSTATEs)
_NOT_TRANSIENT = ("28000", "28P01", "3D000", "42501", "3F000")
Params = Sequence[Any]


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg cursors both have it)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Params = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses."""

    def cursor(self) -> Any: ...

    def close(self) -> None: ...


class Dialect:
    """One database's ways. Subclasses: ``SQLiteDialect``, ``PostgresDialect``; ``dialect_for(url)``."""

    local = False  # a file on this machine, shared by this host's processes only
    sqlite = False  # the schema module's keyword (``ensure_schema(conn, sqlite=...)``)
    begin = "BEGIN"  # how a write transaction begins

    def __init__(self, url: str):
        self.url = url

    def connect(self) -> Connection:
        raise NotImplementedError

    def transient(self, exc: BaseException) -> bool:
        """A passing fault (a dropped connection, a restart, a lock or statement timeout, a full disk):
        retried with a fresh connection."""
        raise NotImplementedError

    def driver_error(self, exc: BaseException) -> bool:
        """Any error of the driver (a transient one, or a refusal: no right, no such table)."""
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """``text`` with the driver's placeholders (the store writes ``?``)."""
        return text

    def pipeline(self, conn: Connection, pipelined: bool) -> AbstractContextManager[Any]:
        """A context in which statements go in one round trip, where the driver can (PostgreSQL)."""
        return nullcontext()

    def execute_many(self, conn: Connection, sql: str, rows: Sequence[Params]) -> None:
        conn.cursor().executemany(self.sql(sql), rows)

    def rows_now(self, cursor: Cursor) -> list[Any] | Cursor:
        """The rows of a statement in a pipeline: read at once where nothing is pipelined, else the cursor,
        read after the pipeline's sync."""
        return cursor

    def discard(self, conn: Connection) -> None:
        """Close a connection that failed or is no longer wanted; never raises."""
        try:
            conn.close()
        except Exception:
            pass

    def missing(self) -> bool:
        """True when the database is a file that does not exist (a read-only command must not create it)."""
        return False

    def short_lock_wait(self) -> str | None:
        """A statement that makes the open transaction wait for others' locks only briefly (housekeeping
        that can wait for the next command), or None where locks are short anyway (SQLite)."""
        return None


# SQLite's result codes of a passing fault (extended codes start with these: SQLITE_IOERR_WRITE, ...)
_SQLITE_PASSING = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL",
                   "SQLITE_PROTOCOL", "SQLITE_NOMEM")


class SQLiteDialect(Dialect):
    local = True
    sqlite = True
    begin = "BEGIN IMMEDIATE"  # take the write lock at once: no upgrade deadlock between two writers

    def path(self) -> str:
        return self.url.split(":///", 1)[1].split("?", 1)[0] if ":///" in self.url else ""

    def connect(self) -> Connection:
        import sqlite3

        path = self.path()
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A short busy timeout: waiting for a lock is retried by the engine, where a stop request can end it.
        conn = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False, timeout=2)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def transient(self, exc: BaseException) -> bool:
        """A lock held elsewhere, a busy database, an I/O error, a file that cannot be opened now, a full
        disk: passing. Not an error of the statement itself (a LIKE pattern too complex for SQLite, too many
        variables, no such table), which no retry can mend: that is answered at once."""
        import sqlite3

        if not isinstance(exc, sqlite3.OperationalError):
            return False
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name:
            return name.startswith(_SQLITE_PASSING)
        text = str(exc).lower()
        return any(word in text for word in ("locked", "busy", "disk i/o", "unable to open", "disk is full"))

    def driver_error(self, exc: BaseException) -> bool:
        import sqlite3

        return isinstance(exc, sqlite3.Error)

    def execute_many(self, conn: Connection, sql: str, rows: Sequence[Params]) -> None:
        conn.cursor().executemany(sql, rows)  # in the caller's transaction

    def rows_now(self, cursor: Cursor) -> list[Any] | Cursor:
        return cursor.fetchall()

    def discard(self, conn: Connection) -> None:
        try:
            if getattr(conn, "in_transaction", False):
                conn.cursor().execute("ROLLBACK")
        except Exception:
            pass
        super().discard(conn)

    def missing(self) -> bool:
        path = self.path()
        return bool(path) and path != ":memory:" and not Path(path).is_file()


class PostgresDialect(Dialect):
    def connect(self) -> Connection:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        rest = self.url.split("://", 1)[1]
        params = conninfo_to_dict("postgresql://" + rest)
        params.setdefault("connect_timeout", "5")
        # A server that stops answering is noticed: TCP keepalives, and unacknowledged data for 10 s
        for key, value in (("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"),
                           ("keepalives_count", "3"), ("tcp_user_timeout", "10000")):
            params.setdefault(key, value)
        limits = "-c statement_timeout=30000 -c lock_timeout=1000 -c idle_in_transaction_session_timeout=60000"
        params["options"] = f"{params.get('options', '')} {limits}".strip()
        params.setdefault("application_name", "pinstripe-jobs")
        options: dict[str, Any] = dict(params)
        conn: Connection = psycopg.connect(autocommit=True, **options)
        return conn

    def transient(self, exc: BaseException) -> bool:
        import psycopg

        if getattr(exc, "sqlstate", None) in _NOT_TRANSIENT:
            return False
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    def driver_error(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.Error)

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def short_lock_wait(self) -> str | None:
        return "SET LOCAL lock_timeout = 100"

    def pipeline(self, conn: Connection, pipelined: bool) -> AbstractContextManager[Any]:
        if not pipelined:
            return nullcontext()
        context: AbstractContextManager[Any] = getattr(conn, "pipeline")()  # noqa: B009 (psycopg only)
        return context


def dialect_for(url: str) -> Dialect:
    """The dialect of a state URL. Raises ConfigError (exit 3) for a database the store does not support."""
    backend = url.split(":", 1)[0].split("+")[0]
    if backend == "sqlite":
        return SQLiteDialect(url)
    if backend in ("postgresql", "postgres"):
        return PostgresDialect(url)
    raise ConfigError(f"State store {mask_secrets(url)}: only SQLite and PostgreSQL URLs are supported.",
                      "Use sqlite:///path/state.db or postgresql+psycopg://user@host/db.")
