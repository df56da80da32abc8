"""Schedules that know their tenants: a job with ``timezone = "tenant"`` fires for each tenant when its
cron matches that tenant's local time, and ``schedule_for(tenant)`` gives each tenant a schedule of its
own. Each distinct (cron, zone) is evaluated once per window, however many tenants share it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.registry.jobs import ScheduleEntry, entries_from
from pinstripe_jobs.scheduling.cron import ticks_between

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.registry.jobs import JobSpec
    from pinstripe_jobs.tenants import Tenant, TenantQuery

PROBLEMS_SHOWN = 10


class TenantSchedules:
    def __init__(self, settings: Settings, query_for: Callable[[JobSpec], TenantQuery]):
        self.settings = settings
        self.query_for = query_for  # the job's tenant query (its tenants_filter applied)
        self._zones: dict[Any, tzinfo | None] = {}
        self._fires: dict[tuple[str, Any, datetime], bool] = {}
        self._parsed: dict[Any, list[ScheduleEntry] | str] = {}  # schedule_for's value -> entries or problem
        self._default: tzinfo | None = None

    # -- one tenant ---------------------------------------------------------------------------------
    def zone(self, spec: JobSpec, tenant: Tenant) -> tuple[tzinfo, str | None]:
        """The tenant's zone (or the config's, with a problem to report when the tenant's is invalid)."""
        default = self._default or self._set_default()
        if spec.timezone != "tenant":
            return (self._load(spec.timezone) or default) if spec.timezone else default, None
        name = tenant.get(self.settings.tenant_timezone_field)
        if name is None or name == "":
            return default, None
        zone = self._load(name)
        if zone is None:
            return default, f"tenant {tenant.id}: unknown time zone {name!r} (using {self.settings.timezone})"
        return zone, None

    def _set_default(self) -> tzinfo:
        self._default = self.settings.tz()
        return self._default

    def _load(self, name: Any) -> tzinfo | None:
        zone = self._zones.get(name, False)
        if zone is not False:
            return zone
        if name not in self._zones:
            from zoneinfo import ZoneInfo

            try:
                self._zones[name] = ZoneInfo(name) if isinstance(name, str) else None
            except Exception:  # unknown, malformed or not a string
                self._zones[name] = None
        return self._zones[name]

    def entries(self, spec: JobSpec, tenant: Tenant) -> tuple[list[ScheduleEntry], str | None]:
        """The tenant's schedule: ``schedule_for(tenant)`` if the job defines it, else ``schedule``."""
        if spec.schedule_for is None:
            return spec.schedules, None
        try:
            value = spec.schedule_for(tenant)
            key = value if isinstance(value, (str, type(None))) else repr(value)  # most tenants share a few
            parsed = self._parsed.get(key)
            if parsed is None:
                try:
                    parsed = self._parsed[key] = entries_from(value)
                except ValueError as exc:
                    parsed = self._parsed[key] = f"ValueError: {exc}"
            if isinstance(parsed, str):
                return [], f"tenant {tenant.id}: schedule_for: {parsed}"
            return parsed, None
        except Exception as exc:  # schedule_for raised: that tenant is not scheduled
            return [], f"tenant {tenant.id}: schedule_for: {type(exc).__name__}: {exc}"

    def _fires_at(self, cron: str, zone: tzinfo, instant: datetime) -> bool:
        key = (cron, zone, instant)
        if key not in self._fires:
            self._fires[key] = bool(ticks_between(cron, zone, instant - timedelta(microseconds=1), instant))
        return self._fires[key]

    # -- a window -----------------------------------------------------------------------------------
    def instants(self, spec: JobSpec, start: datetime, end: datetime) -> tuple[dict[tuple, int], list[str]]:
        """``{(instant, args): tenants due}`` for fire instants in ``(start, end]``, and the problems met
        (invalid zones, bad schedules), one line each."""
        found: dict[tuple, int] = {}
        problems: list[str] = []
        windows: dict[tuple[str, tzinfo], list[datetime]] = {}
        for tenant in self.query_for(spec):
            zone, problem = self.zone(spec, tenant)
            entries, bad = self.entries(spec, tenant)
            for text in (problem, bad):
                if text:
                    problems.append(text)
            for entry in entries:
                key = (entry.cron, zone)
                if key not in windows:
                    windows[key] = ticks_between(entry.cron, zone, start, end)
                for instant in windows[key]:
                    found[(instant, entry.args)] = found.get((instant, entry.args), 0) + 1
        return found, problems

    def due_at(self, spec: JobSpec, instant: datetime, args: tuple) -> Callable[[Tenant], bool]:
        """A predicate: is this tenant due at ``instant`` (with these args)? For the run of that tick."""

        def due(tenant: Tenant) -> bool:
            zone, _ = self.zone(spec, tenant)
            entries, _ = self.entries(spec, tenant)
            return any(entry.args == args and self._fires_at(entry.cron, zone, instant) for entry in entries)

        return due


def summarize(problems: Iterable[str]) -> str:
    problems = list(problems)
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = len(problems) - PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")
