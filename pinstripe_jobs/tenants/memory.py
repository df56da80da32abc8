"""Sources evaluated in Python: an inline array of tables, a ``"module:callable"``; base for files."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.registry.loading import describe_exception, import_ref
from pinstripe_jobs.tenants.query import Tenant, TenantQuery, make_tenant


class PythonSource:
    """Filters, orders and limits rows in Python. Subclasses provide ``rows()``."""

    description = "tenants"

    def rows(self) -> Iterable[Any]:
        raise NotImplementedError

    def tenants(self) -> Iterator[Tenant]:
        seen: set[str] = set()
        for index, row in enumerate(self.rows()):
            tenant = make_tenant(row, self.description, index)
            key = str(tenant.id)
            if key in seen:
                raise TenantSourceError(f"Duplicate tenant id {tenant.id!r} in {self.description}.",
                                        "Tenant ids must be unique.")
            seen.add(key)
            yield tenant

    def iterate(self, query: TenantQuery) -> Iterator[Tenant]:
        everything = list(self.tenants())
        _check_fields(query, everything, self.description)
        rows = [t for t in everything if query.keyword_match(t)]
        yield from matching(query, query.sort(rows))

    def count(self, query: TenantQuery) -> int:
        return sum(1 for _ in self.iterate(query))

    def close(self) -> None:
        pass


def _check_fields(query: TenantQuery, tenants: list[Tenant], description: str) -> None:
    """A filter on a field that no tenant has is an error, as it is for a database column that does not
    exist (not a filter that silently matches nothing)."""
    wanted = {c.field for c in query.wheres} | {c.field for group in query.excludes for c in group}
    wanted |= {spec.lstrip("-") for spec in query.ordering}
    if not wanted or not tenants:
        return
    known: set[str] = set()
    for tenant in tenants:
        known.update(tenant)
        if wanted <= known:
            return
    missing = sorted(wanted - known)
    raise TenantSourceError(f"Tenant filter names a field {missing[0]!r} that no tenant in {description} has "
                            f"(fields: {', '.join(sorted(known))}).")


class InlineSource(PythonSource):
    description = "the inline `tenants` array"

    def __init__(self, rows: list[dict[str, Any]]):
        self._rows = rows

    def rows(self) -> Iterable[Any]:
        return self._rows


class CallableSource(PythonSource):
    def __init__(self, ref: str):
        self.ref = ref
        self.description = f"tenant source {ref!r}"
        self._func = import_ref(ref, "tenant source")
        if not callable(self._func):
            raise TenantSourceError(f"The tenant source {ref!r} is not callable.",
                                    "It must be a function returning an iterable of mappings or objects.")

    def rows(self) -> Iterable[Any]:
        try:
            rows: Iterable[Any] = self._func()
            return iter(rows)
        except TenantSourceError:
            raise
        except Exception as exc:
            raise TenantSourceError(f"The tenant source {self.ref!r} raised {describe_exception(exc)}.") from exc


def matching(query: TenantQuery, rows: Iterable[Tenant]) -> Iterator[Tenant]:
    """Of ``rows`` (already narrowed by the query's keywords and sorted), those its predicates admit, up to
    its limit: the part of a query that runs in Python, for every source that evaluates it here."""
    emitted = 0
    for tenant in rows:
        if query.max_rows is not None and emitted >= query.max_rows:
            return
        if query.predicate_match(tenant):
            emitted += 1
            yield tenant
