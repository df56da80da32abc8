"""What ``list-background-jobs`` (and the dashboard's jobs page) shows of each job: description, schedules,
next run, and the outcome of its last invocation."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.config import Settings, load_timezone
from pinstripe_jobs.errors import JobImportError
from pinstripe_jobs.registry.jobs import JobRegistry
from pinstripe_jobs.scheduling.per_tenant import NextRunsOverTenants

if TYPE_CHECKING:
    from pinstripe_jobs.registry.jobs import JobSpec
    from pinstripe_jobs.store.state import StateStore


def last_invocations(store: StateStore) -> dict[str, dict[str, Any]]:
    """Each job's last invocation (a command or a tick) as ``{"started_at", "status"}``: a per-tenant job
    whose last invocation failed for 10 of 20 tenants reads ``failed``, whatever its last tenant did. Jobs
    with runs but no invocation recorded (older history) read their newest run."""
    from pinstripe_jobs.store.reads import HistoryQueries

    queries = HistoryQueries(store)
    found: dict[str, dict[str, Any]] = {}
    for job, run in store.last_runs().items():
        newest = queries.recent_invocations(job, 1)
        found[job] = newest[0] if newest and newest[0].get("status") else run
    return found


def _schedules(spec: JobSpec, tz: Any, now: datetime, over_tenants: NextRunsOverTenants) -> list[dict[str, Any]]:
    if spec.schedule_for is not None:
        return [{"cron": "schedule_for(tenant)", "args": [], "next_run": over_tenants.iso(spec)}]
    if spec.timezone == "tenant":
        return [{"cron": entry.cron, "args": list(entry.args), "next_run": over_tenants.iso(spec, entry.cron)}
                for entry in spec.schedules]
    from pinstripe_jobs.scheduling.cron import next_tick

    return [{"cron": entry.cron, "args": list(entry.args),
             "next_run": next_tick(entry.cron, tz, now).astimezone(tz).isoformat()} for entry in spec.schedules]


def describe_jobs(settings: Settings, now: datetime | None = None, last_runs: dict[str, dict[str, Any]] | None = None,
                  pauses: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[JobImportError]]:
    """Each job as listed; ``pauses`` (``StateStore.pauses()``): what is paused, by whom, why."""
    specs, broken = JobRegistry(settings).load_all()
    paused = {p["job"]: p for p in pauses or () if p["tenant"] is None}
    paused_tenants: dict[str, list[dict[str, Any]]] = {}
    for pause in pauses or ():
        if pause["tenant"] is not None:
            paused_tenants.setdefault(pause["job"], []).append(pause)
    now = now or datetime.now(UTC)
    last_runs = last_runs or {}
    jobs = []
    over_tenants = NextRunsOverTenants(settings, now)  # per-tenant jobs: the earliest next run over the tenants
    for spec in specs:
        per_tenant = spec.timezone == "tenant"
        tz = load_timezone(spec.timezone, str(spec.path)) if spec.timezone and not per_tenant else settings.tz()
        schedules = _schedules(spec, tz, now, over_tenants)
        next_runs = [str(s["next_run"]) for s in schedules if s["next_run"]]
        last = last_runs.get(spec.name) or {}
        jobs.append({
            "name": spec.name,
            "description": spec.description,
            "multi_tenant": spec.multi_tenant,
            "schedules": schedules,
            "next_run": min(next_runs, default=None, key=datetime.fromisoformat),
            "timezone": "in each tenant's time zone" if per_tenant else str(tz),
            "spread_s": spec.spread,
            "file": str(spec.path),
            "last_run": last.get("started_at"),
            "last_status": last.get("status"),
            "paused": paused.get(spec.name),
            "paused_tenants": paused_tenants.get(spec.name, []),
        })
    over_tenants.close()
    return jobs, broken
