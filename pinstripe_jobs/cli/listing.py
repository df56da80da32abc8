"""What ``list-background-jobs`` shows: every job, its schedules and next run, and the broken modules."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pinstripe_jobs.config import Settings, load_timezone
from pinstripe_jobs.errors import JobImportError
from pinstripe_jobs.registry.jobs import JobRegistry
from pinstripe_jobs.scheduling.per_tenant import NextRunsOverTenants


def describe_jobs(settings: Settings, now: datetime | None = None, last_runs: dict[str, dict] | None = None
                  ) -> tuple[list[dict[str, Any]], list[JobImportError]]:
    specs, broken = JobRegistry(settings).load_all()
    now = now or datetime.now(UTC)
    last_runs = last_runs or {}
    jobs = []
    over_tenants = NextRunsOverTenants(settings, now)  # per-tenant jobs: the earliest next run over the tenants
    for spec in specs:
        per_tenant = spec.timezone == "tenant"
        tz = load_timezone(spec.timezone, str(spec.path)) if spec.timezone and not per_tenant else settings.tz()
        schedules = []
        if spec.schedule_for is not None:
            schedules.append({"cron": "schedule_for(tenant)", "args": [], "next_run": over_tenants.iso(spec)})
        elif per_tenant:
            schedules = [{"cron": entry.cron, "args": list(entry.args), "next_run": over_tenants.iso(spec, entry.cron)}
                         for entry in spec.schedules]
        elif spec.schedules:
            from pinstripe_jobs.scheduling.cron import next_tick

            for entry in spec.schedules:
                schedules.append({"cron": entry.cron, "args": list(entry.args),
                                  "next_run": next_tick(entry.cron, tz, now).astimezone(tz).isoformat()})
        jobs.append({
            "name": spec.name,
            "description": spec.description,
            "multi_tenant": spec.multi_tenant,
            "schedules": schedules,
            "next_run": min((s["next_run"] for s in schedules if s["next_run"]), default=None,
                            key=lambda text: datetime.fromisoformat(text)),
            "timezone": "in each tenant's time zone" if per_tenant else str(tz),
            "spread_s": spec.spread,
            "file": str(spec.path),
            "last_run": (last_runs.get(spec.name) or {}).get("started_at"),
            "last_status": (last_runs.get(spec.name) or {}).get("status"),
        })
    over_tenants.close()
    return jobs, broken
