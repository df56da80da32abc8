"""Tenants from a table in a SQLite file, through the standard library's ``sqlite3``.

The same contract as the SQLAlchemy source (keyword filters, ordering and limits become SQL; predicates
run in Python; rows are streamed in keyset pages) without importing SQLAlchemy, which alone costs more
than a whole run of a small job. Used for plain ``sqlite:///path`` URLs.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.tenants.query import PATH_HINT, Condition, Tenant, TenantQuery, check_id, checked_rows, keyset_pages

PAGE = 1000


class Connection(Protocol):
    """What the source needs of a connection: SQLite's own, or PostgreSQL's behind the same SQL."""

    def execute(self, sql: str, params: Any = (), /) -> Any: ...

    def close(self) -> None: ...


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteSource:
    # the driver's errors: a read that fails is a TenantSourceError
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: str, table: str = "tenants"):
        self.path = Path(path)
        self.table_name = table
        self.description = f"table '{table}' in sqlite:///{path}"
        self._columns: dict[str, str] | None = None
        self._id_is_rowid = False

    def _connect(self) -> Connection:
        if self.path.is_dir():
            raise TenantSourceError(f"Tenant database {self.path} is a directory, not a file.", PATH_HINT)
        if not self.path.is_file():
            raise TenantSourceError(f"Tenant database file {self.path} does not exist.", PATH_HINT)
        try:
            # a generator of pages may be finished (closed) by another thread than the one that began it
            return sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True, timeout=30,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise TenantSourceError(f"Tenant source unreachable: {self.description}: {exc}") from None

    @property
    def columns(self) -> dict[str, str]:
        """Column name -> declared type; checks that the table exists and has an ``id``."""
        if self._columns is None:
            conn = self._connect()
            try:
                rows = conn.execute(f"PRAGMA table_info({quote_name(self.table_name)})").fetchall()
            except sqlite3.Error as exc:
                raise TenantSourceError(f"Tenant source unreachable: {self.description}: {exc}") from None
            finally:
                conn.close()
            if not rows:
                raise TenantSourceError(f"Tenant table missing: {self.description}.",
                                        "Create the table or set `tenants_table` in the config.")
            self._columns = {row[1]: (row[2] or "").upper() for row in rows}
            # an INTEGER PRIMARY KEY is the rowid: never NULL, never empty
            self._id_is_rowid = any(row[1] == "id" and row[5] == 1 and (row[2] or "").upper() == "INTEGER"
                                    for row in rows) and sum(1 for row in rows if row[5]) == 1
            if "id" not in self._columns:
                raise TenantSourceError(f"Tenant table has no 'id' column: {self.description}.")
        return self._columns

    # -- SQL building -----------------------------------------------------------------------------
    def _column(self, field: str) -> str:
        if field not in self.columns:
            raise TenantSourceError(f"Tenant filter names a column '{field}' that {self.description} does not "
                                    f"have (columns: {', '.join(self.columns)}).")
        return quote_name(field)

    def _coerce_ids(self, ids: tuple[str, ...]) -> list[Any]:
        if "INT" in self.columns["id"]:
            return [int(i) for i in ids if i.lstrip("-").isdigit()]
        return list(ids)

    def _condition(self, cond: Condition, params: list[Any]) -> str:
        column = self._column(cond.field)
        if cond.is_in:
            params.extend(cond.value)
            return f"{column} IN ({', '.join('?' * len(cond.value))})" if cond.value else "0"
        if cond.value is None:
            return f"{column} IS NULL"
        params.append(cond.value)
        return f"{column} = ?"

    def _negated(self, cond: Condition, params: list[Any]) -> str:
        column = self._column(cond.field)
        if cond.is_in:
            params.extend(cond.value)
            return f"({column} NOT IN ({', '.join('?' * len(cond.value))}) OR {column} IS NULL)" if cond.value \
                else "1"
        params.append(cond.value)
        return f"{column} IS NOT ?"

    def _where(self, query: TenantQuery) -> tuple[list[str], list[Any]]:
        params: list[Any] = []
        clauses = [self._condition(c, params) for c in query.wheres]
        for group in query.excludes:
            clauses.append("(" + " OR ".join(self._negated(c, params) for c in group) + ")")
        for ids, negate in ((query.ids, False), (query.excluded_ids or None, True)):
            if ids is not None:
                values = self._coerce_ids(ids)
                params.extend(values)
                marks = ", ".join("?" * len(values))
                clauses.append(f'"id" {"NOT IN" if negate else "IN"} ({marks})' if values else ("1" if negate else "0"))
        return clauses, params

    def _order(self, query: TenantQuery) -> str:
        parts = []
        for spec in query.ordering:
            direction = "DESC" if spec.startswith("-") else "ASC"
            parts.append(f"{self._column(spec.lstrip('-'))} {direction} NULLS LAST")
        return ", ".join(parts)

    # -- protocol ----------------------------------------------------------------------------------
    def iterate(self, query: TenantQuery) -> Iterator[Tenant]:
        clauses, params = self._where(query)
        names = list(self.columns)
        select = f"SELECT {', '.join(map(quote_name, names))} FROM {quote_name(self.table_name)}"
        limit = query.max_rows if not query.predicates else None
        try:
            if query.ordering in (("id",), ("-id",)):
                rows = self._keyset(select, clauses, params, query.ordering == ("-id",), limit)
            else:
                rows = self._stream(select, clauses, params, self._order(query), limit)
            tenants = (Tenant(dict(zip(names, row, strict=True))) for row in rows)
            yield from checked_rows(tenants, query, self.description)
        except self.errors as exc:
            raise TenantSourceError(f"Reading tenants failed: {self.description}: {exc}") from None

    def _keyset(self, select: str, clauses: list[str], params: list[Any], descending: bool,
                remaining: int | None) -> Iterator[tuple[Any, ...]]:
        """Pages ordered by id, each read in its own short transaction: no lock is held while jobs run.
        Each page starts *at* the last id read (skipping the rows already passed on), so an id repeated
        across a page boundary is seen, and rejected, like one inside a page."""
        id_index = list(self.columns).index("id")
        conn = self._connect()
        try:
            table = quote_name(self.table_name)
            bad = not self._id_is_rowid and conn.execute(
                f'SELECT "id" FROM {table} WHERE "id" IS NULL OR "id" = \'\' LIMIT 1').fetchone()
            if bad:  # NULLs sort outside the pages' range: look for them once, up front
                check_id(bad[0], self.description)
            yield from keyset_pages(
                lambda last, limit: conn.execute(
                    *self._page(select, clauses, params, descending, last, limit)).fetchall(),
                lambda row: row[id_index], remaining)
        finally:
            conn.close()

    def _page(self, select: str, clauses: list[str], params: list[Any], descending: bool, last: Any,
              limit: int) -> tuple[str, list[Any]]:
        where, args = list(clauses), list(params)
        if last is not None:
            where.append('"id" <= ?' if descending else '"id" >= ?')
            args.append(last)
        sql = select + (" WHERE " + " AND ".join(where) if where else "")
        return sql + f' ORDER BY "id" {"DESC" if descending else "ASC"} LIMIT {int(limit)}', args

    def _stream(self, select: str, clauses: list[str], params: list[Any], order: str,
                limit: int | None) -> Iterator[tuple[Any, ...]]:
        sql = select + (" WHERE " + " AND ".join(clauses) if clauses else "") + f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        conn = self._connect()
        try:
            repeated = conn.execute(f'SELECT "id" FROM {quote_name(self.table_name)} GROUP BY "id" HAVING count(*) > 1 '
                                    'LIMIT 1').fetchone()
            if repeated:  # another order than by id: repeats are not adjacent, so look for them up front
                raise TenantSourceError(f"Duplicate tenant id {repeated[0]!r} in {self.description}.",
                                        "Make `id` the table's primary key.")
            cursor = conn.execute(sql, params)
            while batch := cursor.fetchmany(PAGE):
                yield from batch
        finally:
            conn.close()

    def count(self, query: TenantQuery) -> int:
        if query.predicates:
            return sum(1 for _ in self.iterate(query))
        clauses, params = self._where(query)
        sql = f"SELECT count(*) FROM {quote_name(self.table_name)}" + (
            " WHERE " + " AND ".join(clauses) if clauses else "")
        try:
            total: int = self._scalar(sql, params)
        except self.errors as exc:
            raise TenantSourceError(f"Counting tenants failed: {self.description}: {str(exc).strip().splitlines()[0]}"
                                    ) from None
        return total if query.max_rows is None else min(total, query.max_rows)

    def _scalar(self, sql: str, params: list[Any]) -> Any:
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchone()[0]
        finally:
            conn.close()

    def close(self) -> None:
        pass
