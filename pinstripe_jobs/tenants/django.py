"""Tenants from a Django model: ``tenants = "django-tenants"`` (the project's tenant model, the public tenant
left out) or ``tenants = "django:app.Model"`` (any model; row-level tenancy, the job filters by ctx.tenant).

A job's ``tenants_filter`` gets the usual query, whose keyword filters also accept Django field lookups
(``tenants.where(name__startswith="A", plan__in=["pro"])``): they become the queryset's ``filter``/``exclude``.
Rows are read in one query and the thread's connection is reset before any job runs.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pinstripe_jobs.database import django as dj
from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.tenants.memory import matching
from pinstripe_jobs.tenants.query import Tenant, TenantQuery, check_id


class DjangoSource:
    def __init__(self, value: str):
        self.mode = dj.uses_django(value) or "django"
        self.label = value.split(":", 1)[1] if value.startswith("django:") else None
        self.description = "the django-tenants tenant model" if self.label is None else f"Django model {self.label}"
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:
            dj.setup()
            if self.label is None:
                try:
                    from django_tenants.utils import get_tenant_model
                except ImportError:
                    raise TenantSourceError("tenants = \"django-tenants\", but django-tenants is not installed.",
                                            dj.INSTALL_HINT) from None
                self._model = get_tenant_model()
            else:
                from django.apps import apps

                try:
                    self._model = apps.get_model(self.label)
                except (LookupError, ValueError) as exc:
                    raise TenantSourceError(f"tenants = \"django:{self.label}\": {exc}",
                                            'Name an installed model as "django:app_label.ModelName".') from None
        return self._model

    def _queryset(self, query: TenantQuery) -> Any:
        manager = self.model._default_manager
        queryset = manager.all()
        if self.label is None:
            from django_tenants.utils import get_public_schema_name

            queryset = queryset.exclude(schema_name=get_public_schema_name())
        for cond in query.wheres:
            queryset = queryset.filter(**{_lookup(cond.field, cond.is_in): _value(cond.value)})
        for group in query.excludes:
            queryset = queryset.exclude(**{_lookup(c.field, c.is_in): _value(c.value) for c in group})
        if query.ids is not None:
            queryset = queryset.filter(pk__in=list(query.ids))
        if query.excluded_ids:
            queryset = queryset.exclude(pk__in=list(query.excluded_ids))
        ordering = [("-pk" if s == "-id" else "pk") if s.lstrip("-") == "id" else s for s in query.ordering]
        return queryset.order_by(*ordering)

    def _rows(self, query: TenantQuery) -> list[Tenant]:
        from django.core.exceptions import FieldError, ValidationError
        from django.db import DatabaseError

        fields = [f.attname for f in self.model._meta.concrete_fields]
        try:
            queryset = self._queryset(query)
            if query.max_rows is not None and not query.predicates:
                queryset = queryset[:query.max_rows]
            rows = [{**{name: getattr(obj, name) for name in fields}, "id": obj.pk} for obj in queryset]
        except (FieldError, ValidationError, ValueError) as exc:
            raise TenantSourceError(f"Tenant filter on {self.description}: {exc}",
                                    f"Fields: {', '.join(fields)}; Django lookups such as name__startswith "
                                    "work too.") from None
        except DatabaseError as exc:
            raise TenantSourceError(f"Cannot read {self.description}: {type(exc).__name__}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
        finally:
            dj.reset_connections()
        tenants = []
        for row in rows:
            check_id(row["id"], self.description)
            tenants.append(Tenant(row))
        return tenants

    def iterate(self, query: TenantQuery) -> Iterator[Tenant]:
        yield from matching(query, self._rows(query))

    def count(self, query: TenantQuery) -> int:
        return sum(1 for _ in self.iterate(query))

    def close(self) -> None:
        pass


def _lookup(field: str, is_in: bool) -> str:
    name = "pk" if field == "id" else field
    return f"{name}__in" if is_in and not name.endswith("__in") else name


def _value(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, set, frozenset)) else value
