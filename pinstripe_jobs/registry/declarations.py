"""Reading one imported job module's declarations (``run``, ``schedule``, ``multi_tenant``...) into a
``JobSpec``, with the line that set a bad one."""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, overload

from pinstripe_jobs.config import Settings, load_timezone
from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.model.ranges import MAX_CONCURRENCY, MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS
from pinstripe_jobs.registry.spec import ISOLATION_MODES, OVERLAP_MODES, JobSpec, ScheduleEntry, entries_from

T = TypeVar("T")


class BadAttribute(Exception):
    """A module-level setting is wrong: the message, the line that set it, and how to fix it."""

    def __init__(self, message: str, line: int | None, hint: str | None = None):
        super().__init__(message)
        self.line = line
        self.hint = hint


class Checker:
    """Validates module-level settings and finds the line that set them."""

    def __init__(self, module: ModuleType):
        self.module = module
        self._source: list[str] | None = None

    def line(self, attr: str) -> int | None:
        if self._source is None:
            try:
                self._source = Path(self.module.__file__ or "").read_text().splitlines()
            except OSError:
                self._source = []
        pattern = re.compile(rf"^(async\s+def\s+|def\s+)?{re.escape(attr)}\b")
        for number, text in enumerate(self._source, 1):
            if pattern.match(text):
                return number
        return None

    def typed(self, attr: str, kind: type[T], default: T) -> T:
        value: T = getattr(self.module, attr, default)
        if value is not default and not isinstance(value, kind):
            raise BadAttribute(f"{attr} must be a {kind.__name__}, got {value!r}", self.line(attr))
        return value

    def function(self, attr: str) -> Callable[..., Any] | None:
        value: Callable[..., Any] | None = getattr(self.module, attr, None)
        if value is not None and not callable(value):
            raise BadAttribute(f"{attr} must be a function, got {value!r}", self.line(attr))
        return value

    def duration(self, attr: str) -> float | None:
        value = getattr(self.module, attr, None)
        if value is None:
            return None
        from pinstripe_jobs.scheduling.cron import parse_duration

        seconds = parse_duration(value)
        if seconds is None:
            raise BadAttribute(f"{attr} must be a duration such as \"10m\", \"90s\" or \"1h\", got {value!r}",
                               self.line(attr))
        return seconds

    def choice(self, attr: str, choices: tuple[str, ...], default: str) -> str:
        value = getattr(self.module, attr, default)
        if value not in choices:
            raise BadAttribute(f"{attr} must be one of {', '.join(map(repr, choices))}, got {value!r}",
                               self.line(attr))
        return str(value)

    @overload
    def number(self, attr: str, default: float, *, minimum: float, exclusive: bool = False,
               maximum: float = float("inf")) -> float: ...

    @overload
    def number(self, attr: str, default: None, *, minimum: float, exclusive: bool = False,
               maximum: float = float("inf")) -> float | None: ...

    def number(self, attr: str, default: float | None, *, minimum: float, exclusive: bool = False,
               maximum: float = float("inf")) -> float | None:
        value: object = getattr(self.module, attr, default)
        if value is default:
            return default
        # NaN is in no range: written so that every comparison with it fails
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not ((minimum < value if exclusive else minimum <= value) and value <= maximum):
            bound = f" and <= {maximum:.12g}" if maximum != float("inf") else ""
            raise BadAttribute(f"{attr} must be a number {'>' if exclusive else '>='} {minimum:g}{bound}, got "
                               f"{value!r}", self.line(attr))
        return value

    def whole(self, attr: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = getattr(self.module, attr, default)
        if value is default:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or \
                (maximum is not None and value > maximum):
            bound = "" if maximum is None else f" and <= {maximum}"
            raise BadAttribute(f"{attr} must be a whole number >= {minimum}{bound}, got {value!r}", self.line(attr))
        return value

    def schedules(self) -> list[ScheduleEntry]:
        try:
            return entries_from(getattr(self.module, "schedule", None))
        except ValueError as exc:
            raise BadAttribute(str(exc).replace("a schedule must", "schedule must"), self.line("schedule")) from None


def spec_from_module(name: str, path: Path, module: ModuleType, settings: Settings) -> JobSpec:
    """The module's ``JobSpec``; raises ``BadAttribute`` for the first declaration that is wrong."""
    check = Checker(module)
    run = _run_function(module, check)
    multi_tenant = _multi_tenant(check, settings)
    tenants_filter = getattr(module, "tenants_filter", None)
    if tenants_filter is not None and not callable(tenants_filter):
        raise BadAttribute("tenants_filter must be a function taking the tenant query", check.line("tenants_filter"))
    timezone = _timezone(check, path)
    spec = JobSpec(
        name=name,
        path=path,
        run=run,
        description=_description(module),
        schedules=check.schedules(),
        multi_tenant=multi_tenant,
        tenants_filter=tenants_filter,
        timezone=timezone,
        overlap=check.choice("overlap", OVERLAP_MODES, "skip"),
        catch_up=check.typed("catch_up", bool, False),
        concurrency=check.whole("concurrency", 1, minimum=1, maximum=MAX_CONCURRENCY),
        timeout=check.number("timeout", None, minimum=0, exclusive=True, maximum=MAX_SECONDS),
        isolation=check.choice("isolation", ISOLATION_MODES, "inline"),
        retries=check.whole("retries", 0, minimum=0, maximum=MAX_RETRIES),
        retry_backoff=check.number("retry_backoff", 1.0, minimum=0),
        module=module,
        schedule_for=check.function("schedule_for"),
        spread=check.duration("spread"),
        priority=check.whole("priority", 0, minimum=0, maximum=MAX_PRIORITY),
        unique=check.typed("unique", bool, False),
        pause_after_failures=_pause_after_failures(check),
    )
    limit_attributes(check, spec)
    if spec.per_tenant_schedule and not multi_tenant:
        raise BadAttribute("timezone = \"tenant\" and schedule_for need a job that runs per tenant",
                           check.line("schedule_for" if spec.schedule_for else "timezone"))
    return spec


MAX_PAUSE_AFTER = 1000


def _pause_after_failures(check: Checker) -> int | None:
    """``pause_after_failures``: None (never), or 1 to 1000 failed invocations in a row."""
    value = getattr(check.module, "pause_after_failures", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAUSE_AFTER:
        raise BadAttribute(f"pause_after_failures must be a whole number from 1 to {MAX_PAUSE_AFTER} (or None), "
                           f"got {value!r}", check.line("pause_after_failures"))
    return value


def _run_function(module: ModuleType, check: Checker) -> Callable[..., Any]:
    run: Callable[..., Any] | None = getattr(module, "run", None)
    if run is None or not callable(run):
        raise BadAttribute("the module defines no run(ctx, ...) function", None)
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):
        return run  # a callable without a signature (a builtin): taken as it is
    if not any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in signature.parameters.values()):
        raise BadAttribute("run() must take the workspace `ctx` as its first parameter", check.line("run"))
    return run


def _multi_tenant(check: Checker, settings: Settings) -> bool:
    has_source = settings.tenants is not None
    multi_tenant = check.typed("multi_tenant", bool, has_source)
    if multi_tenant and not has_source:
        raise BadAttribute(
            "multi_tenant = True but no tenant source is configured",
            check.line("multi_tenant"),
            f"Set `tenants` in {settings.config_path or 'pinstripe.toml'} (a database URL, a .json/.csv "
            "file, a \"module:callable\" or an array of tables), or pass --tenants / PINSTRIPE_TENANTS.",
        )
    return multi_tenant


def _description(module: ModuleType) -> str:
    description = getattr(module, "description", None)
    if description is not None:
        return str(description)
    lines = (inspect.getdoc(module) or "").strip().splitlines()
    return lines[0] if lines else ""


def _timezone(check: Checker, path: Path) -> str | None:
    timezone = check.typed("timezone", str, None)
    if timezone is not None and timezone != "tenant":
        try:
            load_timezone(timezone, f"timezone in {path}")
        except ConfigError as exc:
            raise BadAttribute(exc.message, check.line("timezone")) from None
    return timezone


def limit_attributes(check: Checker, spec: JobSpec) -> None:
    """``rate_limit``, ``max_retry_after``, ``retry_on``, ``give_up_on`` and ``max_failure_rate`` (issue #22)."""
    value = getattr(check.module, "rate_limit", None)
    if value is not None:
        from pinstripe_jobs.execution.limits import parse_rate

        try:
            spec.rate_limit = parse_rate(value, "rate_limit")
        except ConfigError as exc:
            raise BadAttribute(exc.message, check.line("rate_limit"), exc.hint) from None
    spec.max_retry_after = check.whole("max_retry_after", 5, minimum=0)
    if spec.max_retry_after > 1000:
        raise BadAttribute(f"max_retry_after must be at most 1000, got {spec.max_retry_after}",
                           check.line("max_retry_after"))
    spec.retry_on = _exceptions(check, "retry_on")
    spec.give_up_on = _exceptions(check, "give_up_on") or ()
    rate = check.number("max_failure_rate", None, minimum=0, exclusive=True)
    if rate is not None and rate > 1:
        raise BadAttribute(f"max_failure_rate must be more than 0 and at most 1, got {rate!r}",
                           check.line("max_failure_rate"))
    spec.max_failure_rate = rate


def _exceptions(check: Checker, attr: str) -> tuple[type[BaseException], ...] | None:
    value = getattr(check.module, attr, None)
    if value is None:
        return None
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(item, type) and issubclass(item, BaseException) for item in items):
        raise BadAttribute(f"{attr} must be an exception class or a tuple of them, got {value!r}", check.line(attr),
                           f"Example: {attr} = (ConnectionError, TimeoutError)")
    return tuple(items)
