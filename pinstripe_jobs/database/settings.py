"""The ``[database]`` table, checked at load: every key has a documented type and range (exit 3 naming the
key, the value and the fix). Nothing here imports SQLAlchemy: a project that never uses ``ctx.db`` pays
nothing for it at start-up.

Also the templates' rendering (``"{tenant.id}"`` in a URL or a schema name), shared by the session manager.
"""
from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinstripe_jobs.errors import ConfigError, mask_secrets

TENANCIES = ("schema", "database", "shared")
TRANSACTIONS = ("run", "manual")
DEFAULT_SCHEMA = "{tenant.schema}"
# key: (type, low, high, default, help)
RANGES: dict[str, tuple[type | tuple[type, ...], float, float, float, str]] = {
    "pool_size": (int, 1, 1000, 5, "connections this process holds at most (all tenants together)"),
    "max_engines": (int, 1, 10000, 32, "tenant databases kept open at once (tenancy = \"database\")"),
    "pool_timeout": ((int, float), 0.1, 3600, 30, "seconds a run waits for a free connection"),
    "connect_timeout": (int, 1, 600, 10, "seconds to wait for a PostgreSQL server to answer"),
}
KEYS = ("tenancy", "url", "schema", "transaction", *RANGES)
EXAMPLE = ('Example:\n[database]\ntenancy = "schema"\nurl = "postgresql+psycopg://app@db/app"\n'
           'schema = "{tenant.schema}"')
_SAFE_URL_VALUE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MAX_SCHEMA = 63  # PostgreSQL's identifier length


@dataclass(frozen=True)
class DatabaseSettings:
    """The checked ``[database]`` table. Frozen and hashable: one set of engines per process per value."""

    tenancy: str
    url: str
    schema: str = DEFAULT_SCHEMA
    transaction: str = "run"
    pool_size: int = 5
    max_engines: int = 32
    pool_timeout: float = 30
    connect_timeout: int = 10

    @property
    def shown_url(self) -> str:
        return mask_secrets(self.url)


def parse_database(table: Mapping[str, Any], where: str, root: Path | None = None) -> DatabaseSettings:
    """Check the raw ``[database]`` table of ``where`` (the config file) and return its settings.

    ``root``: the config file's folder, against which a relative SQLite path in ``url`` is made absolute.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"'database' in {where} must be a table, got {type(table).__name__}.", EXAMPLE)
    for key in table:
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = (f"Did you mean '{close[0]}'? " if close else "") + "Known keys: " + ", ".join(KEYS) + "."
            raise ConfigError(f"Unknown key '{key}' in [database] of {where}.", hint)
    tenancy = _choice(table, "tenancy", TENANCIES, where, None)
    transaction = _choice(table, "transaction", TRANSACTIONS, where, "run")
    url = _url(table, tenancy, where, root)
    schema = table.get("schema", DEFAULT_SCHEMA)
    if not isinstance(schema, str) or not schema.strip():
        raise ConfigError(f"'schema' in [database] of {where} must be a non-empty string, got {schema!r}.",
                          'Example: schema = "{tenant.schema}" or "tenant_{tenant.id}".')
    if "schema" in table and tenancy != "schema":
        raise ConfigError(f"'schema' in [database] of {where} is only used with tenancy = \"schema\" "
                          f"(tenancy is {tenancy!r}).", "Remove it, or set tenancy = \"schema\".")
    check_template(schema, f"'schema' in [database] of {where}")
    numbers = {key: _number(table, key, where) for key in RANGES}
    return DatabaseSettings(tenancy=tenancy, url=url, schema=schema, transaction=transaction,
                            pool_size=int(numbers["pool_size"]), max_engines=int(numbers["max_engines"]),
                            pool_timeout=float(numbers["pool_timeout"]),
                            connect_timeout=int(numbers["connect_timeout"]))


def _choice(table: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str, default: str | None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"[database] in {where} has no '{key}'.",
                          f"Set {key} to one of: " + ", ".join(f'"{a}"' for a in allowed) + ". " + EXAMPLE)
    if value not in allowed:
        raise ConfigError(f"'{key}' in [database] of {where} is {value!r}.",
                          "Use one of: " + ", ".join(f'"{a}"' for a in allowed) + ".")
    return str(value)


def _url(table: Mapping[str, Any], tenancy: str, where: str, root: Path | None) -> str:
    url = table.get("url")
    if not isinstance(url, str) or "://" not in url or "\0" in url:
        raise ConfigError(f"'url' in [database] of {where} must be a database URL, got {mask_secrets(repr(url))}.",
                          'Example: url = "postgresql+psycopg://app@127.0.0.1/app" or '
                          '"sqlite:///data/tenant_{tenant.id}.db".')
    templated = "{" in url
    what = f"'url' in [database] of {where}"
    if tenancy == "database" and not templated:
        raise ConfigError(f"{what} names one database ({mask_secrets(url)}), but tenancy = \"database\" needs one "
                          "per tenant.", 'Put the tenant in it: url = "sqlite:///data/tenant_{tenant.id}.db".')
    if tenancy != "database" and templated:
        raise ConfigError(f"{what} is a template, but tenancy = {tenancy!r} uses one database.",
                          'Use tenancy = "database" for a database per tenant, or a plain URL.')
    check_template(url, what)
    if tenancy == "schema" and url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(f"{what} is not a PostgreSQL URL ({mask_secrets(url)}): tenancy = \"schema\" uses "
                          "PostgreSQL schemas.", 'Example: url = "postgresql+psycopg://app@127.0.0.1/app".')
    return _absolute_sqlite(url, root) if root is not None else url


def _absolute_sqlite(url: str, root: Path) -> str:
    """A relative SQLite file in ``url`` made absolute against the config file's folder."""
    prefix, sep, rest = url.partition(":///")
    if sep and prefix.split("+")[0] == "sqlite" and rest and not rest.startswith((":memory:", "/")):
        path, q, query = rest.partition("?")
        return f"{prefix}:///{(root / path).resolve()}{q}{query}"
    return url


def _number(table: Mapping[str, Any], key: str, where: str) -> float:
    kind, low, high, default, meaning = RANGES[key]
    value: Any = table.get(key, default)
    typed = not isinstance(value, bool) and isinstance(value, kind)
    number: float = value if typed else low - 1
    if not low <= number <= high:
        shown = "a whole number" if kind is int else "a number"
        raise ConfigError(f"'{key}' in [database] of {where} is {value!r}: it must be {shown} from {low:g} to "
                          f"{high:g} ({meaning}).", f"Example: {key} = {default:g}")
    return number


def check_template(template: str, what: str) -> None:
    """Only ``{tenant.field}`` / ``{tenant[field]}`` placeholders, so that rendering can only fail for a
    tenant's missing field (that tenant's failure), never for the template itself."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{what} is not a valid template ({exc}): {mask_secrets(template)!r}.",
                          "Use {tenant.id} or {tenant.<field>}; write {{ and }} for literal braces.") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not re.fullmatch(r"tenant(\.[A-Za-z_]\w*|\[[^\]]+\])", field) or conversion or "{" in (spec or ""):
            raise ConfigError(f"{what} has the placeholder {{{field}}}, which is not a tenant field.",
                              "Use {tenant.id} or {tenant.<field>} (a field of your tenant source).")


class MissingField(LookupError):
    """A template names a field the tenant does not have."""


class _Fields:
    """What ``{tenant.x}`` sees: the tenant's field, else (for the default schema only) its id."""

    def __init__(self, tenant: Mapping[str, Any], fallback: str | None, check: bool):
        self._tenant = tenant
        self._fallback = fallback
        self._check = check

    def _value(self, name: str) -> Any:
        if name in self._tenant and self._tenant[name] is not None:
            value = self._tenant[name]
        elif name == self._fallback:
            value = self._tenant["id"]
        else:
            raise MissingField(name)
        if self._check and not _SAFE_URL_VALUE.match(str(value)):
            raise ValueError(f"field {name!r} is {str(value)[:80]!r}, which is not safe in a database URL "
                             "(letters, digits, '_', '.', '-' only)")
        return value

    def __getattr__(self, name: str) -> Any:
        return self._value(name)

    def __getitem__(self, name: str) -> Any:
        return self._value(name)


def render(template: str, tenant: Mapping[str, Any], *, url: bool) -> str:
    """The template with the tenant's fields. Raises ``MissingField`` or ``ValueError`` (an unsafe value)."""
    fallback = "schema" if template == DEFAULT_SCHEMA else None
    text = template.format(tenant=_Fields(tenant, fallback, check=url))
    if not url and not 0 < len(text) <= _MAX_SCHEMA:
        raise ValueError(f"the schema name {text[:80]!r} must be 1 to {_MAX_SCHEMA} characters long")
    return text
