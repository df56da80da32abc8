"""The scheduler with an injected clock: due ticks, misfire grace, catch-up, clock jumps, DST nights."""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.scheduling.bot import Scheduler

UTC = UTC
TICK_JOB = '''
from pathlib import Path
schedule = {schedule!r}
{extra}
def run(ctx, *args):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{{ctx.job}} {{ctx.tick.isoformat()}} {{ctx.tenant.id if ctx.tenant else None}} {{list(args)}}\\n")
'''


def add_job(project, name, schedule, extra=""):
    project.job(name, TICK_JOB.format(schedule=schedule, extra=extra))


class FakeClock:
    """now() and wait(); wait advances time and stops the loop once past ``until``."""

    def __init__(self, start: datetime, until: datetime, runner: Runner, jumps=None):
        self.t = start
        self.until = until
        self.runner = runner
        self.jumps = dict(jumps or {})  # at or after this time, jump to that one (once)
        self.waits: list[float] = []
        self.threads: set = set()

    def now(self) -> datetime:
        return self.t

    def wait(self, seconds: float) -> None:
        for thread in list(self.threads):  # real time passes too: let jobs fired so far finish
            thread.join(10)
        self.waits.append(seconds)
        self.t += timedelta(seconds=seconds)
        for when, to in list(self.jumps.items()):
            if self.t >= when:
                del self.jumps[when]
                self.t = to
        if self.t >= self.until:
            self.runner.stop.request(15)


def scheduler_for(project, start=None, until=None, jumps=None):
    runner = Runner(load_settings(cwd=project.root, env={}))
    clock = FakeClock(start or datetime(2026, 1, 1, tzinfo=UTC), until or datetime(2026, 1, 2, tzinfo=UTC), runner,
                      jumps)
    scheduler = Scheduler(runner, now=clock.now, wait=clock.wait)
    clock.threads = scheduler.threads
    return scheduler, clock


def fired(project):
    return sorted(project.log())


def wait_threads(scheduler):
    for thread in list(scheduler.threads):
        thread.join(10)


def test_run_due_fires_the_minutes_ticks_once(project):
    project.config('misfire_grace = 60\n')
    add_job(project, "hourly", "0 * * * *")
    add_job(project, "five", "*/5 * * * *")
    add_job(project, "args", [("0 10 * * *", "morning"), ("0 22 * * *", "evening")], "multi_tenant = False")
    scheduler, _ = scheduler_for(project)
    outcomes = scheduler.run_due(datetime(2026, 1, 1, 10, 0, 20, tzinfo=UTC))
    assert sorted(o.firing.spec.name for o in outcomes) == ["args", "five", "hourly"]
    assert fired(project) == ["args 2026-01-01T10:00:00+00:00 None ['morning']",
                              "five 2026-01-01T10:00:00+00:00 None []",
                              "hourly 2026-01-01T10:00:00+00:00 None []"]
    again = scheduler.run_due(datetime(2026, 1, 1, 10, 0, 50, tzinfo=UTC))
    assert [o.summary for o in again] == [None, None, None]  # claimed already: a retry fires nothing
    assert len(fired(project)) == 3
    assert scheduler.run_due(datetime(2026, 1, 1, 10, 1, 5, tzinfo=UTC)) == []


def test_run_due_in_the_configured_time_zone(project):
    project.config('timezone = "America/New_York"\n')
    add_job(project, "nine", "0 9 * * *")
    scheduler, _ = scheduler_for(project)
    assert scheduler.run_due(datetime(2026, 7, 1, 9, 0, tzinfo=UTC)) == []
    [outcome] = scheduler.run_due(datetime(2026, 7, 1, 13, 0, 10, tzinfo=UTC))  # 09:00 EDT
    assert outcome.summary.status == "succeeded"


def test_misfire_grace_fires_late_ticks_and_skips_older_ones(project, caplog):
    project.config('misfire_grace = 90\n')
    add_job(project, "minutely", "* * * * *")
    scheduler, _ = scheduler_for(project)
    # 09:57 is 65s late (within grace) and 09:58 is due: one run, for 09:58.
    [outcome] = scheduler.run_due(datetime(2026, 1, 1, 9, 58, 5, tzinfo=UTC))
    assert outcome.firing.coalesced == 2
    caplog.set_level(logging.WARNING, "pinstripe.bot")
    # 09:59 is 120s late: skipped and logged; 10:00 (60s late) and 10:01 make one run.
    scheduler.run_due(datetime(2026, 1, 1, 10, 1, 0, tzinfo=UTC))
    assert [line.split()[1][11:16] for line in fired(project)] == ["09:58", "10:01"]
    assert not scheduler.runner.state.claim_tick("minutely", datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    assert "skipped 1 tick(s) missed by more than misfire_grace" in caplog.text


def test_catch_up_coalesces_missed_ticks_into_one_run(project, caplog):
    project.config('misfire_grace = 60\n')
    add_job(project, "hourly", "0 * * * *", "catch_up = True\nmulti_tenant = False")
    scheduler, _ = scheduler_for(project)
    scheduler.run_due(datetime(2026, 1, 1, 7, 0, 5, tzinfo=UTC))
    caplog.set_level(logging.INFO, "pinstripe.bot")
    [outcome] = scheduler.run_due(datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC))
    assert outcome.firing.coalesced == 3 and outcome.firing.tick.hour == 10
    assert fired(project) == ["hourly 2026-01-01T07:00:00+00:00 None []", "hourly 2026-01-01T10:00:00+00:00 None []"]
    assert "catching up 3 missed ticks in one run" in caplog.text


def test_loop_fires_each_tick_once_and_sleeps_until_due(project):
    add_job(project, "hourly", "0 * * * *")
    add_job(project, "half", "*/30 * * * *")
    scheduler, clock = scheduler_for(project, datetime(2026, 1, 1, 9, 59, tzinfo=UTC),
                                     datetime(2026, 1, 1, 11, 1, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert fired(project) == [
        "half 2026-01-01T10:00:00+00:00 None []", "half 2026-01-01T10:30:00+00:00 None []",
        "half 2026-01-01T11:00:00+00:00 None []",
        "hourly 2026-01-01T10:00:00+00:00 None []", "hourly 2026-01-01T11:00:00+00:00 None []"]
    assert max(clock.waits) <= 60 and len(clock.waits) < 70  # no busy polling: about one wake a minute


def test_loop_survives_clock_jumps(project, caplog):
    add_job(project, "quarter", "*/15 * * * *")
    caplog.set_level(logging.WARNING, "pinstripe.bot")
    # Forward 2 hours after 10:05 (a suspended machine), then back 1 hour after 12:20.
    jumps = {datetime(2026, 1, 1, 10, 5, tzinfo=UTC): datetime(2026, 1, 1, 12, 5, 30, tzinfo=UTC),
             datetime(2026, 1, 1, 12, 20, tzinfo=UTC): datetime(2026, 1, 1, 11, 20, tzinfo=UTC)}
    scheduler, clock = scheduler_for(project, datetime(2026, 1, 1, 9, 50, tzinfo=UTC),
                                     datetime(2026, 1, 1, 12, 31, tzinfo=UTC), jumps)
    scheduler.loop()
    wait_threads(scheduler)
    ticks = [line.split()[1][11:16] for line in fired(project)]
    # 12:00 was missed by only 5.5 min? no: grace is 60s, so 10:15..12:00 are skipped (logged);
    # after the backward jump nothing fires twice; 12:30 fires once the clock gets there again.
    assert ticks == ["10:00", "12:15", "12:30"]
    assert len(ticks) == len(set(ticks))
    assert "skipped 8 tick(s) missed by more than misfire_grace" in caplog.text


def test_loop_across_a_fall_back_night_fires_once(project):
    project.config('timezone = "Europe/London"\n')
    add_job(project, "nightly", "30 1 * * *")
    add_job(project, "halfhourly", "*/30 1 * * *")
    scheduler, _ = scheduler_for(project, datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
                                 datetime(2026, 10, 25, 3, 0, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert fired(project) == [
        "halfhourly 2026-10-25T00:00:00+00:00 None []", "halfhourly 2026-10-25T00:30:00+00:00 None []",
        "nightly 2026-10-25T00:30:00+00:00 None []"]  # 01:30 BST once; not again at 01:30 GMT


def test_loop_across_a_spring_forward_night_fires_once_at_the_next_valid_time(project):
    project.config('timezone = "America/New_York"\n')
    add_job(project, "nightly", "30 2 * * *")
    scheduler, _ = scheduler_for(project, datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
                                 datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert fired(project) == ["nightly 2026-03-08T07:00:00+00:00 None []"]  # 03:00 EDT


def test_a_long_job_does_not_delay_another(project):
    project.job("slow", "import time\nschedule = '0 * * * *'\nmulti_tenant = False\n"
                        "def run(ctx):\n    time.sleep(1.0)\n")
    project.job("quick", "schedule = '0 * * * *'\nmulti_tenant = False\ndef run(ctx):\n    pass\n")
    scheduler, _ = scheduler_for(project)
    outcomes = scheduler.run_due(datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    assert sorted(o.summary.status for o in outcomes) == ["succeeded", "succeeded"]
    runs = {r["job"]: r for r in scheduler.runner.state.runs()}
    assert runs["quick"]["ended_at"] < runs["slow"]["ended_at"]
    assert runs["quick"]["started_at"] < runs["slow"]["ended_at"]  # started while slow was running
    assert runs["slow"]["trigger"] == "schedule" and runs["slow"]["tick"].startswith("2026-01-01T10:00:00")


def test_a_failing_scheduled_job_is_logged_and_the_loop_goes_on(project):
    project.job("bad", "schedule = '*/30 * * * *'\nmulti_tenant = False\ndef run(ctx):\n    raise ValueError('x')\n")
    add_job(project, "good", "*/30 * * * *")
    scheduler, _ = scheduler_for(project, datetime(2026, 1, 1, 9, 59, tzinfo=UTC),
                                 datetime(2026, 1, 1, 10, 31, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert len(fired(project)) == 2
    statuses = [r["status"] for r in scheduler.runner.state.runs(job="bad")]
    assert statuses == ["failed", "failed"]


def test_bot_restart_fires_recent_and_catch_up_ticks_missed_while_down(project, caplog):
    project.config('misfire_grace = 60\n')
    add_job(project, "hourly", "0 * * * *", "multi_tenant = False")
    add_job(project, "catchup", "0 * * * *", "multi_tenant = False\ncatch_up = True")
    scheduler, _ = scheduler_for(project)
    scheduler.run_due(datetime(2026, 1, 1, 9, 0, 10, tzinfo=UTC))  # the last ticks claimed before the "outage"
    (project.root / "calls.log").unlink()
    caplog.set_level(logging.INFO, "pinstripe.bot")
    # The bot comes back at 12:00:30: 12:00 is 30 s late (within grace); 10:00 and 11:00 are older.
    scheduler, clock = scheduler_for(project, datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC),
                                     datetime(2026, 1, 1, 12, 0, 40, tzinfo=UTC))
    scheduler.loop()
    wait_threads(scheduler)
    assert fired(project) == ["catchup 2026-01-01T12:00:00+00:00 None []",
                              "hourly 2026-01-01T12:00:00+00:00 None []"]
    assert "hourly: skipped 2 tick(s) missed by more than misfire_grace" in caplog.text
    assert "catchup: catching up 3 missed ticks in one run" in caplog.text
