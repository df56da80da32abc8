"""``JobSpec``: one job module's contract, validated; its schedules as ``ScheduleEntry`` values."""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinstripe_jobs.tenants import Tenant, TenantQuery

VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
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

    def __init__(self, cron: str, args: tuple[object, ...] = ()):
        self.cron = cron
        self.args: tuple[object, ...] = tuple(args)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScheduleEntry) and (self.cron, self.args) == (other.cron, other.args)

    def __repr__(self) -> str:
        return f"ScheduleEntry({self.cron!r}, {self.args!r})"


class JobSpec:
    """Everything a job module declares, validated."""

    def __init__(self, name: str, path: Path, run: Callable[..., Any], *, description: str = "",
                 schedules: list[ScheduleEntry] | None = None, multi_tenant: bool = False,
                 tenants_filter: Callable[[TenantQuery], object] | None = None, timezone: str | None = None,
                 overlap: str = "skip", catch_up: bool = False, concurrency: int = 1, timeout: float | None = None,
                 isolation: str = "inline", retries: int = 0, retry_backoff: float = 1.0,
                 module: ModuleType | None = None, schedule_for: Callable[[Tenant], object] | None = None,
                 spread: float | None = None, priority: int = 0, unique: bool = False,
                 pause_after_failures: int | None = None):
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
        self.priority = priority  # 0..MAX_PRIORITY (model.ranges): its share of the fleet beside others (fleet.window)
        self.unique = unique  # at most one live invocation of this job with the same arguments (exit 4)
        self.pause_after_failures = pause_after_failures  # pause the job after N failed invocations in a row
        # issue #22 (set by declarations.limit_attributes): tenants start at most this fast, (count, window s)
        self.rate_limit: tuple[int, float] | None = None
        self.max_retry_after = 5  # RetryAfter honoured at most this often per tenant run (0 to 1000)
        self.retry_on: tuple[type[BaseException], ...] | None = None  # only these are retried (None: any)
        self.give_up_on: tuple[type[BaseException], ...] = ()  # never retried
        self.max_failure_rate: float | None = None  # the brake: more than this share failed -> stop starting

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


def entries_from(value: object) -> list[ScheduleEntry]:
    """``schedule`` (or what ``schedule_for`` returns): a cron string, a list of crons and ``(cron, *args)``
    tuples, or None (no schedule). Raises ``ValueError`` saying what is wrong, also for a cron expression
    that can never fire (``0 0 31 2 *``)."""
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
