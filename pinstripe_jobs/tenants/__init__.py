"""Tenant sources behind one protocol, and the lazy ``TenantQuery``.

Sources: ``sqlite`` (a ``sqlite:///file`` URL, through the standard library), ``postgres`` (a
``postgresql://`` URL, through psycopg), ``sql`` (any other SQLAlchemy URL), ``file`` (.json/.jsonl/.csv),
``memory`` (an inline array, or a ``"module:callable"``).
Only the source in use is imported.
"""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.tenants.query import Tenant, TenantQuery, TenantSource

__all__ = ["Tenant", "TenantQuery", "TenantSource", "open_source"]


def open_source(value: Any, table: str = "tenants") -> TenantSource:
    """Build the source named by a resolved ``tenants`` config value (see ``config.resolve_tenants_value``)."""
    if isinstance(value, list):
        from pinstripe_jobs.tenants.memory import InlineSource

        return InlineSource(value)
    if value == "django-tenants" or value.startswith("django:"):
        from pinstripe_jobs.tenants.django import DjangoSource

        return DjangoSource(value)
    if value.startswith(("sqlite:///", "sqlite+pysqlite:///")) and "?" not in value:
        path = value.split(":///", 1)[1]
        if path and path != ":memory:":
            from pinstripe_jobs.tenants.sqlite import SqliteSource

            return SqliteSource(path, table)
    if value.split("://", 1)[0] in ("postgresql", "postgres", "postgresql+psycopg"):
        from pinstripe_jobs.tenants.postgres import PostgresSource

        return PostgresSource(value, table)
    if "://" in value:
        from pinstripe_jobs.tenants.sql import SqlSource

        return SqlSource(value, table)
    if value.lower().endswith((".json", ".jsonl", ".csv")):
        from pinstripe_jobs.tenants.file import FileSource

        return FileSource(value)
    from pinstripe_jobs.tenants.memory import CallableSource

    return CallableSource(value)
