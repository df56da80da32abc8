"""Issue #20 item 2: one job whose schedule can never fire (``0 0 31 2 *``) is a broken module, reported like
any other, and never stops the other jobs: run-due-jobs, the bot (in process and as a real process), the
listing and the dashboard all go on, and the every-minute job beside it keeps firing."""
from __future__ import annotations

import signal
import time
from datetime import UTC, datetime

import pytest

from tests.conftest import RECORDING_JOB
from tests.procs import run, start, wait_until
from tests.test_scheduler import scheduler_for, wait_threads

IMPOSSIBLE = '"""Runs on February 31st."""\nschedule = "0 0 31 2 *"\n\ndef run(ctx):\n    pass\n'


@pytest.fixture
def two_jobs(project):
    project.config("misfire_grace = 3600\n")
    project.job("minutely", 'schedule = "* * * * *"\n' + RECORDING_JOB)
    project.job("impossible", IMPOSSIBLE)
    return project


def test_run_due_jobs_fires_the_others_and_reports_the_impossible_one_as_broken(two_jobs):
    result = run(two_jobs, "run-due-jobs", "--at", "2026-06-01T10:00:00+00:00")
    assert result.returncode == 3, result.stdout + result.stderr  # a broken module, as run-due-jobs documents
    assert "BROKEN impossible: not scheduled:" in result.stderr
    assert "impossible.py:2: invalid cron expression '0 0 31 2 *' in schedule: it never fires" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert two_jobs.log() == ["minutely None [] {}"]


def test_the_listing_shows_it_broken_and_the_others_with_their_next_run(two_jobs):
    result = run(two_jobs, "list-background-jobs")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "BROKEN impossible" in result.stdout and "never fires" in result.stdout
    assert "minutely" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_the_bot_in_process_keeps_firing_the_others(two_jobs):
    scheduler, _ = scheduler_for(two_jobs, datetime(2026, 6, 1, 9, 59, 30, tzinfo=UTC),
                                 datetime(2026, 6, 1, 10, 3, 30, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert [problem.job_name for problem in scheduler.broken] == ["impossible"]
    assert len(two_jobs.log()) == 4  # 10:00, 10:01, 10:02, 10:03


def test_start_bot_keeps_running_and_fires_the_others(two_jobs):
    since = time.strftime("%Y-%m-%dT%H:%M:00+00:00", time.gmtime(time.time() - 60))  # a tick is due at once
    bot = start(two_jobs, "start-bot", "--since", since, "--grace", "5")
    wait_until(lambda: two_jobs.log() or bot.poll() is not None, timeout=60, what="the every-minute job to fire")
    assert bot.poll() is None  # still running
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 0, out + err
    assert two_jobs.log() and "not scheduling impossible" in err and "never fires" in err
    assert "Traceback" not in out + err


def test_every_dashboard_page_still_answers(two_jobs):
    pytest.importorskip("starlette", reason="the dashboard extra is not installed")
    from starlette.testclient import TestClient

    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.web.app import Dashboard, create_app

    two_jobs.cli("run-due-jobs", "--at", "2026-06-01T10:00:00+00:00")  # some history to show
    dashboard = Dashboard(load_settings(two_jobs.root / "pinstripe.toml"), token="t" * 20, allow_actions=False,
                          project_args=[])
    client = TestClient(create_app(dashboard, ""))
    for page in ("/", "/jobs/minutely", "/jobs/impossible", "/failures", "/runs", "/running", "/ticks",
                 "/api/jobs", "/api/jobs/impossible", "/api/ticks"):
        assert client.get(page).status_code == 200, page
    broken = client.get("/api/jobs").json()["broken"]
    assert [b["name"] for b in broken] == ["impossible"] and "never fires" in broken[0]["error"]


def test_an_impossible_per_tenant_schedule_is_that_tenants_problem(project):
    project.json_tenants([{"id": 1, "cron": "* * * * *"}, {"id": 2, "cron": "0 0 31 2 *"},
                          {"id": 3, "cron": "@hourly"}])
    project.config('tenants = "tenants.json"\nmisfire_grace = 30\n')  # the 10:00 tick alone
    project.job("sync", "def schedule_for(tenant):\n    return tenant.cron\n" + RECORDING_JOB)
    result = run(project, "run-due-jobs", "--at", "2026-06-01T10:00:00+00:00")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(project.log()) == ["sync 1 [] {}", "sync 3 [] {}"]
    assert "tenant 2: schedule_for: ValueError: invalid cron expression '0 0 31 2 *'" in result.stderr
    assert "never fires" in result.stderr and "Traceback" not in result.stderr
