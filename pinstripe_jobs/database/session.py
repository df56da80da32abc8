"""``ctx.db``: one SQLAlchemy ``Session`` per run, bound to the run's tenant, and the per-process engines.

- ``schema``: one engine; every transaction of the session starts with ``set_config('search_path', ...,
  true)`` (transaction-local: it ends with the transaction, so a pooled connection never carries a tenant's
  schema to the next run), checked against ``pg_namespace`` in the same round trip.
- ``database``: one engine per tenant URL, kept in a bounded LRU (``engines.EngineCache``).
- ``shared``: one engine; the session carries the tenant (``ctx.db.tenant``) for the job's filters.

Connections in use by this process are bounded by ``pool_size`` (a semaphore across every engine); a run
checks one out on its first use of ``ctx.db`` and returns it when the run ends: committed if the run
succeeded (``transaction = "run"``), rolled back otherwise. Forked children (``isolation = "process"``,
timed jobs) drop their parent's pools and open their own.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, SessionTransaction

from pinstripe_jobs.database.engines import EngineCache
from pinstripe_jobs.database.settings import DatabaseSettings, MissingField, render
from pinstripe_jobs.errors import mask_secrets

APPLICATION_NAME = "pinstripe-jobs-db"
_SCHEMA_KEY = "pinstripe_schema"
_SET_PATH = text("SELECT set_config('search_path', :path, true), "
                 "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = :schema)")


class TenantDatabaseError(Exception):
    """The run's tenant database cannot be used (missing schema or file, unreachable server, failed
    commit): that tenant's run fails with this message; other tenants go on."""


class TenantSession(Session):
    """A ``Session`` that knows its tenant (``None`` for a job that runs for no tenant)."""

    tenant: Mapping[str, Any] | None = None


@event.listens_for(TenantSession, "after_begin")
def _enter_schema(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    schema = session.info.get(_SCHEMA_KEY)
    if schema is None:
        return
    quoted = '"' + schema.replace('"', '""') + '"'
    exists = connection.execute(_SET_PATH, {"path": quoted, "schema": schema}).one()[1]
    if not exists:
        raise TenantDatabaseError(f"Schema {schema!r} of tenant {_tenant_id(session)!r} does not exist in "
                                  f"{connection.engine.url.render_as_string(hide_password=True)}.")


def _tenant_id(session: Session) -> Any:
    tenant = getattr(session, "tenant", None)
    return tenant.get("id") if tenant is not None else None


class TenantDatabases:
    """This process's engines for one ``[database]`` setting, and the runs' sessions."""

    def __init__(self, settings: DatabaseSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(self.settings.pool_size)
        self._engine: Engine | None = None
        self.engines = EngineCache(self._make_engine, self.settings.max_engines)

    def _after_fork(self) -> None:
        if os.getpid() != self._pid:
            with self._lock:
                if os.getpid() != self._pid:
                    if self._engine is not None:
                        self._engine.dispose(close=False)
                    self.engines.dispose(close=False)
                    self._reset()

    def _make_engine(self, url: str) -> Engine:
        parsed = make_url(url)
        per_tenant = self.settings.tenancy == "database"
        # No pre-ping (three round trips a run): a connection found dead on first use is retried once instead.
        options: dict[str, Any] = {"pool_timeout": self.settings.pool_timeout}
        if parsed.get_backend_name() == "postgresql":
            args: dict[str, Any] = {"connect_timeout": self.settings.connect_timeout}
            if "application_name" not in parsed.query:
                args["application_name"] = APPLICATION_NAME
            options["connect_args"] = args
        if per_tenant:  # one idle connection per recently used tenant database; the rest on demand
            options.update(pool_size=1, max_overflow=max(self.settings.pool_size - 1, 0))
        else:
            options.update(pool_size=self.settings.pool_size, max_overflow=0)
        return create_engine(parsed, **options)

    def _target(self, tenant: Mapping[str, Any] | None) -> tuple[Engine, str | None]:
        """The engine and, with schemas, the schema of ``tenant``'s run."""
        tenancy = self.settings.tenancy
        if tenancy == "shared":
            return self._shared_engine(), None
        if tenant is None:
            raise TenantDatabaseError(f"ctx.db with tenancy = {tenancy!r} needs a tenant, and this job runs for "
                                      "none.")
        template = self.settings.schema if tenancy == "schema" else self.settings.url
        try:
            value = render(template, tenant, url=tenancy == "database")
        except MissingField as missing:
            raise TenantDatabaseError(f"Tenant {tenant.get('id')!r} has no field {missing.args[0]!r}, which "
                                      f"[database] {'schema' if tenancy == 'schema' else 'url'} names "
                                      f"({mask_secrets(template)}).") from None
        except ValueError as exc:
            raise TenantDatabaseError(f"Tenant {tenant.get('id')!r}: {exc}.") from None
        if tenancy == "schema":
            return self._shared_engine(), value
        _check_sqlite_file(value, tenant)
        return self.engines.get(value), None

    def _shared_engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._make_engine(self.settings.url)
        return self._engine

    def open(self, tenant: Mapping[str, Any] | None) -> tuple[TenantSession, Callable[[bool], None]]:
        """A session for ``tenant``'s run with its connection checked out, and the function that ends it
        (``finish(succeeded)``). Raises ``TenantDatabaseError`` with a clear message."""
        self._after_fork()
        if not self._slots.acquire(timeout=self.settings.pool_timeout):
            raise TenantDatabaseError(
                f"No free database connection within {self.settings.pool_timeout:g}s (pool_size = "
                f"{self.settings.pool_size}, all in use by other runs). Raise pool_size or pool_timeout in "
                "[database]; an async job that holds ctx.db across awaits needs pool_size >= --concurrency.")
        slots = self._slots
        where = mask_secrets(self.settings.url)
        try:
            engine, schema = self._target(tenant)
            where = engine.url.render_as_string(hide_password=True)
            try:
                session = _checked_out(engine, tenant, schema)
            except SQLAlchemyError as exc:
                if not getattr(exc, "connection_invalidated", False):
                    raise
                session = _checked_out(engine, tenant, schema)  # a pooled connection had died: once more
        except SQLAlchemyError as exc:
            slots.release()
            raise TenantDatabaseError(f"The database of tenant {_shown(tenant)} cannot be used ({where}): "
                                      f"{_first_line(exc)}") from None
        except BaseException:
            slots.release()
            raise
        return session, lambda succeeded: self._finish(session, succeeded, slots)

    def _finish(self, session: TenantSession, succeeded: bool, slots: threading.BoundedSemaphore) -> None:
        try:
            if succeeded and self.settings.transaction == "run":
                try:
                    session.commit()
                except SQLAlchemyError as exc:
                    raise TenantDatabaseError(f"The run's transaction for tenant {_shown(session.tenant)} could "
                                              f"not be committed: {_first_line(exc)}") from None
            else:
                try:
                    session.rollback()
                except SQLAlchemyError:
                    pass  # the connection is gone, and its transaction with it
        finally:
            try:
                session.close()
            finally:
                slots.release()


def _checked_out(engine: Engine, tenant: Mapping[str, Any] | None, schema: str | None) -> TenantSession:
    """A session with its connection checked out now: a missing schema or a server down is reported here."""
    session = TenantSession(bind=engine)
    session.tenant = tenant
    if schema is not None:
        session.info[_SCHEMA_KEY] = schema
    try:
        session.connection()
    except BaseException:
        session.close()
        raise
    return session


def _check_sqlite_file(url: str, tenant: Mapping[str, Any]) -> None:
    """SQLite creates a missing file silently: a tenant without its database would run on an empty one."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(str(parsed.database)).is_file():
            raise TenantDatabaseError(f"The database file of tenant {_shown(tenant)} does not exist: "
                                      f"{parsed.database}.")


def _shown(tenant: Mapping[str, Any] | None) -> str:
    return "(none)" if tenant is None else repr(tenant.get("id"))


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines() or [type(orig).__name__]
    return mask_secrets(f"{type(orig).__name__}: {lines[0]}")


_MANAGERS: dict[DatabaseSettings, TenantDatabases] = {}
_MANAGERS_LOCK = threading.Lock()


def databases(settings: DatabaseSettings) -> TenantDatabases:
    """The process's manager for ``settings`` (pools are shared by every runner of this process)."""
    manager = _MANAGERS.get(settings)
    if manager is None:
        with _MANAGERS_LOCK:
            manager = _MANAGERS.setdefault(settings, TenantDatabases(settings))
    return manager


def open_run_session(settings: DatabaseSettings,
                     tenant: Mapping[str, Any] | None) -> tuple[TenantSession, Callable[[bool], None]]:
    return databases(settings).open(tenant)
