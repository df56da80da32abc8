"""Tenants from a PostgreSQL table, through ``psycopg`` directly (no SQLAlchemy: its import, an engine and
table reflection cost more than a whole one-tenant run). Used for ``postgresql://``, ``postgres://`` and
``postgresql+psycopg://`` URLs; other drivers go through the SQLAlchemy source.

The same contract and SQL as the SQLite source (keyword filters, ordering and limits become SQL; predicates
run in Python; rows come in keyset pages, each read on its own), plus what a network database needs: a
connection that drops between or during pages is replaced and the scan resumes after the last id read,
for up to ``RETRY_S`` seconds.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from pinstripe_jobs.errors import TenantSourceError, mask_secrets
from pinstripe_jobs.tenants.query import Condition, TenantQuery, check_id, keyset_pages
from pinstripe_jobs.tenants.sqlite import SqliteSource, quote_name

RETRY_S = 30  # how long a lost connection to the tenant database is retried before the run stops (exit 3)
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def _driver() -> ModuleType:
    try:
        import psycopg
    except ImportError:
        raise TenantSourceError("The PostgreSQL driver (psycopg) is not installed.",
                                "Install it: pip install 'pinstripe-jobs[postgres]'.") from None
    return psycopg


def _pg_sql(sql: str) -> str:
    """The SQLite source's ``?`` placeholders as psycopg's ``%s`` (outside quoted names; ``%`` doubled)."""
    parts = sql.replace("%", "%%").split('"')
    return '"'.join(part.replace("?", "%s") if i % 2 == 0 else part for i, part in enumerate(parts))


class _Connection:
    """A psycopg connection that takes the SQLite source's SQL."""

    def __init__(self, conn: Any, trace: Callable[[str], Any] | None):
        self.conn = conn
        self.trace = trace

    def execute(self, sql: str, params: Any = (), /) -> Any:
        if self.trace is not None:
            self.trace(sql)
        return self.conn.execute(_pg_sql(sql), list(params))

    def close(self) -> None:
        self.conn.close()


class PostgresSource(SqliteSource):
    def __init__(self, url: str, table: str = "tenants"):
        psycopg = _driver()
        from psycopg.conninfo import conninfo_to_dict

        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.table_name = table
        try:
            self.params = conninfo_to_dict("postgresql://" + url.split("://", 1)[1])
        except Exception:
            raise TenantSourceError(f"Tenant source {mask_secrets(url)!r} is not a valid database URL.",
                                    "Example: postgresql://user@host/db") from None
        self.params.setdefault("connect_timeout", "10")  # a server that never answers is an error, not a hang
        self.params.setdefault("application_name", "pinstripe-jobs")
        self.description = f"table '{table}' in {mask_secrets(url)}"
        self.trace: Callable[[str], Any] | None = None  # tests: sees every statement sent
        self._columns = None
        self._id_is_rowid = False
        self._id_not_null = False
        self._conn: _Connection | None = None  # kept between pages and reads; replaced when it drops
        self._reached = False  # connected once: a later failure is a drop, retried

    def _connect(self) -> _Connection:
        try:
            return _Connection(self._psycopg.connect(autocommit=True, **self.params), self.trace)
        except self._psycopg.Error as exc:
            raise TenantSourceError(f"Tenant source unreachable: {self.description}: {_first_line(exc)}") from None

    @property
    def columns(self) -> dict[str, str]:
        if self._columns is None:
            rows = self._retrying(lambda conn: conn.execute(
                "SELECT a.attname, upper(format_type(a.atttypid, a.atttypmod)), a.attnotnull FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(?) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (quote_name(self.table_name),)).fetchall())
            if not rows:
                raise TenantSourceError(f"Tenant table missing: {self.description}.",
                                        "Create the table or set `tenants_table` in the config.")
            self._columns = {row[0]: row[1] for row in rows}
            if "id" not in self._columns:
                raise TenantSourceError(f"Tenant table has no 'id' column: {self.description}.")
            self._id_not_null = any(row[0] == "id" and row[2] for row in rows)
        return self._columns

    # -- what differs from SQLite's SQL ------------------------------------------------------------
    def _negated(self, cond: Condition, params: list[Any]) -> str:
        if cond.is_in:
            return super()._negated(cond, params)
        params.append(cond.value)
        return f"{self._column(cond.field)} IS DISTINCT FROM ?"

    def _where(self, query: TenantQuery) -> tuple[list[str], list[Any]]:
        clauses, params = super()._where(query)
        return [{"0": "FALSE", "1": "TRUE"}.get(c, c) for c in clauses], params

    # -- reading -----------------------------------------------------------------------------------
    def _retrying(self, read: Callable[[Any], Any]) -> Any:
        """``read(connection)`` on the source's connection (one for the whole run: a connection costs a
        server process); a lost one is replaced with backoff for up to ``RETRY_S``. A source that cannot be
        reached at all (a wrong URL, a server that is down) is an error at once."""
        started = time.monotonic()
        delay = 0.1
        while True:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._reached = True
                return read(self._conn)
            except (TenantSourceError, self._psycopg.OperationalError, self._psycopg.InterfaceError):
                self.close()
                if not self._reached or time.monotonic() - started + delay > RETRY_S:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _keyset(self, select: str, clauses: list[str], params: list[Any], descending: bool,
                remaining: int | None) -> Iterator[tuple[Any, ...]]:
        id_index = list(self.columns).index("id")
        suspects = ([] if self._id_not_null else ['"id" IS NULL']) + \
            (["\"id\" = ''"] if "INT" not in self.columns["id"] else [])
        if suspects:  # NULLs sort outside the pages' range: look for them once, up front
            bad = self._retrying(lambda conn: conn.execute(
                f'SELECT "id" FROM {quote_name(self.table_name)} WHERE {" OR ".join(suspects)} LIMIT 1').fetchone())
            if bad:
                check_id(bad[0], self.description)
        yield from keyset_pages(
            lambda last, limit: self._retrying(
                lambda conn: conn.execute(*self._page(select, clauses, params, descending, last, limit)).fetchall()),
            lambda row: row[id_index], remaining)

    def _stream(self, select: str, clauses: list[str], params: list[Any], order: str,
                limit: int | None) -> Iterator[tuple[Any, ...]]:
        sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        repeated = self._retrying(lambda conn: conn.execute(
            f'SELECT "id" FROM {quote_name(self.table_name)} GROUP BY "id" HAVING count(*) > 1 LIMIT 1').fetchone())
        if repeated:  # another order than by id: repeats are not adjacent, so look for them up front
            raise TenantSourceError(f"Duplicate tenant id {repeated[0]!r} in {self.description}.",
                                    "Make `id` the table's primary key.")
        conn = self._connect()
        try:  # a server-side cursor: rows stream in pages instead of arriving all at once
            with conn.conn.transaction():
                cursor = conn.conn.cursor(name="pinstripe_tenants")
                if self.trace is not None:
                    self.trace(sql)
                cursor.execute(_pg_sql(sql), list(params))
                while batch := cursor.fetchmany(1000):
                    yield from batch
        finally:
            conn.close()

    def _scalar(self, sql: str, params: list[Any]) -> Any:
        return self._retrying(lambda conn: conn.execute(sql, params).fetchone()[0])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return mask_secrets(text[0] if text else type(exc).__name__)
