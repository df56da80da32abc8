"""Schedules that know their tenants: a job with ``timezone = "tenant"`` fires for each tenant when its
cron matches that tenant's local time, and ``schedule_for(tenant)`` gives each tenant a schedule of its
own. Each distinct (cron, zone) is evaluated once per window, however many tenants share it.

A tenant's bad data is that tenant's problem, never the job's: an unknown time zone falls back to the
configured one (said when the tenant is due by it), and a ``schedule_for`` that raises or returns an
invalid schedule (or one that can never fire) leaves that tenant unscheduled (said once).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from pinstripe_jobs.config import load_timezone
from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.registry.spec import ScheduleEntry, entries_from
from pinstripe_jobs.scheduling.cron import next_tick, ticks_between

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.execution.planner import Planner
    from pinstripe_jobs.registry.spec import JobSpec
    from pinstripe_jobs.tenants import Tenant, TenantQuery

PROBLEMS_SHOWN = 10
Due = dict[tuple[datetime, tuple[object, ...]], int]  # (fire instant, schedule args) -> tenants due then


class TenantSchedules:
    def __init__(self, settings: Settings, query_for: Callable[[JobSpec], TenantQuery]):
        self.settings = settings
        self.query_for = query_for  # the job's tenant query (its tenants_filter applied)
        self._zones: dict[str, tzinfo | None] = {}
        self._fires: dict[tuple[str, tzinfo, datetime], bool] = {}
        self._parsed: dict[str | None, list[ScheduleEntry] | str] = {}  # schedule_for's value -> entries/problem
        self._default: tzinfo | None = None
        self._said: set[str] = set()  # problems already reported by this scheduler

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
        zone: tzinfo = load_timezone(self.settings.timezone, self.settings.source_of("timezone"))
        self._default = zone
        return zone

    def _load(self, name: object) -> tzinfo | None:
        if not isinstance(name, str):
            return None  # a number, a list...: not a zone name
        if name not in self._zones:
            from zoneinfo import ZoneInfo

            try:
                self._zones[name] = ZoneInfo(name)
            except Exception:  # unknown or malformed
                self._zones[name] = None
        return self._zones[name]

    def entries(self, spec: JobSpec, tenant: Tenant) -> tuple[list[ScheduleEntry], str | None]:
        """The tenant's schedule: ``schedule_for(tenant)`` if the job defines it, else ``schedule``."""
        if spec.schedule_for is None:
            return spec.schedules, None
        try:
            parsed = self._parse(spec.schedule_for(tenant))
        except Exception as exc:  # schedule_for raised: that tenant is not scheduled
            return [], f"tenant {tenant.id}: schedule_for: {type(exc).__name__}: {exc}"
        if isinstance(parsed, str):
            return [], f"tenant {tenant.id}: schedule_for: {parsed}"
        return parsed, None

    def _parse(self, value: object) -> list[ScheduleEntry] | str:
        """``schedule_for``'s value as entries, or what is wrong with it (most tenants share a few values)."""
        key = value if isinstance(value, (str, type(None))) else repr(value)
        parsed = self._parsed.get(key)
        if parsed is None:
            try:
                parsed = self._parsed[key] = entries_from(value)
            except ValueError as exc:
                parsed = self._parsed[key] = f"ValueError: {exc}"
        return parsed

    def _fires_at(self, cron: str, zone: tzinfo, instant: datetime) -> bool:
        key = (cron, zone, instant)
        if key not in self._fires:
            self._fires[key] = bool(ticks_between(cron, zone, instant - timedelta(microseconds=1), instant))
        return self._fires[key]

    # -- a window -----------------------------------------------------------------------------------
    def instants(self, spec: JobSpec, start: datetime, end: datetime) -> tuple[Due, list[str]]:
        """``{(instant, args): tenants due}`` for fire instants in ``(start, end]``, and the problems that
        matter in it, one line each: schedules that leave a tenant unscheduled, and unknown zones of
        tenants due in the window (by the configured zone they fall back to)."""
        found: Due = {}
        problems: list[str] = []
        windows: dict[tuple[str, tzinfo], list[datetime]] = {}
        for tenant in self.query_for(spec):
            zone, unknown_zone = self.zone(spec, tenant)
            entries, bad = self.entries(spec, tenant)
            if bad:
                problems.append(bad)
            due = False
            for entry in entries:
                key = (entry.cron, zone)
                if key not in windows:
                    windows[key] = ticks_between(entry.cron, zone, start, end)
                for instant in windows[key]:
                    found[(instant, entry.args)] = found.get((instant, entry.args), 0) + 1
                    due = True
            if unknown_zone and due:
                problems.append(unknown_zone)
        return found, problems

    def fresh(self, problems: Iterable[str]) -> list[str]:
        """The problems not reported yet by this scheduler (each is said once per run of the bot)."""
        new = [problem for problem in dict.fromkeys(problems) if problem not in self._said]
        self._said.update(new)
        return new

    def due_at(self, spec: JobSpec, instant: datetime, args: tuple[object, ...]) -> Callable[[Tenant], bool]:
        """A predicate: is this tenant due at ``instant`` (with these args)? For the run of that tick."""

        def due(tenant: Tenant) -> bool:
            zone, _ = self.zone(spec, tenant)
            entries, _ = self.entries(spec, tenant)
            return any(entry.args == args and self._fires_at(entry.cron, zone, instant) for entry in entries)

        return due

    def next_run(self, spec: JobSpec, after: datetime, cron: str | None = None) -> datetime | None:
        """The earliest next fire instant over the job's tenants (of its schedule ``cron``, if given);
        None when no tenant is scheduled."""
        earliest: dict[tuple[str, tzinfo], datetime] = {}
        for tenant in self.query_for(spec):
            zone, _ = self.zone(spec, tenant)
            entries, _ = self.entries(spec, tenant)
            for entry in entries:
                if (entry.cron, zone) not in earliest and cron in (None, entry.cron):
                    earliest[(entry.cron, zone)] = next_tick(entry.cron, zone, after)
        return min(earliest.values(), default=None)


class NextRunsOverTenants:
    """For listings: a per-tenant job's next run, the earliest over its tenants, in the configured zone.
    The tenant source is read only for per-tenant jobs; one that cannot be read (or a ``tenants_filter``
    that fails) gives None: the listing itself never fails."""

    def __init__(self, settings: Settings, now: datetime):
        self.settings = settings
        self.now = now
        self._planner: Planner | None = None

    def next_run(self, spec: JobSpec, cron: str | None = None) -> datetime | None:
        if self.settings.tenants is None or not spec.per_tenant_schedule:
            return None
        if self._planner is None:
            from pinstripe_jobs.execution.planner import Planner
            from pinstripe_jobs.registry.jobs import JobRegistry

            self._planner = Planner(self.settings, JobRegistry(self.settings), lambda job: [])
        try:
            return TenantSchedules(self.settings, self._planner.tenant_query).next_run(spec, self.now, cron)
        except PinstripeError:
            return None

    def iso(self, spec: JobSpec, cron: str | None = None) -> str | None:
        when = self.next_run(spec, cron)
        zone: tzinfo = load_timezone(self.settings.timezone, self.settings.source_of("timezone"))
        return when.astimezone(zone).isoformat() if when else None

    def close(self) -> None:
        if self._planner is not None:
            self._planner.close()


def summarize(problems: Iterable[str]) -> str:
    problems = list(problems)
    shown = "; ".join(problems[:PROBLEMS_SHOWN])
    more = len(problems) - PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")
