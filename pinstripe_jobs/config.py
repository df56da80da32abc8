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
    from pinstripe_jobs.database.settings import DatabaseSettings

KNOWN_KEYS = {
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
    "database": dict,
    "django_settings": str,
}
CELERY_KEYS = {"broker": str, "result_backend": str, "queue": str, "batch_size": int, "visibility_timeout": (int, float)}
EXECUTORS = ("local", "celery")
NOTIFY_KEYS = {"on": list, "webhook": str, "command": str, "callable": str, "timeout": (int, float)}
NOTIFY_EVENTS = ("failure", "recovery", "skipped")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_SERVICE_NAMES = {"tenant", "args", "params", "job", "log", "attempt", "tick", "close",
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
        self.state_retry_s: float = 60  # how long state store operations are retried through an outage
        self.lock_stale_s: float = 60  # a lock whose heartbeat is older than this may be taken over
        self.tenant_timezone_field = "timezone"  # for jobs with timezone = "tenant"
        self.tenant_concurrency: int | None = None  # at most this many runs of any jobs per tenant at once
        self.notify: dict[str, Any] = {}  # [notify]: alerts after each invocation
        self.executor = "local"  # or "celery": tenants run on a worker fleet
        self.celery: dict[str, Any] = {}  # [celery]: broker, result_backend, queue, batch_size, visibility_timeout
        self.database: DatabaseSettings | None = None  # [database]: ctx.db, bound to the run's tenant
        self.django_settings: str | None = None  # Django's settings module, set up on first use

    @property
    def source_name(self) -> str:
        return str(self.config_path) if self.config_path else "defaults (no pinstripe.toml found)"

    @property
    def state_url(self) -> str:
        return self.state or f"sqlite:///{self.root / '.pinstripe' / 'state.db'}"

    def source_of(self, key: str) -> str:
        """Where a setting came from, for messages: an option or variable, else the config file."""
        return self.sources.get(key) or f"'{key}' in {self.source_name}"

    def tz(self):
        return load_timezone(self.timezone, self.source_of("timezone"))


def load_timezone(name: str, where: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"Unknown time zone {name!r} ({where}).",
            "Use an IANA name such as 'UTC', 'Europe/London' or 'America/New_York'.",
        ) from None


def find_config(start: Path) -> tuple[Path, dict] | None:
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


def _read_toml(path: Path) -> dict:
    import tomllib

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", "Fix the syntax error at the line shown.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None


def load_settings(
    config: str | os.PathLike | None = None,
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
    if config:
        path = (cwd / Path(config)).resolve()
        if path.is_dir():
            raise ConfigError(f"Config file {path} is a directory.",
                              "Name the file itself with --config / PINSTRIPE_CONFIG (pinstripe.toml or pyproject.toml).")
        if not path.is_file():
            raise ConfigError(f"Config file {path} does not exist.", "Check --config / PINSTRIPE_CONFIG.")
        table = _read_toml(path)
        if path.name == "pyproject.toml":
            table = table.get("tool", {}).get("pinstripe", {})
        found: tuple[Path, dict] | None = (path, table)
    else:
        found = find_config(cwd)
    if found is None:
        settings = Settings(root=cwd)
    else:
        path, table = found
        settings = _from_table(path, table)
        if str(settings.root) not in sys.path:
            sys.path.insert(0, str(settings.root))  # so "module:attr" references import from the project
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
    return settings


def _from_table(path: Path, table: dict) -> Settings:
    root = path.parent
    where = str(path)
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
    settings = Settings(root=root, config_path=path)
    settings.jobs_dir = (root / table.get("jobs_dir", "jobs")).resolve()
    if "tenants" in table:
        settings.tenants = resolve_tenants_value(table["tenants"], root, where)
    table_name = table.get("tenants_table", "tenants")
    if not _IDENTIFIER.match(table_name):
        raise ConfigError(f"'tenants_table' in {where} is not a table name: {table_name!r}.",
                          "Use letters, digits and underscores.")
    settings.tenants_table = table_name
    services = table.get("services", {})
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
    settings.services = dict(services)
    settings.timezone = table.get("timezone", "UTC")
    if settings.timezone != "UTC":
        settings.tz()  # validate now
    if "state" in table:
        settings.state = resolve_sqlite_url(table["state"], root)
    settings.tenant_timezone_field = table.get("tenant_timezone_field", "timezone")
    if "tenant_concurrency" in table:
        if table["tenant_concurrency"] < 1:
            raise ConfigError(f"'tenant_concurrency' in {where} must be at least 1, got {table['tenant_concurrency']}.")
        settings.tenant_concurrency = table["tenant_concurrency"]
    if "notify" in table:
        settings.notify = _notify_table(table["notify"], where, root)
    if "executor" in table:
        settings.executor = check_executor(table["executor"], f"'executor' in {where}")
    if "celery" in table:
        settings.celery = _celery_table(table["celery"], where)
    if "database" in table:
        from pinstripe_jobs.database.settings import parse_database

        settings.database = parse_database(table["database"], where, root)
        if "db" in settings.services:
            raise ConfigError(f"Service name 'db' in {where} would hide ctx.db of [database].", "Rename the service.")
    settings.django_settings = table.get("django_settings")
    if settings.django_settings:
        from pinstripe_jobs.database.django import configure

        configure(settings.django_settings)
    for key in ("history_days", "misfire_grace", "state_retry_s", "lock_stale_s"):
        if key in table:
            if table[key] < 0:
                raise ConfigError(f"'{key}' in {where} must not be negative, got {table[key]}.")
            setattr(settings, key, table[key])
    return settings


def check_executor(value: str, where: str) -> str:
    if value not in EXECUTORS:
        raise ConfigError(f"Unknown executor {value!r} ({where}).", "Use 'local' (this machine) or 'celery' "
                          "(a Celery worker fleet, configured in [celery]).")
    return value


def _celery_table(table: dict, where: str) -> dict:
    for key, value in table.items():
        if key not in CELERY_KEYS:
            raise ConfigError(f"Unknown key '{key}' in [celery] of {where}.",
                              "Known keys: " + ", ".join(sorted(CELERY_KEYS)) + ".")
        if not isinstance(value, CELERY_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"'{key}' in [celery] of {where} has the wrong type ({type(value).__name__}).",
                              _TYPE_HINTS["celery"])
    if table.get("batch_size", 1) < 1 or table.get("visibility_timeout", 1) <= 0:
        raise ConfigError(f"[celery] in {where}: batch_size must be at least 1 and visibility_timeout positive.",
                          _TYPE_HINTS["celery"])
    return dict(table)


def _notify_table(table: dict, where: str, root: Path) -> dict:
    for key, value in table.items():
        if key not in NOTIFY_KEYS:
            raise ConfigError(f"Unknown key '{key}' in [notify] of {where}.",
                              "Known keys: " + ", ".join(sorted(NOTIFY_KEYS)) + ".")
        if not isinstance(value, NOTIFY_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"'{key}' in [notify] of {where} has the wrong type ({type(value).__name__}).",
                              'Example: [notify]\non = ["failure", "recovery"]\nwebhook = "https://hooks.example/T0/B0/x"')
    events = table.get("on", ["failure", "recovery"])
    unknown = [e for e in events if e not in NOTIFY_EVENTS]
    if unknown:
        raise ConfigError(f"[notify] on = {events!r} in {where}: unknown event {unknown[0]!r}.",
                          "Use any of " + ", ".join(NOTIFY_EVENTS) + ".")
    if not any(key in table for key in ("webhook", "command", "callable")):
        raise ConfigError(f"[notify] in {where} names no target.", "Set webhook, command or callable.")
    if "callable" in table:
        if not _REF.match(table["callable"]):
            raise ConfigError(f"[notify] callable in {where} must be \"module:function\", got {table['callable']!r}.")
        _check_module_exists(table["callable"], f"[notify] callable in {where}", root)
    return {**table, "on": list(events)}


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
    "database": 'Example: [database]\ntenancy = "schema"\nurl = "postgresql+psycopg://app@db/app"',
    "django_settings": 'Example: django_settings = "myproject.settings"',
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
