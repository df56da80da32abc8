"""``Tenant`` (a read-only row) and ``TenantQuery`` (a lazy, immutable query over a tenant source)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from pinstripe_jobs.errors import TenantSourceError


class TenantSource(Protocol):
    description: str

    def iterate(self, query: TenantQuery) -> Iterator[Tenant]: ...

    def count(self, query: TenantQuery) -> int: ...

    def close(self) -> None: ...


class Tenant(Mapping[str, Any]):
    """One tenant. Read-only: ``t.id``, ``t.name`` and ``t["plan"]`` all work; assignment raises."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", dict(data))

    @property
    def id(self) -> Any:
        return self._data["id"]

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(
                f"Tenant {self._data.get('id')!r} has no field {name!r} (fields: {', '.join(self._data)})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Tenants are read-only inside a job.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Tenants are read-only inside a job.")

    def __repr__(self) -> str:
        return f"Tenant({self._data!r})"

    def __reduce__(self) -> tuple[type[Tenant], tuple[dict[str, Any]]]:
        return (Tenant, (self._data,))


class Condition:
    """``field == value``, or ``field in value`` for a list/tuple value."""

    __slots__ = ("field", "value", "is_in")

    def __init__(self, field: str, value: Any):
        self.field = field
        self.value = value
        self.is_in = isinstance(value, (list, tuple, set, frozenset))

    def test(self, tenant: Mapping[str, Any]) -> bool:
        actual = tenant.get(self.field)
        return actual in self.value if self.is_in else actual == self.value


class TenantQuery:
    """Immutable: every method returns a new query. Keyword filters combine with AND wherever they are
    chained; ``limit`` applies to the filtered, ordered result. SQL sources turn keyword forms into SQL."""

    __slots__ = ("source", "wheres", "excludes", "predicates", "ids", "excluded_ids", "ordering", "max_rows")

    def __init__(self, source: TenantSource, wheres: tuple[Condition, ...] = (),
                 excludes: tuple[tuple[Condition, ...], ...] = (),
                 predicates: tuple[Callable[[Tenant], bool], ...] = (),
                 ids: tuple[str, ...] | None = None, excluded_ids: tuple[str, ...] = (),
                 ordering: tuple[str, ...] = ("id",), max_rows: int | None = None):
        self.source = source
        self.wheres: tuple[Condition, ...] = wheres
        self.excludes: tuple[tuple[Condition, ...], ...] = excludes
        self.predicates: tuple[Callable[[Tenant], bool], ...] = predicates
        self.ids = ids
        self.excluded_ids = excluded_ids
        self.ordering = ordering
        self.max_rows = max_rows

    def _with(self, **changes: Any) -> TenantQuery:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return TenantQuery(**values)

    def where(self, predicate: Callable[[Tenant], bool] | None = None, /, **fields: Any) -> TenantQuery:
        query = self
        if predicate is not None:
            if not callable(predicate):
                raise TypeError("where() takes a callable predicate or field=value keywords")
            query = query._with(predicates=query.predicates + (predicate,))
        if fields:
            query = query._with(wheres=query.wheres + tuple(Condition(k, _in_value(v)) for k, v in fields.items()))
        return query

    def exclude(self, **fields: Any) -> TenantQuery:
        """Leave out tenants matching all of ``fields``."""
        if not fields:
            return self
        group = tuple(Condition(k, _in_value(v)) for k, v in fields.items())
        return self._with(excludes=self.excludes + (group,))

    def order_by(self, *fields: str) -> TenantQuery:
        """Order by fields; a leading '-' sorts that field descending. Missing values sort last."""
        for field in fields:
            if not isinstance(field, str) or not field.lstrip("-"):
                raise TypeError(f"order_by() takes field names such as 'name' or '-created_at', got {field!r}")
        return self._with(ordering=tuple(fields) or ("id",))

    def limit(self, n: int) -> TenantQuery:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"limit() takes a whole number >= 0, got {n!r}")
        return self._with(max_rows=n if self.max_rows is None else min(n, self.max_rows))

    def only_ids(self, ids: Iterable[Any]) -> TenantQuery:
        return self._with(ids=tuple(str(i) for i in ids))

    def without_ids(self, ids: Iterable[Any]) -> TenantQuery:
        return self._with(excluded_ids=self.excluded_ids + tuple(str(i) for i in ids))

    def unfiltered(self) -> TenantQuery:
        return TenantQuery(self.source)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self.source.iterate(self))

    def count(self) -> int:
        return self.source.count(self)

    def all(self) -> list[Tenant]:
        return list(self)

    # -- evaluation in Python, shared by every source ----------------------------------------------
    def keyword_match(self, tenant: Mapping[str, Any]) -> bool:
        if self.ids is not None and str(tenant.get("id")) not in self.ids:
            return False
        if self.excluded_ids and str(tenant.get("id")) in self.excluded_ids:
            return False
        if not all(c.test(tenant) for c in self.wheres):
            return False
        return not any(all(c.test(tenant) for c in group) for group in self.excludes)

    def predicate_match(self, tenant: Tenant) -> bool:
        for predicate in self.predicates:
            try:
                if not predicate(tenant):
                    return False
            except Exception as exc:  # the job's tenants_filter is at fault: say where, stop the run (exit 3)
                raise TenantSourceError(f"The tenant filter's predicate raised for tenant {tenant.get('id')!r}: "
                                        f"{_where_raised(exc)}{type(exc).__name__}: {exc}",
                                        "Fix the predicate passed to where() in the job's tenants_filter.") from exc
        return True

    def sort(self, rows: list[Tenant]) -> list[Tenant]:
        for spec in reversed(self.ordering):
            field = spec.lstrip("-")
            descending = spec.startswith("-")
            present = [r for r in rows if r.get(field) is not None]
            missing = [r for r in rows if r.get(field) is None]
            try:
                present.sort(key=lambda r: r[field], reverse=descending)
            except TypeError:
                present.sort(key=lambda r: (type(r[field]).__name__, str(r[field])), reverse=descending)
            rows = present + missing
        return rows


PATH_HINT = ("Check `tenants`: relative paths in the config file start at its folder, relative paths given with "
             "--tenants or PINSTRIPE_TENANTS at the working directory.")
MAX_TENANT_ID = 255  # characters: longer ids cannot be stored in history or shown


def check_id(value: Any, where: str) -> None:
    """The same rule for every source: a non-empty string or an integer, at most ``MAX_TENANT_ID`` long."""
    hint = "Every tenant needs a unique, non-empty `id` (a string or an integer)."
    if value is None:
        raise TenantSourceError(f"A tenant in {where} has no 'id' (it is NULL or missing).", hint)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TenantSourceError(f"A tenant in {where} has an id of type {type(value).__name__}: {value!r:.80}.",
                                "Tenant ids must be strings or integers.")
    if value == "" or (isinstance(value, str) and not value.strip()):
        raise TenantSourceError(f"A tenant in {where} has an empty id.", hint)
    if isinstance(value, str) and len(value) > MAX_TENANT_ID:
        raise TenantSourceError(f"A tenant id in {where} is {len(value):,} characters long (the limit is "
                                f"{MAX_TENANT_ID}): {value[:40]!r}...", hint)


def checked_rows(tenants: Iterator[Tenant], query: TenantQuery, description: str) -> Iterator[Tenant]:
    """For database sources: reject bad and (when ordered by id) repeated ids, then apply the query's
    Python predicates and its limit to the rows the database returned."""
    emitted = 0
    previous = object()
    by_id = query.ordering in (("id",), ("-id",))
    for tenant in tenants:
        if query.max_rows is not None and emitted >= query.max_rows:
            return
        check_id(tenant.id, description)
        if by_id and tenant.id == previous:
            raise TenantSourceError(f"Duplicate tenant id {tenant.id!r} in {description}.",
                                    "Make `id` the table's primary key.")
        previous = tenant.id
        if query.predicate_match(tenant):
            emitted += 1
            yield tenant


def keyset_pages(fetch: Callable[[Any, int], list[Any]], key: Callable[[Any], Any], remaining: int | None,
                 page: int = 1000) -> Iterator[Any]:
    """Rows in keyset pages. ``fetch(last, limit)`` returns up to ``limit`` rows ordered by id, starting
    *at* ``last`` (all rows when None). The rows of the previous page whose id equals ``last`` are skipped,
    so an id repeated across a page boundary is passed on (and rejected by ``checked_rows``), not lost."""
    last: Any = None
    tail = 0  # rows passed on at the end of the previous page whose id is ``last``
    while remaining is None or remaining > 0:
        limit = (page if remaining is None else min(page, remaining)) + tail
        rows = fetch(last, limit)
        skip = 0
        while skip < tail and skip < len(rows) and key(rows[skip]) == last:
            skip += 1
        fresh = rows[skip:]
        if not fresh:
            return
        yield from fresh
        last = key(fresh[-1])
        tail = 0
        for row in reversed(rows):
            if key(row) != last:
                break
            tail += 1
        if remaining is not None:
            remaining -= len(fresh)
        if len(rows) < limit:
            return


def _where_raised(exc: BaseException) -> str:
    """``file:line: `` of the innermost frame outside this package, or nothing."""
    import traceback
    from pathlib import Path

    package = str(Path(__file__).parent.parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(package)]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def _in_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else value


def make_tenant(row: Any, where: str, index: int) -> Tenant:
    """Turn a mapping or an object into a ``Tenant``; it must have an ``id``."""
    if isinstance(row, Tenant):
        return row
    if isinstance(row, Mapping):
        data = dict(row)
    elif hasattr(row, "_asdict"):
        data = row._asdict()
    elif hasattr(row, "__dataclass_fields__"):
        data = {name: getattr(row, name) for name in row.__dataclass_fields__}
    elif hasattr(row, "__dict__"):
        data = {k: v for k, v in vars(row).items() if not k.startswith("_")}
    else:
        raise TenantSourceError(f"Tenant #{index + 1} from {where} is a {type(row).__name__}, not a mapping "
                                "or an object with attributes.")
    check_id(data.get("id"), f"{where} (tenant #{index + 1})")
    return Tenant(data)
