"""Tenants from a database table, through SQLAlchemy (imported only when this source is used).

Keyword filters, ordering and limits become SQL; predicates run in Python. Rows are streamed: with the
default order (by ``id``) in keyset pages, so no read transaction stays open while jobs run; with another
order, through one streaming cursor.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import TenantSourceError, mask_secrets
from pinstripe_jobs.tenants.query import PATH_HINT, Condition, Tenant, TenantQuery, check_id, checked_rows, keyset_pages

if TYPE_CHECKING:
    import sqlalchemy as sa

PAGE = 1000
RETRY_S = 30  # how long a lost connection to the tenant database is retried before the run stops (exit 3)


class SqlSource:
    def __init__(self, url: str, table: str = "tenants"):
        import sqlalchemy as sa

        self._sa = sa
        self.table_name = table
        try:
            self.url = sa.engine.make_url(url)
        except Exception:
            raise TenantSourceError(f"Tenant source {mask_secrets(url)!r} is not a valid database URL.",
                                    "Example: sqlite:///tenants.db or postgresql+psycopg://user@host/db") from None
        self.description = f"table '{table}' in {self.url.render_as_string(hide_password=True)}"
        try:
            connect_args = {}
            if self.url.get_backend_name() == "postgresql" and "connect_timeout" not in self.url.query:
                connect_args["connect_timeout"] = 10  # a server that never answers is an error, not a hang
            self.engine = sa.create_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
        except Exception as exc:  # missing driver, bad options
            raise TenantSourceError(f"Cannot open tenant source {self.description}: {exc}.",
                                    _driver_hint(self.url.drivername)) from None
        self._table: sa.Table | None = None

    @property
    def table(self) -> sa.Table:
        if self._table is None:
            sa = self._sa
            if self.url.get_backend_name() == "sqlite" and self.url.database not in (None, "", ":memory:"):
                from pathlib import Path

                if not Path(self.url.database).is_file():
                    raise TenantSourceError(f"Tenant database file {self.url.database} does not exist.",
                                            PATH_HINT)
            try:
                table = sa.Table(self.table_name, sa.MetaData(), autoload_with=self.engine)
            except sa.exc.NoSuchTableError:
                raise TenantSourceError(f"Tenant table missing: {self.description}.",
                                        "Create the table or set `tenants_table` in the config.") from None
            except sa.exc.SQLAlchemyError as exc:
                raise TenantSourceError(f"Tenant source unreachable: {self.description}: "
                                        f"{_first_line(exc)}") from None
            if "id" not in table.c:
                raise TenantSourceError(f"Tenant table has no 'id' column: {self.description}.")
            self._table = table
        return self._table

    # -- SQL building -----------------------------------------------------------------------------
    def _column(self, field: str) -> sa.Column[Any]:
        try:
            return self.table.c[field]
        except KeyError:
            raise TenantSourceError(f"Tenant filter names a column '{field}' that {self.description} does not "
                                    f"have (columns: {', '.join(self.table.c.keys())}).") from None

    def _id_type(self) -> type:
        try:
            kind: type = self.table.c["id"].type.python_type
            return kind
        except NotImplementedError:
            return str

    def _coerce_ids(self, ids: tuple[str, ...]) -> list[Any]:
        if self._id_type() is int:
            return [int(i) for i in ids if i.lstrip("-").isdigit()]
        return list(ids)

    def _condition(self, cond: Condition) -> sa.ColumnElement[bool]:
        column = self._column(cond.field)
        if cond.is_in:
            return column.in_(list(cond.value))
        return column.is_(None) if cond.value is None else column == cond.value

    def _negated(self, cond: Condition) -> sa.ColumnElement[bool]:
        column = self._column(cond.field)
        if cond.is_in:
            return self._sa.or_(column.not_in(list(cond.value)), column.is_(None))
        return column.is_distinct_from(cond.value)

    def _where(self, query: TenantQuery) -> list[sa.ColumnElement[bool]]:
        sa = self._sa
        clauses = [self._condition(c) for c in query.wheres]
        for group in query.excludes:
            clauses.append(sa.or_(*[self._negated(c) for c in group]))
        if query.ids is not None:
            clauses.append(self.table.c["id"].in_(self._coerce_ids(query.ids)))
        if query.excluded_ids:
            clauses.append(self.table.c["id"].not_in(self._coerce_ids(query.excluded_ids)))
        return clauses

    def _order(self, query: TenantQuery) -> list[sa.UnaryExpression[Any]]:
        order = []
        for spec in query.ordering:
            column = self._column(spec.lstrip("-"))
            order.append((column.desc() if spec.startswith("-") else column.asc()).nulls_last())
        return order

    # -- protocol ----------------------------------------------------------------------------------
    def iterate(self, query: TenantQuery) -> Iterator[Tenant]:
        sa = self._sa
        stmt = sa.select(self.table).where(*self._where(query))
        try:
            if query.ordering in (("id",), ("-id",)):
                rows = self._keyset(stmt, query)
            else:
                rows = self._stream(stmt.order_by(*self._order(query)), query)
            yield from checked_rows((Tenant(row._mapping) for row in rows), query, self.description)
        except sa.exc.SQLAlchemyError as exc:
            raise TenantSourceError(f"Reading tenants failed: {self.description}: {_first_line(exc)}") from None

    def _limit(self, query: TenantQuery) -> int | None:
        return query.max_rows if not query.predicates else None

    def _keyset(self, stmt: sa.Select[Any], query: TenantQuery) -> Iterator[Any]:
        """Keyset pages, each on a pooled connection of its own: a connection that drops between or during
        pages is replaced and the scan resumes after the last id read (for up to ``RETRY_S`` seconds)."""
        sa = self._sa
        id_col = self.table.c["id"]
        descending = query.ordering == ("-id",)
        suspects = ([id_col.is_(None)] if id_col.nullable and not id_col.primary_key else []) + \
            ([id_col == ""] if self._id_type() is str else [])
        bad = suspects and self._retrying(lambda conn: conn.execute(sa.select(id_col).where(sa.or_(*suspects))
                                                                    .limit(1)).first())
        if bad:  # NULLs sort outside the pages' range: look for them once, up front
            check_id(bad[0], self.description)

        def fetch(last: Any, limit: int) -> list[Any]:
            paged = stmt
            if last is not None:
                paged = paged.where(id_col <= last if descending else id_col >= last)
            paged = paged.order_by(id_col.desc() if descending else id_col.asc()).limit(limit)
            rows: list[Any] = self._retrying(lambda conn: conn.execute(paged).fetchall())
            return rows

        yield from keyset_pages(fetch, lambda row: row._mapping["id"], self._limit(query))

    def _retrying(self, read: Callable[[Any], Any]) -> Any:
        """Run ``read(connection)``; on a lost connection, reconnect with backoff for up to ``RETRY_S``."""
        sa = self._sa
        started = time.monotonic()
        delay = 0.1
        while True:
            try:
                with self.engine.connect() as conn:
                    return read(conn)
            except (sa.exc.OperationalError, sa.exc.InterfaceError):
                self.engine.dispose()  # drop pooled connections to a server that went away
                if time.monotonic() - started + delay > RETRY_S:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _stream(self, stmt: sa.Select[Any], query: TenantQuery) -> Iterator[Any]:
        sa = self._sa
        id_col = self.table.c["id"]
        repeated = self._retrying(lambda conn: conn.execute(
            sa.select(id_col).group_by(id_col).having(sa.func.count() > 1).limit(1)).first())
        if repeated:  # another order than by id: repeats are not adjacent, so look for them up front
            raise TenantSourceError(f"Duplicate tenant id {repeated[0]!r} in {self.description}.",
                                    "Make `id` the table's primary key.")
        limit = self._limit(query)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=PAGE).execute(stmt)
            yield from result

    def count(self, query: TenantQuery) -> int:
        sa = self._sa
        if query.predicates:
            return sum(1 for _ in self.iterate(query))
        stmt = sa.select(sa.func.count()).select_from(self.table).where(*self._where(query))
        try:
            with self.engine.connect() as conn:
                total: int = conn.execute(stmt).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            raise TenantSourceError(f"Counting tenants failed: {self.description}: {_first_line(exc)}") from None
        return total if query.max_rows is None else min(total, query.max_rows)

    def close(self) -> None:
        self.engine.dispose()


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return mask_secrets(text[0] if text else type(exc).__name__)


def _driver_hint(driver: str) -> str:
    if driver.startswith("postgresql"):
        return "Install the PostgreSQL driver: pip install 'pinstripe-jobs[postgres]'."
    return "Check the URL's driver name and that its package is installed."
