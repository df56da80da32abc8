"""``JobSpec`` (one job module's contract) and ``JobRegistry`` (the jobs folder)."""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from pinstripe_jobs.config import Settings, load_timezone
from pinstripe_jobs.database.django import setup as django_setup
from pinstripe_jobs.database.django import uses_django
from pinstripe_jobs.errors import ConfigError, JobImportError, UnknownJob, UsageError
from pinstripe_jobs.registry.loading import describe_exception, error_location, import_job_file

_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
OVERLAP_MODES = ("skip", "wait", "allow")
ISOLATION_MODES = ("inline", "process")


def normalize_name(raw: str) -> str:
    """``SendNewsletter``, ``sendNewsletter``, ``send_newsletter`` -> ``send-newsletter``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", raw)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "-", text)
    return text.replace("_", "-").lower()


class ScheduleEntry:
    """One cron expression of a job, with the arguments it fires ``run`` with."""

    __slots__ = ("cron", "args")

    def __init__(self, cron: str, args: tuple = ()):
        self.cron = cron
        self.args = tuple(args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScheduleEntry) and (self.cron, self.args) == (other.cron, other.args)

    def __repr__(self) -> str:
        return f"ScheduleEntry({self.cron!r}, {self.args!r})"


class JobSpec:
    """Everything a job module declares, validated."""

    def __init__(self, name: str, path: Path, run: Callable[..., Any], *, description: str = "",
                 schedules: list[ScheduleEntry] | None = None, multi_tenant: bool = False,
                 tenants_filter: Callable[[Any], Any] | None = None, timezone: str | None = None,
                 overlap: str = "skip", catch_up: bool = False, concurrency: int = 1, timeout: float | None = None,
                 isolation: str = "inline", retries: int = 0, retry_backoff: float = 1.0,
                 module: ModuleType | None = None, schedule_for: Callable[[Any], Any] | None = None,
                 spread: float | None = None):
        self.name = name
        self.path = path
        self.run = run
        self.description = description
        self.schedules = schedules or []
        self.multi_tenant = multi_tenant
        self.tenants_filter = tenants_filter
        self.timezone = timezone
        self.overlap = overlap
        self.catch_up = catch_up
        self.concurrency = concurrency
        self.timeout = timeout
        self.isolation = isolation
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.module = module
        self.schedule_for = schedule_for  # tenant -> cron string, list like `schedule`, or None
        self.spread = spread  # seconds: scheduled tenants start at a stable offset within this window

    @property
    def per_tenant_schedule(self) -> bool:
        """Schedules evaluated per tenant: in each tenant's time zone, or from ``schedule_for``."""
        return self.timezone == "tenant" or self.schedule_for is not None

    @property
    def scheduled(self) -> bool:
        return bool(self.schedules) or self.schedule_for is not None

    def __repr__(self) -> str:
        return f"JobSpec({self.name!r}, {str(self.path)!r})"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.run)



class JobRegistry:
    """The jobs of one project. Listing reads file names only; ``load`` imports just one module."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.jobs_dir = settings.jobs_dir
        self._cache: dict[str, JobSpec] = {}
        self.clashes: dict[str, list[Path]] = {}  # job names given by more than one file (none of them used)

    def files(self) -> dict[str, Path]:
        if not self.jobs_dir.is_dir():
            raise ConfigError(
                f"The jobs folder {self.jobs_dir} does not exist (from {self.settings.source_of('jobs_dir')}).",
                "Create it, set jobs_dir in pinstripe.toml, or pass --jobs-dir. "
                "`pinstripe generate-background-job NAME` creates a first job.",
            )
        found: dict[str, Path] = {}
        self.clashes: dict[str, list[Path]] = {}
        for path in sorted(self.jobs_dir.glob("*.py")):
            if path.name.startswith("_"):
                continue
            name = normalize_name(path.stem)
            if name in found or name in self.clashes:  # send_email.py and sendEmail.py: neither is used
                self.clashes.setdefault(name, [found.pop(name)] if name in found else []).append(path)
                continue
            found[name] = path
        return found

    def names(self) -> list[str]:
        return sorted(self.files())

    def _clash(self, name: str) -> JobImportError:
        paths = self.clashes[name]
        return JobImportError(name, str(paths[-1]), None,
                              f"{len(paths)} job files give the job name '{name}': "
                              f"{', '.join(p.name for p in paths)}", "Rename all but one of them.")

    def resolve_name(self, raw: str) -> tuple[str, Path]:
        if not raw or not _VALID_NAME.match(raw):
            raise UsageError(
                f"Invalid job name {raw!r}: a job name is a file name in the jobs folder "
                "(letters, digits, '-' and '_'), never a path or a dotted module.",
                "Run `pinstripe list-background-jobs` to see the jobs.",
            )
        name = normalize_name(raw)
        files = self.files()
        if name in self.clashes:
            raise self._clash(name)
        if name not in files:
            import difflib

            close = difflib.get_close_matches(name, files, n=1, cutoff=0.5)
            suggestion = f" Did you mean '{close[0]}'?" if close else ""
            available = ", ".join(sorted(files)) or "(none)"
            raise UnknownJob(
                f"No background job named '{raw}'.{suggestion}",
                f"Jobs in {self.jobs_dir}: {available}. Run `pinstripe list-background-jobs`.",
            )
        return name, files[name]

    def load(self, raw: str) -> JobSpec:
        name, path = self.resolve_name(raw)
        if name not in self._cache:
            self._cache[name] = self._load_file(name, path)
        return self._cache[name]

    def load_all(self) -> tuple[list[JobSpec], list[JobImportError]]:
        specs, broken = [], []
        for name in self.names():
            try:
                specs.append(self.load(name))
            except JobImportError as exc:
                broken.append(exc)
        broken += [self._clash(name) for name in sorted(self.clashes)]
        return specs, broken

    # -- one module -----------------------------------------------------------------------------
    def _load_file(self, name: str, path: Path) -> JobSpec:
        module_name = "pinstripe_job_" + name.replace("-", "_")
        if uses_django(self.settings.tenants, self.settings.django_settings):
            django_setup(self.settings.django_settings)  # a Django project's job modules import its models
        try:
            module = import_job_file(path, module_name)
        except Exception as exc:
            _, line = error_location(exc, str(path))
            raise JobImportError(name, str(path), line, describe_exception(exc)) from exc
        try:
            return self._spec_from_module(name, path, module)
        except _BadAttribute as exc:
            raise JobImportError(name, str(path), exc.line, str(exc), exc.hint) from None

    def _spec_from_module(self, name: str, path: Path, module: ModuleType) -> JobSpec:
        check = _Checker(module)
        run = getattr(module, "run", None)
        if not callable(run):
            raise _BadAttribute("the module defines no run(ctx, ...) function", None)
        try:
            signature = inspect.signature(run)
        except (TypeError, ValueError):
            signature = None
        if signature is not None and not any(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
            for p in signature.parameters.values()
        ):
            raise _BadAttribute("run() must take the workspace `ctx` as its first parameter", check.line("run"))
        has_source = self.settings.tenants is not None
        multi_tenant = check.typed("multi_tenant", bool, has_source)
        if multi_tenant and not has_source:
            raise _BadAttribute(
                "multi_tenant = True but no tenant source is configured",
                check.line("multi_tenant"),
                f"Set `tenants` in {self.settings.config_path or 'pinstripe.toml'} (a database URL, a .json/.csv "
                "file, a \"module:callable\" or an array of tables), or pass --tenants / PINSTRIPE_TENANTS.",
            )
        tenants_filter = getattr(module, "tenants_filter", None)
        if tenants_filter is not None and not callable(tenants_filter):
            raise _BadAttribute("tenants_filter must be a function taking the tenant query",
                                check.line("tenants_filter"))
        description = getattr(module, "description", None)
        if description is None:
            description = (inspect.getdoc(module) or "").strip().splitlines()[0:1]
            description = description[0] if description else ""
        timezone = check.typed("timezone", str, None)
        if timezone is not None and timezone != "tenant":
            try:
                load_timezone(timezone, f"timezone in {path}")
            except ConfigError as exc:
                raise _BadAttribute(exc.message, check.line("timezone")) from None
        spec = JobSpec(
            name=name,
            path=path,
            run=run,
            description=str(description),
            schedules=_parse_schedules(getattr(module, "schedule", None), check),
            multi_tenant=multi_tenant,
            tenants_filter=tenants_filter,
            timezone=timezone,
            overlap=check.choice("overlap", OVERLAP_MODES, "skip"),
            catch_up=check.typed("catch_up", bool, False),
            concurrency=check.number("concurrency", 1, minimum=1, integer=True),
            timeout=check.number("timeout", None, minimum=0, exclusive=True),
            isolation=check.choice("isolation", ISOLATION_MODES, "inline"),
            retries=check.number("retries", 0, minimum=0, integer=True),
            retry_backoff=check.number("retry_backoff", 1.0, minimum=0),
            module=module,
            schedule_for=check.function("schedule_for"),
            spread=check.duration("spread"),
        )
        if spec.per_tenant_schedule and not multi_tenant:
            raise _BadAttribute("timezone = \"tenant\" and schedule_for need a job that runs per tenant",
                                check.line("schedule_for" if spec.schedule_for else "timezone"))
        return spec


class _BadAttribute(Exception):
    def __init__(self, message: str, line: int | None, hint: str | None = None):
        super().__init__(message)
        self.line = line
        self.hint = hint


class _Checker:
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

    def typed(self, attr: str, kind: type, default: Any) -> Any:
        value = getattr(self.module, attr, default)
        if value is not default and not isinstance(value, kind):
            raise _BadAttribute(f"{attr} must be a {kind.__name__}, got {value!r}", self.line(attr))
        return value

    def function(self, attr: str) -> Callable[..., Any] | None:
        value = getattr(self.module, attr, None)
        if value is not None and not callable(value):
            raise _BadAttribute(f"{attr} must be a function, got {value!r}", self.line(attr))
        return value

    def duration(self, attr: str) -> float | None:
        value = getattr(self.module, attr, None)
        if value is None:
            return None
        from pinstripe_jobs.scheduling.cron import parse_duration

        seconds = parse_duration(value)
        if seconds is None:
            raise _BadAttribute(f"{attr} must be a duration such as \"10m\", \"90s\" or \"1h\", got {value!r}",
                                self.line(attr))
        return seconds

    def choice(self, attr: str, choices: tuple[str, ...], default: str) -> str:
        value = getattr(self.module, attr, default)
        if value not in choices:
            raise _BadAttribute(f"{attr} must be one of {', '.join(map(repr, choices))}, got {value!r}",
                                self.line(attr))
        return value

    def number(self, attr: str, default: Any, *, minimum: float, integer: bool = False,
               exclusive: bool = False) -> Any:
        value = getattr(self.module, attr, default)
        if value is default:
            return value
        kinds = (int,) if integer else (int, float)
        bad = isinstance(value, bool) or not isinstance(value, kinds)
        bad = bad or (value <= minimum if exclusive else value < minimum)
        if bad:
            relation = ">" if exclusive else ">="
            kind = "a whole number" if integer else "a number"
            raise _BadAttribute(f"{attr} must be {kind} {relation} {minimum}, got {value!r}", self.line(attr))
        return value


def entries_from(value: Any) -> list[ScheduleEntry]:
    """``schedule`` (or what ``schedule_for`` returns): a cron string, a list of crons and ``(cron, *args)``
    tuples, or None (no schedule). Raises ``ValueError`` saying what is wrong."""
    if value is None:
        return []
    items = [value] if isinstance(value, (str, tuple)) else value
    if not isinstance(items, list):
        raise ValueError(f"a schedule must be a cron string or a list, got {value!r}")
    entries = []
    for item in items:
        if isinstance(item, tuple) and item and isinstance(item[0], str):
            entry = ScheduleEntry(item[0], tuple(item[1:]))
        elif isinstance(item, str):
            entry = ScheduleEntry(item)
        else:
            raise ValueError(f"schedule entries must be cron strings or (cron, *args) tuples, got {item!r}")
        entries.append(entry)
    if entries:
        from pinstripe_jobs.scheduling.cron import validate_cron

        for entry in entries:
            problem = validate_cron(entry.cron)
            if problem:
                raise ValueError(f"invalid cron expression {entry.cron!r} in schedule: {problem}")
    return entries


def _parse_schedules(value: Any, check: _Checker) -> list[ScheduleEntry]:
    try:
        return entries_from(value)
    except ValueError as exc:
        raise _BadAttribute(str(exc).replace("a schedule must", "schedule must"), check.line("schedule")) from None
