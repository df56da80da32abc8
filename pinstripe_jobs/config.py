"""Find and read ``pinstripe.toml`` / ``[tool.pinstripe]`` plus environment overrides into ``Settings``."""
from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from pinstripe_jobs.database.settings import DatabaseSettings

TypeSpec = type | tuple[type, ...]
KNOWN_KEYS: dict[str, TypeSpec] = {
    "jobs_dir": str,
    "tenants": (str, list),
    "tenants_table": str,
    "services": dict,
    "timezone": str,
    "state": str,
    "history_days": (int, float),
    "misfire_grace": (int, float),
    "state_retry_s": (int, float),
    "lock_stale_s": (int, float),
    "tenant_timezone_field": str,
    "tenant_concurrency": int,
    "notify": dict,
    "executor": str,
    "celery": dict,
    "telemetry": dict,
    "monitor": dict,
    "database": dict,
    "django_settings": str,
    "limits": dict,
}
CELERY_KEYS: dict[str, TypeSpec] = {"broker": str, "result_backend": str, "queue": str, "batch_size": int,
                                    "visibility_timeout": (int, float), "in_flight": int}
EXECUTORS = ("local", "celery")
NOTIFY_KEYS: dict[str, TypeSpec] = {"on": list, "webhook": str, "command": str, "callable": str,
                                    "timeout": (int, float)}
NOTIFY_EVENTS = ("failure", "recovery", "skipped")
DAY = 86400
YEAR = 365 * DAY


class Range:
    """The values a numeric setting may take: ``low`` (excluded when ``open_low``) to ``high``, in ``unit``."""

    def __init__(self, low: float, high: float, unit: str = "", open_low: bool = False):
        self.low, self.high, self.unit, self.open_low = low, high, unit, open_low

    def __contains__(self, value: float) -> bool:  # NaN is in no range
        return (self.low < value if self.open_low else self.low <= value) and value <= self.high

    def __str__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        low = f"{'more than' if self.open_low else 'at least'} {_number(self.low)}"
        return f"{low} and at most {_number(self.high)}{unit}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Every numeric setting's range, checked at load: a value outside it would only fail later (an overflow
# in the daily prune, a thread per unit of concurrency), so it is refused with its key, value and range.
RANGES = {
    "history_days": Range(0, 36500, "days (0 keeps history forever)"),
    "misfire_grace": Range(0, YEAR, "seconds"),
    "state_retry_s": Range(0, DAY, "seconds"),
    "lock_stale_s": Range(0, DAY, "seconds"),
    "tenant_concurrency": Range(1, 1000, "runs"),
}
CELERY_RANGES = {"batch_size": Range(1, 10000, "tenants"), "visibility_timeout": Range(0, YEAR, "seconds", True),
                 "in_flight": Range(1, 100000, "batches")}
NOTIFY_RANGES = {"timeout": Range(0, 600, "seconds", True)}
NOTIFY_EXAMPLE = 'Example: [notify]\non = ["failure", "recovery"]\nwebhook = "https://hooks.example/T0/B0/x"'
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_SERVICE_NAMES = {"tenant", "args", "params", "job", "log", "attempt", "tick", "close", "limit",
                          "run_background_job", "arun_background_job"}
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class Settings:
    """The project's configuration, with every path absolute."""

    def __init__(self, root: Path, config_path: Path | None = None):
        self.root = root
        self.config_path = config_path
        self.jobs_dir: Path = root / "jobs"
        self.tenants: Any = None
        self.tenants_table = "tenants"
        self.services: dict[str, str] = {}
        self.timezone = "UTC"
        self.state: str | None = None
        self.history_days: float = 30
        self.misfire_grace: float = 60
        self.sources: dict[str, str] = {}  # key -> where its value came from, when not the config file
        self.from_file: set[str] = set()  # the keys the config file sets (the others are defaults)
        self.state_retry_s: float = 60  # how long state store operations are retried through an outage
        self.lock_stale_s: float = 60  # a lock whose heartbeat is older than this may be taken over
        self.tenant_timezone_field = "timezone"  # for jobs with timezone = "tenant"
        self.tenant_concurrency: int | None = None  # at most this many runs of any jobs per tenant at once
        self.notify: dict[str, Any] = {}  # [notify]: alerts after each invocation
        self.executor = "local"  # or "celery": tenants run on a worker fleet
        self.celery: dict[str, Any] = {}  # [celery]: broker, result_backend, queue, batch_size, visibility_timeout
        self.telemetry: dict[str, Any] = {}  # [telemetry]: traces (see observers/telemetry.py)
        self.monitor: dict[str, Any] | None = None  # [monitor]: heartbeat URLs (see observers/monitor.py)
        self.database: DatabaseSettings | None = None  # [database]: ctx.db, bound to the run's tenant
        self.django_settings: str | None = None  # Django's settings module, set up on first use
        self.limits: dict[str, Any] = {}  # [limits]: name -> LimitSpec (see execution/limits.py)

    @property
    def source_name(self) -> str:
        return str(self.config_path) if self.config_path else "defaults (no pinstripe.toml found)"

    @property
    def state_url(self) -> str:
        return self.state or f"sqlite:///{self.root / '.pinstripe' / 'state.db'}"

    def source_of(self, key: str) -> str:
        """Where a setting came from, for messages: an option or variable, the config file, or the default."""
        if key in self.sources:
            return self.sources[key]
        if key in self.from_file:
            return f"'{key}' in {self.source_name}"
        if self.config_path is None:
            return "the default (no pinstripe.toml found)"
        return f"the default: '{key}' is not set in {self.config_path}"

    def tz(self) -> ZoneInfo:
        return load_timezone(self.timezone, self.source_of("timezone"))


def load_timezone(name: str, where: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"Unknown time zone {name!r} ({where}).",
            "Use an IANA name such as 'UTC', 'Europe/London' or 'America/New_York'.",
        ) from None


def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """Walk up from ``start``; return (file, table) of the first pinstripe.toml or [tool.pinstripe]."""
    for folder in [start, *start.parents]:
        candidate = folder / "pinstripe.toml"
        if candidate.is_file():
            return candidate, _read_toml(candidate)
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            table = _read_toml(candidate).get("tool", {}).get("pinstripe")
            if table is not None:
                return candidate, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "Fix the syntax error at the line shown.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None


def _named_config(config: str | os.PathLike[str], cwd: Path) -> tuple[Path, dict[str, Any]]:
    path = (cwd / Path(config)).resolve()
    if path.is_dir():
        raise ConfigError(f"Config file {path} is a directory.",
                          "Name the file itself with --config / PINSTRIPE_CONFIG (pinstripe.toml or pyproject.toml).")
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.", "Check --config / PINSTRIPE_CONFIG.")
    table = _read_toml(path)
    if path.name == "pyproject.toml":
        table = table.get("tool", {}).get("pinstripe", {})
    return path, table


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    jobs_dir: str | None = None,
    tenants: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build ``Settings`` from the config file and overrides (arguments beat env beat file)."""
    env = os.environ if env is None else env
    cwd = Path(cwd or os.getcwd()).resolve()
    config = config or env.get("PINSTRIPE_CONFIG") or None
    found = _named_config(config, cwd) if config else find_config(cwd)
    if found is None:
        settings = Settings(root=cwd)
    else:
        settings = _from_table(*found)
        if str(settings.root) not in sys.path:
            sys.path.insert(0, str(settings.root))  # so "module:attr" references import from the project
    _apply_overrides(settings, env, cwd, jobs_dir, tenants)
    return settings


def _apply_overrides(settings: Settings, env: Mapping[str, str], cwd: Path, jobs_dir: str | None,
                     tenants: str | None) -> None:
    """Options and environment variables over the config file."""
    if jobs_dir or env.get("PINSTRIPE_JOBS_DIR"):
        settings.sources["jobs_dir"] = "--jobs-dir" if jobs_dir else "PINSTRIPE_JOBS_DIR"
        settings.jobs_dir = (cwd / (jobs_dir or env["PINSTRIPE_JOBS_DIR"])).resolve()
    if tenants or env.get("PINSTRIPE_TENANTS"):
        where = settings.sources["tenants"] = "--tenants" if tenants else "PINSTRIPE_TENANTS"
        settings.tenants = resolve_tenants_value(tenants or env["PINSTRIPE_TENANTS"], cwd, where)
    if env.get("PINSTRIPE_STATE"):
        settings.sources["state"] = "PINSTRIPE_STATE"
        settings.state = resolve_sqlite_url(env["PINSTRIPE_STATE"], cwd)
    if env.get("PINSTRIPE_EXECUTOR"):
        settings.sources["executor"] = "PINSTRIPE_EXECUTOR"
        settings.executor = check_executor(env["PINSTRIPE_EXECUTOR"], "PINSTRIPE_EXECUTOR")
    if env.get("PINSTRIPE_CELERY_BROKER"):
        settings.sources["celery"] = "PINSTRIPE_CELERY_BROKER"
        settings.celery = {**settings.celery, "broker": env["PINSTRIPE_CELERY_BROKER"]}
    if env.get("PINSTRIPE_TIMEZONE"):
        settings.sources["timezone"] = "PINSTRIPE_TIMEZONE"
        settings.timezone = env["PINSTRIPE_TIMEZONE"]
        settings.tz()


def _check_types(table: dict[str, Any], where: str) -> None:
    for key, value in table.items():
        if key not in KNOWN_KEYS:
            import difflib

            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"Unknown key '{key}' in {where}.",
                hint + "Known keys: " + ", ".join(sorted(KNOWN_KEYS)) + ".",
            )
        if not isinstance(value, KNOWN_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"'{key}' in {where} has the wrong type ({type(value).__name__}).",
                              _TYPE_HINTS[key])
        if isinstance(value, str) and "\0" in value:  # no path, URL or name can hold one
            raise ConfigError(f"'{key}' in {where} contains a NUL character.", _TYPE_HINTS[key])


def check_range(label: str, value: float, allowed: Range, hint: str | None = None) -> None:
    """A ``ConfigError`` naming the setting, its value and its range when ``value`` is outside it."""
    if value not in allowed:
        raise ConfigError(f"{label} must be {allowed}, got {value!r}.", hint)


def _from_table(path: Path, table: dict[str, Any]) -> Settings:
    root = path.parent
    where = str(path)
    _check_types(table, where)
    settings = Settings(root=root, config_path=path)
    settings.from_file = set(table)
    settings.jobs_dir = (root / table.get("jobs_dir", "jobs")).resolve()
    if "tenants" in table:
        settings.tenants = resolve_tenants_value(table["tenants"], root, where)
    table_name = table.get("tenants_table", "tenants")
    if not _IDENTIFIER.match(table_name):
        raise ConfigError(f"'tenants_table' in {where} is not a table name: {table_name!r}.",
                          "Use letters, digits and underscores.")
    settings.tenants_table = table_name
    settings.services = _services_table(table.get("services", {}), where, root)
    settings.timezone = table.get("timezone", "UTC")
    if settings.timezone != "UTC":
        settings.tz()  # validate now
    if "state" in table:
        settings.state = resolve_sqlite_url(table["state"], root)
    settings.tenant_timezone_field = table.get("tenant_timezone_field", "timezone")
    for key, allowed in RANGES.items():
        if key in table:
            check_range(f"'{key}' in {where}", table[key], allowed, _TYPE_HINTS[key])
            setattr(settings, key, table[key])
    if "notify" in table:
        settings.notify = _notify_table(table["notify"], where, root)
    if "executor" in table:
        settings.executor = check_executor(table["executor"], f"'executor' in {where}")
    if "celery" in table:
        settings.celery = _celery_table(table["celery"], where)
    if "telemetry" in table or "monitor" in table:
        from pinstripe_jobs.observers import monitor, telemetry

        settings.telemetry = telemetry.telemetry_table(table.get("telemetry", {}), where)
        settings.monitor = monitor.monitor_table(table["monitor"], where) if "monitor" in table else None
    _database_tables(settings, table, where, root)
    if "limits" in table:
        from pinstripe_jobs.execution.limits import limits_table

        settings.limits = limits_table(table["limits"], where)
    return settings


def _database_tables(settings: Settings, table: dict[str, Any], where: str, root: Path) -> None:
    """``[database]`` (ctx.db) and ``django_settings``: parsed by their own package, imported only when set."""
    if "database" in table:
        from pinstripe_jobs.database.settings import parse_database

        settings.database = parse_database(table["database"], where, root)
        if "db" in settings.services:
            raise ConfigError(f"Service name 'db' in {where} would hide ctx.db of [database].", "Rename the service.")
    settings.django_settings = table.get("django_settings")
    if settings.django_settings:
        from pinstripe_jobs.database.django import configure

        configure(settings.django_settings)


def _services_table(services: dict[str, Any], where: str, root: Path) -> dict[str, str]:
    for name, ref in services.items():
        if not _IDENTIFIER.match(name) or name.startswith("_"):
            raise ConfigError(f"Service name {name!r} in {where} is not a valid identifier.")
        if name in RESERVED_SERVICE_NAMES:
            raise ConfigError(f"Service name '{name}' in {where} would hide ctx.{name}.",
                              "Choose another name; reserved: " + ", ".join(sorted(RESERVED_SERVICE_NAMES)) + ".")
        if not isinstance(ref, str) or not _REF.match(ref):
            raise ConfigError(f"Service '{name}' in {where} must be a \"module:factory\" string, got {ref!r}.",
                              'Example: [services]\nmailer = "myapp.mail:make_mailer"')
        _check_module_exists(ref, f"Service '{name}' in {where}", root)
    return dict(services)


def check_executor(value: str, where: str) -> str:
    if value not in EXECUTORS:
        raise ConfigError(f"Unknown executor {value!r} ({where}).", "Use 'local' (this machine) or 'celery' "
                          "(a Celery worker fleet, configured in [celery]).")
    return value


def _check_subtable(table: dict[str, Any], name: str, known: dict[str, TypeSpec], where: str, hint: str) -> None:
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"Unknown key '{key}' in [{name}] of {where}.",
                              "Known keys: " + ", ".join(sorted(known)) + ".")
        if not isinstance(value, known[key]) or isinstance(value, bool):
            raise ConfigError(f"'{key}' in [{name}] of {where} has the wrong type ({type(value).__name__}).", hint)


def _celery_table(table: dict[str, Any], where: str) -> dict[str, Any]:
    _check_subtable(table, "celery", CELERY_KEYS, where, _TYPE_HINTS["celery"])
    for key, allowed in CELERY_RANGES.items():
        if key in table:
            check_range(f"[celery] in {where}: {key}", table[key], allowed, _TYPE_HINTS["celery"])
    return dict(table)


def _notify_table(table: dict[str, Any], where: str, root: Path) -> dict[str, Any]:
    _check_subtable(table, "notify", NOTIFY_KEYS, where, NOTIFY_EXAMPLE)
    events = table.get("on", ["failure", "recovery"])
    unknown = [e for e in events if e not in NOTIFY_EVENTS]
    if unknown:
        raise ConfigError(f"[notify] on = {events!r} in {where}: unknown event {unknown[0]!r}.",
                          "Use any of " + ", ".join(NOTIFY_EVENTS) + ".")
    if not any(key in table for key in ("webhook", "command", "callable")):
        raise ConfigError(f"[notify] in {where} names no target.", "Set webhook, command or callable.")
    if "webhook" in table and not is_http_url(table["webhook"]):
        raise ConfigError(f"[notify] webhook in {where} is not an http(s) URL: {table['webhook']!r}.",
                          "Give the full address the alerts are POSTed to, e.g. webhook = "
                          '"https://hooks.slack.com/services/T0/B0/x".')
    for key, allowed in NOTIFY_RANGES.items():
        if key in table:
            check_range(f"[notify] in {where}: {key}", table[key], allowed, NOTIFY_EXAMPLE)
    if "callable" in table:
        if not _REF.match(table["callable"]):
            raise ConfigError(f"[notify] callable in {where} must be \"module:function\", got {table['callable']!r}.")
        _check_module_exists(table["callable"], f"[notify] callable in {where}", root)
    return {**table, "on": list(events)}


def is_http_url(text: str) -> bool:
    """An ``http://`` or ``https://`` URL with a host (and no spaces), as a webhook needs."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in text)


def _check_module_exists(ref: str, what: str, root: Path) -> None:
    """The top-level package of a "module:attr" reference can be found (without importing it: start-up)."""
    import importlib.util

    top = ref.split(":", 1)[0].split(".", 1)[0]
    if top in sys.modules:
        return
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"{what} names module '{ref.split(':', 1)[0]}', which cannot be found.",
                          f"Module paths are relative to {root} (the config file's folder), which is on sys.path.")


_TYPE_HINTS = {
    "jobs_dir": 'Example: jobs_dir = "jobs"',
    "tenants": 'Example: tenants = "sqlite:///tenants.db", "tenants.json", "myapp.tenants:all_tenants" '
    "or an array of tables.",
    "tenants_table": 'Example: tenants_table = "tenants"',
    "services": 'Example: [services]\nmailer = "myapp.mail:make_mailer"',
    "timezone": 'Example: timezone = "Europe/London"',
    "state": 'Example: state = "postgresql+psycopg://user@host/db"',
    "history_days": "Example: history_days = 30",
    "misfire_grace": "Example: misfire_grace = 60",
    "state_retry_s": "Example: state_retry_s = 60",
    "lock_stale_s": "Example: lock_stale_s = 60",
    "tenant_timezone_field": 'Example: tenant_timezone_field = "tz"',
    "tenant_concurrency": "Example: tenant_concurrency = 2",
    "notify": 'Example: [notify]\nwebhook = "https://hooks.slack.com/services/T0/B0/x"',
    "executor": 'Example: executor = "celery"',
    "telemetry": "Example: [telemetry]\ntraces = true",
    "database": 'Example: [database]\ntenancy = "schema"\nurl = "postgresql+psycopg://app@db/app"',
    "django_settings": 'Example: django_settings = "myproject.settings"',
    "monitor": 'Example: [monitor]\nurl = "https://hc-ping.com/PING-KEY/{job}/{event}"',
    "limits": 'Example: [limits]\npartner_api = "100/s"\nsmtp = { concurrency = 5 }',
    "celery": 'Example: [celery]\nbroker = "redis://127.0.0.1:6379/0"\nqueue = "pinstripe"\nbatch_size = 50',
}


def resolve_sqlite_url(url: str, base: Path) -> str:
    """Make a relative SQLite file in a URL absolute against ``base``."""
    prefix, sep, rest = url.partition(":///")
    if sep and prefix.split("+")[0] == "sqlite" and rest and not rest.startswith((":memory:", "/")):
        path, q, query = rest.partition("?")
        return f"{prefix}:///{(base / path).resolve()}{q}{query}"
    return url


def resolve_tenants_value(value: Any, base: Path, where: str = "--tenants / PINSTRIPE_TENANTS") -> Any:
    if isinstance(value, list):
        if not all(isinstance(row, dict) for row in value):
            raise ConfigError(f"'tenants' in {where} must be an array of tables (one per tenant).",
                              _TYPE_HINTS["tenants"])
        return value
    if "://" in value:
        return resolve_sqlite_url(value, base)
    if value == "django-tenants" or value.startswith("django:"):  # Django models (pinstripe_jobs.tenants.django)
        return value
    if value.lower().endswith((".json", ".jsonl", ".csv")):
        return str((base / value).resolve())
    if _REF.match(value):
        return value
    if (base / value).is_dir():
        raise ConfigError(f"The tenant source {value!r} ({where}) is a directory.",
                          "Name a database URL, a .json/.jsonl/.csv file or a \"module:callable\".")
    raise ConfigError(f"Cannot tell what kind of tenant source {value!r} is ({where}).",
                      _TYPE_HINTS["tenants"])
