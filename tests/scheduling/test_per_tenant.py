"""Per-tenant schedules where features meet (issue #20 item 9): an unknown tenant zone is said once per bot
run and only when that tenant is due; the listing shows a per-tenant job's next run over its tenants;
``run-due-jobs --at`` reads a local time in a daylight-saving gap as schedules do."""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pinstripe_jobs.cli.listing import describe_jobs
from pinstripe_jobs.config import load_settings
from tests.procs import run
from tests.test_scheduler import scheduler_for, wait_threads

LOGGING_JOB = '''
from pathlib import Path

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id} {ctx.tick.isoformat()}\\n")
'''
ZONES = [{"id": "lon", "timezone": "Europe/London"}, {"id": "nyc", "timezone": "America/New_York"},
         {"id": "syd", "timezone": "Australia/Sydney"}, {"id": "bad", "timezone": "Mars/Base"}]


def test_an_unknown_tenant_zone_is_said_once_per_bot_run_when_that_tenant_is_due(project, caplog):
    project.json_tenants(ZONES)
    project.config('tenants = "tenants.json"\n')
    project.job("digest", 'schedule = "*/2 * * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    caplog.set_level(logging.WARNING, "pinstripe.bot")
    scheduler, _ = scheduler_for(project, datetime(2026, 6, 1, 9, 59, 30, tzinfo=UTC),
                                 datetime(2026, 6, 1, 10, 9, 30, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert sum(line.startswith("bad ") for line in project.log()) == 5  # 10:00, 10:02 ... 10:08, by UTC
    assert caplog.text.count("tenant bad: unknown time zone 'Mars/Base' (using UTC)") == 1


def test_an_unknown_tenant_zone_is_not_said_when_nobody_is_due(project):
    project.json_tenants(ZONES)
    project.config('tenants = "tenants.json"\n')
    project.job("digest", 'schedule = "0 9 * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    result = run(project, "run-due-jobs", "--at", "2026-06-01T05:00:00+00:00")
    assert result.returncode == 0 and "Nothing due." in result.stdout
    assert result.stderr == ""


def test_the_listing_shows_the_earliest_next_run_over_the_tenants(project):
    project.json_tenants([{**zone, "cron": cron} for zone, cron in zip(ZONES, ["0 6 * * *", "*/30 * * * *", None,
                                                                             "bad"], strict=True)])
    project.config('tenants = "tenants.json"\n')
    project.job("digest", 'schedule = "0 9 * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    project.job("sync", "def schedule_for(tenant):\n    return tenant.cron\n" + LOGGING_JOB)
    jobs, _ = describe_jobs(load_settings(project.root / "pinstripe.toml"), now=datetime(2026, 6, 1, 7, 30, tzinfo=UTC))
    by_name = {job["name"]: job for job in jobs}
    # 09:00 BST is 08:00 UTC, before New York's 13:00, Sydney's 23:00 and the bad zone's (UTC) 09:00.
    assert by_name["digest"]["next_run"] == "2026-06-01T08:00:00+00:00"
    assert by_name["digest"]["schedules"][0]["next_run"] == "2026-06-01T08:00:00+00:00"
    # lon: 06:00 BST tomorrow; nyc: every 30 minutes (08:00 UTC); syd: none; bad: not a cron.
    assert by_name["sync"]["next_run"] == "2026-06-01T08:00:00+00:00"
    listing = run(project, "list-background-jobs", "--json")
    assert listing.returncode == 0, listing.stderr
    assert all(job["next_run"] for job in json.loads(listing.stdout)["jobs"])


def test_the_listing_never_fails_on_a_tenant_source_it_cannot_read(project):
    project.config('tenants = "tenants.json"\n')  # no such file
    project.job("digest", 'schedule = "0 9 * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    listing = run(project, "list-background-jobs", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["jobs"][0]["next_run"] is None


def test_at_a_local_time_in_the_spring_gap_means_the_first_instant_after_it(project):
    project.config('timezone = "Europe/Berlin"\n')
    project.job("three", 'schedule = "0 3 * * *"\n' + "def run(ctx):\n    print('tick', ctx.tick.isoformat())\n")
    project.job("half-two", 'schedule = "30 2 * * *"\n' + "def run(ctx):\n    print('tick', ctx.tick.isoformat())\n")
    # 02:30 does not exist in Berlin on 2026-03-29: it reads as 03:00 CEST, as the schedule rule moves 02:30.
    dry = run(project, "run-due-jobs", "--at", "2026-03-29T02:30", "--dry-run")
    assert "half-two: tick 2026-03-29T01:00:00+00:00 would fire" in dry.stdout, dry.stdout + dry.stderr
    assert "three: tick 2026-03-29T01:00:00+00:00 would fire" in dry.stdout
    result = run(project, "run-due-jobs", "--at", "2026-03-29T02:30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "run-due-jobs: 2 fired" in result.stdout
