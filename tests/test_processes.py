"""Real processes: concurrent run-due-jobs, overlap locks across processes, SIGKILL, the bot's SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.procs import SCRIPT, history, start, wait_for

# A job that waits until the file "release" exists (or 20 s), so a test controls how long it runs.
HOLDING_JOB = '''
import time
from pathlib import Path
schedule = "0 * * * *"
ROOT = Path(__file__).parent.parent

def run(ctx):
    (ROOT / f"started-{ctx.tenant.id if ctx.tenant else 'x'}").write_text(str(ctx.tick))
    deadline = time.time() + 20
    while not (ROOT / "release").exists() and time.time() < deadline:
        time.sleep(0.02)
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id if ctx.tenant else None} {ctx.tick}\\n")
'''


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_concurrent_run_due_jobs_fire_each_tick_once(tenant_project, store, request):
    env = {}
    if store == "postgres":
        env["PINSTRIPE_STATE"] = request.getfixturevalue("pg_schema_url")
    tenant_project.job("hourly", HOLDING_JOB)
    (tenant_project.root / "release").write_text("")
    procs = [start(tenant_project, "run-due-jobs", "--at", "2026-01-01T10:00:30", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(tenant_project.log()) == [f"{i} 2026-01-01 10:00:00+00:00" for i in (1, 2, 3, 4)]
    combined = "".join(out for out, _ in outputs)
    assert combined.count("was already fired; skipped") == 1
    runs = history(tenant_project, env=env)
    assert sorted(r["tenant"] for r in runs if r["job"] == "hourly") == [1, 2, 3, 4]
    assert {r["trigger"] for r in runs} == {"schedule"}


def test_overlap_skip_exits_4_and_wait_waits(tenant_project):
    tenant_project.job("hold", HOLDING_JOB.replace('schedule = "0 * * * *"', "multi_tenant = False"))
    first = start(tenant_project, "run-background-job", "--name", "hold")
    wait_for(tenant_project.root / "started-x")
    second = subprocess.run([str(SCRIPT), "run-background-job", "--name", "hold", "--json"], cwd=tenant_project.root,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 4, second.stderr
    run = json.loads(second.stdout)["runs"][0]
    assert (run["status"], run["reason"]) == ("skipped", "already running")
    waiter = start(tenant_project, "run-background-job", "--name", "hold", "--wait")
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting for the lock
    (tenant_project.root / "release").write_text("")
    assert first.wait(timeout=30) == 0
    assert waiter.wait(timeout=30) == 0
    assert len(tenant_project.log()) == 2  # the first run and the waiter; the skipped one never ran
    statuses = sorted(r["status"] for r in history(tenant_project, "--job", "hold"))
    assert statuses == ["skipped", "succeeded", "succeeded"]


def test_sigkill_releases_the_lock_and_leaves_an_abandoned_run(tenant_project):
    tenant_project.job("hold", HOLDING_JOB)
    victim = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1", "--tenant", "2",
                   "--concurrency", "1")
    wait_for(tenant_project.root / "started-1")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    runs = history(tenant_project, "--job", "hold")
    assert [(r["tenant"], r["status"]) for r in runs] == [(1, "abandoned")]
    (tenant_project.root / "release").write_text("")
    # The dead holder's lock is gone, and --only-failed picks the abandoned tenant (only it).
    result = subprocess.run([str(SCRIPT), "run-background-job", "--name", "hold", "--only-failed", "--json"],
                            cwd=tenant_project.root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["tenant"] for r in json.loads(result.stdout)["runs"]] == [1]
    assert tenant_project.log() == ["1 None"]


def start_bot_with_a_running_job(project, grace: str) -> subprocess.Popen:
    """A bot started as if it last looked an hour ago, so the hourly tick fires at once; returns when the
    first tenant's run has started (it then holds until the file "release" exists)."""
    project.config('tenants = "sqlite:///tenants.db"\nmisfire_grace = 3600\n')
    project.job("hourly", HOLDING_JOB)
    since = time.strftime("%Y-%m-%dT%H:00:00+00:00", time.gmtime(time.time() - 3600))
    bot = start(project, "start-bot", "--since", since, "--grace", grace)
    wait_for(project.root / "started-1")
    return bot


def test_bot_sigterm_lets_running_jobs_finish_within_grace(tenant_project):
    bot = start_bot_with_a_running_job(tenant_project, grace="20")
    bot.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    (tenant_project.root / "release").write_text("")
    out, err = bot.communicate(timeout=60)
    assert bot.returncode == 0, err
    assert "pinstripe bot started" in out and "hourly: next run" in out
    assert "SIGTERM received: no new runs" in out
    assert "0 run(s) recorded as interrupted" in out
    runs = history(tenant_project, "--job", "hourly")
    # no new tenants were started: the others are recorded skipped
    assert [(r["tenant"], r["status"]) for r in runs] == [(4, "skipped"), (3, "skipped"), (2, "skipped"),
                                                          (1, "succeeded")]


def test_bot_sigterm_records_runs_still_going_after_grace_as_interrupted(tenant_project):
    bot = start_bot_with_a_running_job(tenant_project, grace="0.5")
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=60)
    assert bot.returncode == 0, err
    assert "1 run(s) recorded as interrupted" in out
    runs = history(tenant_project, "--job", "hourly")
    assert [(r["tenant"], r["status"]) for r in runs] == [(1, "interrupted")]
    assert "grace period" in runs[0]["error"]


def test_bot_stops_promptly_when_idle(tenant_project):
    tenant_project.job("yearly", "schedule = '@yearly'\ndef run(ctx):\n    pass\n")
    bot = start(tenant_project, "start-bot")
    time.sleep(1.0)
    started = time.time()
    bot.send_signal(signal.SIGINT)
    out, _ = bot.communicate(timeout=30)
    assert bot.returncode == 0 and time.time() - started < 5
    assert "yearly: next run" in out and "SIGINT received" in out


def test_bot_second_signal_stops_waiting_for_running_jobs(tenant_project):
    bot = start_bot_with_a_running_job(tenant_project, grace="60")
    bot.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert bot.poll() is None  # waiting for the running job, within its grace
    began = time.time()
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=30)
    assert bot.returncode == 0 and time.time() - began < 10, err
    assert "1 run(s) recorded as interrupted" in out
