"""cancel, pause, unpause and audit, through the installed ``pinstripe`` in real processes, on SQLite and
PostgreSQL state; what ran is counted from the job's own log."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.store.state import StateStore
from tests.procs import run, start, wait_until

# Each tenant: "start <id> <time>", a short while, "end <id> <time>" (the time is the job's own clock).
SLOW_JOB = '''
import time
from pathlib import Path

def run(ctx):
    log = Path(__file__).parent.parent / "calls.log"
    with open(log, "a") as fh:
        fh.write(f"start {ctx.tenant.id} {time.time()}\\n")
    time.sleep(0.3)
    with open(log, "a") as fh:
        fh.write(f"end {ctx.tenant.id} {time.time()}\\n")
'''
TICK_JOB = '''
from pathlib import Path
schedule = "0 * * * *"

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.job} {ctx.tick.isoformat()} {ctx.tenant.id}\\n")
'''
N = 40


@pytest.fixture
def steer(project, state_url):
    project.json_tenants([{"id": n} for n in range(1, N + 1)])
    project.config(f'tenants = "tenants.json"\nstate = "{state_url}"\n')
    project.job("slow", SLOW_JOB)
    project.job("hourly", TICK_JOB)
    project.url = state_url
    return project


def query(url: str, sql: str, params: tuple = ()) -> list:
    store = StateStore(url)
    try:
        return store.query(sql, params)
    finally:
        store.close()


def lines(project, word: str) -> list[tuple[int, float]]:
    return [(int(p[1]), float(p[2])) for p in (line.split() for line in project.log()) if p[0] == word]


def test_cancel_from_another_process_stops_the_run_within_seconds(steer):
    proc = start(steer, "run-background-job", "--name", "slow", "--concurrency", "2", "--json")
    wait_until(lambda: len(lines(steer, "start")) >= 4, 30, "four tenants to start")
    invocation = wait_until(lambda: query(steer.url, "SELECT id FROM pinstripe_invocations WHERE job = 'slow' "
                                                     "AND ended_at IS NULL"), 10, "the invocation")[0][0]
    cancelled = run(steer, "cancel", invocation, "--reason", "wrong arguments", "--json")
    asked_at = time.time()
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancelled"] is True
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.CANCELLED, err
    assert time.time() - asked_at < 10  # within a few seconds (each running tenant takes 0.3 s)

    started, ended = lines(steer, "start"), lines(steer, "end")
    assert 4 <= len(started) < N
    assert all(at < asked_at + 2.5 for _, at in started), "a tenant started after the cancel was seen"
    assert sorted(t for t, _ in started) == sorted(t for t, _ in ended)  # running tenants finished (grace)
    runs = query(steer.url, "SELECT tenant, status, error FROM pinstripe_runs WHERE invocation = ?", (invocation,))
    by_status: dict[str, set[str]] = {}
    for tenant, status, _ in runs:
        by_status.setdefault(status, set()).add(tenant)
    assert by_status["succeeded"] == {str(t) for t, _ in started}
    assert by_status["cancelled"] == {str(n) for n in range(1, N + 1)} - by_status["succeeded"]
    assert set(by_status) == {"succeeded", "cancelled"}  # every tenant has a recorded status
    assert {e for _, s, e in runs if s == "cancelled"} == {f"cancelled by {json.loads(cancelled.stdout)['who']}: "
                                                           "wrong arguments"}
    summary = json.loads(out)
    assert summary["exit_code"] == ExitCode.CANCELLED
    again = run(steer, "cancel", invocation)
    assert again.returncode == ExitCode.SKIPPED and "already ended" in again.stdout

    trail = json.loads(run(steer, "audit", "--json").stdout)["actions"]
    assert [a["action"] for a in trail] == ["cancel", "run"]
    assert trail[0]["details"] == {"invocation": invocation, "reason": "wrong arguments"}
    assert trail[1]["details"]["invocation"] == invocation and trail[1]["details"]["concurrency"] == 2
    assert trail[0]["who"] == trail[1]["who"] and "@" in trail[0]["who"] and trail[0]["source"] == "cli"

    resumed = run(steer, "resume", invocation, "--json")  # the cancel request is withdrawn: it runs the rest
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(t for t, _ in lines(steer, "start")) == list(range(1, N + 1))  # every tenant once in all
    assert sorted(t for t, _ in lines(steer, "end")) == list(range(1, N + 1))
    trail = json.loads(run(steer, "audit", "--json").stdout)["actions"]
    assert (trail[0]["action"], trail[0]["details"]["invocation"]) == ("resume", invocation)


def test_cancel_of_an_unknown_invocation_is_a_usage_error(steer):
    result = run(steer, "cancel", "no-such-id")
    assert result.returncode == ExitCode.USAGE and "No invocation has the id 'no-such-id'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_paused_job_is_refused_unless_forced(steer):
    paused = run(steer, "pause", "slow", "--reason", "incident 42")
    assert paused.returncode == 0 and "Paused slow." in paused.stdout
    refused = run(steer, "run-background-job", "--name", "slow", "--tenant", "1")
    assert refused.returncode == ExitCode.SKIPPED
    assert "slow is paused" in refused.stderr and "incident 42" in refused.stderr and "--force" in refused.stderr
    assert steer.log() == []
    forced = run(steer, "run-background-job", "--name", "slow", "--tenant", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert [t for t, _ in lines(steer, "end")] == [1]
    listing = json.loads(run(steer, "list-background-jobs", "--json").stdout)
    shown = next(job for job in listing["jobs"] if job["name"] == "slow")
    assert shown["paused"]["reason"] == "incident 42" and "@" in shown["paused"]["who"]
    assert run(steer, "unpause", "slow").returncode == 0
    assert run(steer, "run-background-job", "--name", "slow", "--tenant", "2").returncode == 0
    assert sorted(t for t, _ in lines(steer, "end")) == [1, 2]
    actions = [(a["action"], a["details"].get("force")) for a in
               json.loads(run(steer, "audit", "--job", "slow", "--json").stdout)["actions"]]
    assert actions == [("run", None), ("unpause", None), ("run", True), ("pause", None)]


def test_a_paused_tenant_is_skipped_and_recorded(steer):
    assert run(steer, "pause", "slow", "--tenant", "3", "--reason", "migrating").returncode == 0
    result = run(steer, "run-background-job", "--name", "slow", "--tenant", "2", "--tenant", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert [t for t, _ in lines(steer, "end")] == [2]
    rows = dict(query(steer.url, "SELECT tenant, status || ':' || COALESCE(error, '') FROM pinstripe_runs"))
    assert rows == {"2": "succeeded:", "3": "skipped:paused"}


def test_run_due_jobs_records_a_paused_tick_and_fires_again_once_unpaused(steer):
    assert run(steer, "pause", "hourly", "--reason", "incident").returncode == 0
    first = run(steer, "run-due-jobs", "--at", "2026-11-29T10:00:10+00:00")
    assert first.returncode == 0, first.stderr
    assert "hourly: tick 2026-11-29T10:00:00+00:00 not fired: the job is paused" in first.stdout
    assert "was already fired" not in first.stdout
    assert steer.log() == []  # nothing fired
    ticks = query(steer.url, "SELECT job, tick, kind, finished_at IS NOT NULL FROM pinstripe_ticks")
    assert [(t[0].split(":")[0], t[2], bool(t[3])) for t in ticks] == [("hourly", "paused", True)]
    assert run(steer, "run-due-jobs", "--at", "2026-11-29T10:00:20+00:00").returncode == 0
    assert steer.log() == []  # the paused tick is done: not resumed, not fired late
    assert run(steer, "unpause", "hourly").returncode == 0
    assert run(steer, "run-due-jobs", "--at", "2026-11-29T11:00:10+00:00").returncode == 0
    assert len(steer.log()) == N and all(line.startswith("hourly 2026-11-29T11:00:00") for line in steer.log())


def test_the_bot_records_paused_ticks_while_paused(steer):
    steer.job("minutely", TICK_JOB.replace("0 * * * *", "* * * * *"))
    steer.config(steer.root.joinpath("pinstripe.toml").read_text() + "misfire_grace = 120\n")
    assert run(steer, "pause", "minutely", "--reason", "incident").returncode == 0
    since = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(seconds=1)  # this minute's tick is due
    bot = start(steer, "start-bot", "--since", since.isoformat(), "--grace", "5")
    wait_until(lambda: query(steer.url, "SELECT job FROM pinstripe_ticks WHERE kind = 'paused'"), 30,
               "the paused tick")
    bot.terminate()
    _, err = bot.communicate(timeout=20)
    assert bot.returncode == 0, err
    assert "not fired: the job is paused" in err and "incident" in err
    assert steer.log() == []
    assert query(steer.url, "SELECT count(*) FROM pinstripe_runs") == [(0,)]


def test_the_audit_trail_is_empty_then_lists_actions(steer):
    empty = run(steer, "audit")
    assert empty.returncode == 0 and "No manual actions recorded." in empty.stdout
    run(steer, "pause", "slow", "--tenant", "7")
    shown = run(steer, "audit")
    assert shown.returncode == 0 and "pause" in shown.stdout and "slow" in shown.stdout and 'tenant="7"' in shown.stdout
    bad = run(steer, "pause", "nope")
    assert bad.returncode == ExitCode.USAGE and "Traceback" not in bad.stderr


def test_cancel_of_a_scheduled_invocation_stops_its_tenants_not_the_scheduler(steer):
    steer.job("slowtick", SLOW_JOB.replace("def run(ctx):", "schedule = '0 * * * *'\n\ndef run(ctx):"))
    proc = start(steer, "run-due-jobs", "--at", "2026-11-29T10:00:10+00:00")
    wait_until(lambda: len(lines(steer, "start")) >= 2, 30, "two tenants to start")
    invocation = wait_until(lambda: query(steer.url, "SELECT id FROM pinstripe_invocations WHERE job = 'slowtick' "
                                                     "AND ended_at IS NULL"), 10, "the invocation")[0][0]
    assert run(steer, "cancel", invocation, "--reason", "incident").returncode == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # the scheduler itself was not stopped
    started = {t for t, _ in lines(steer, "start")}
    assert 2 <= len(started) < N and started == {t for t, _ in lines(steer, "end")}
    statuses = dict(query(steer.url, "SELECT status, count(*) FROM pinstripe_runs WHERE invocation = ? GROUP BY "
                                     "status", (invocation,)))
    assert statuses == {"succeeded": len(started), "cancelled": N - len(started)}
    assert query(steer.url, "SELECT status, exit_code FROM pinstripe_invocations WHERE id = ?",
                 (invocation,)) == [("cancelled", 5)]
    ticks = query(steer.url, "SELECT finished_at IS NOT NULL FROM pinstripe_ticks WHERE job LIKE ?", ("slowtick%",))
    assert ticks == [(True,)]  # every tenant has a status: the tick is done, not resumed later
    assert run(steer, "run-due-jobs", "--at", "2026-11-29T10:00:20+00:00").returncode == 0
    assert {t for t, _ in lines(steer, "start")} == started
