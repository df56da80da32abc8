"""Fairness on the fleet (issue #22): invocations running at the same time share the workers. Real brokers
(Redis, RabbitMQ), real ``pinstripe worker`` processes, PostgreSQL state; what ran is read from the jobs'
own log (one line per tenant: job, tenant, pid, start and end time)."""
from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.procs import SCRIPT, STARTED, clean_env, run, wait_until
from tests.test_fleet import _stop_workers, broker, worker  # noqa: F401 - fixtures used by name

pytest.importorskip("celery", reason="the celery extra is not installed")

BIG = 3000

# One line per tenant when it ends: "<job> <tenant> <pid> <start> <end>". SLEEP (seconds) in the module.
JOB = '''
import os, time
from pathlib import Path

ROOT = Path(__file__).parent.parent
SLEEP = {sleep}
{extra}

def run(ctx):
    started = time.time()
    time.sleep(SLEEP)
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"{{Path(__file__).stem}} {{ctx.tenant.id}} {{os.getpid()}} {{started:.6f}} {{time.time():.6f}}\\n")
'''

# The small job: ten tenants. FAIR_PLAN_DELAY (set for the CLI only, never for the workers) makes its
# planning slow, so that the bot's other job has filled the queue before this one sends anything.
SMALL_EXTRA = '''
schedule = "0 3 * * *"

def tenants_filter(tenants):
    time.sleep(float(os.environ.get("FAIR_PLAN_DELAY", "0")))
    return tenants.limit(10)
'''


def job(project, name: str, sleep: float = 0.01, extra: str = "") -> None:
    project.job(name, JOB.format(sleep=sleep, extra=extra))


@pytest.fixture
def fair(project, broker, pg_schema_url):  # noqa: F811 - the fixture
    """3,000 tenants (SQLite), PostgreSQL state, the broker, a queue of its own; batches of 5 tenants."""
    project.sqlite_tenants([{"id": i, "name": f"t{i}", "active": True, "plan": "pro"} for i in range(1, BIG + 1)])
    queue = f"pst-fair-{uuid.uuid4().hex[:10]}"
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{pg_schema_url}"\n\n[celery]\nbroker = "{broker}"\n'
                   f'queue = "{queue}"\nbatch_size = 5\n')
    job(project, "big", extra='schedule = "0 3 * * *"')
    job(project, "small", extra=SMALL_EXTRA)
    return project


def lines(project) -> list[list[str]]:
    path = project.root / "calls.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def count(project, name: str) -> int:
    return sum(1 for line in lines(project) if line[0] == name)


def start(project, *args: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([str(SCRIPT), *args], cwd=project.root, env=clean_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    STARTED.append(proc)
    return proc


def timed_run(project, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = run(project, *args, timeout=300)
    return time.monotonic() - started, result


def stop(proc: subprocess.Popen) -> tuple[dict, str]:
    """SIGTERM a CLI; its JSON document (every tenant reported) and its stderr."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return json.loads(out), err


def assert_every_tenant_reported(doc: dict, expected: int) -> None:
    assert len(doc["runs"]) == expected and len({r["tenant"] for r in doc["runs"]}) == expected
    statuses = {r["status"] for r in doc["runs"]}
    assert statuses <= {"succeeded", "skipped", "interrupted"}, statuses


def test_a_small_invocation_beside_a_big_one_finishes_in_about_its_own_time(fair):
    worker(fair, "--concurrency", "4")
    small = ["run-background-job", "--name", "small", "--executor", "celery", "--json"]
    alone, result = timed_run(fair, *small)
    assert result.returncode == 0, result.stderr[-3000:]
    assert count(fair, "small") == 10
    big = start(fair, "run-background-job", "--name", "big", "--executor", "celery", "--json")
    wait_until(lambda: count(fair, "big") >= 50, timeout=120, what="the big invocation to be running")
    beside, result = timed_run(fair, *small)
    big_done = count(fair, "big")
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert {r["tenant"]: r["status"] for r in doc["runs"]} == {i: "succeeded" for i in range(1, 11)}
    assert sorted(int(line[1]) for line in lines(fair) if line[0] == "small") == sorted(list(range(1, 11)) * 2)
    assert big.poll() is None and big_done < BIG, "the big invocation ended first: nothing was measured"
    assert beside < 3 * alone + 2, f"beside a {BIG}-tenant invocation: {beside:.2f}s; alone: {alone:.2f}s"
    doc, _ = stop(big)  # the rest of the big one: cancelled, every tenant reported (most never sent)
    assert_every_tenant_reported(doc, BIG)
    skipped = [r for r in doc["runs"] if r["status"] == "skipped"]
    assert len(skipped) > BIG // 2 and {r["reason"] for r in skipped} <= {"interrupted", "cancelled before it started"}


def pool_pids(proc: subprocess.Popen) -> set[int]:
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return {int(pid) for pid in path.read_text().split()}


def most_at_once(project, name: str) -> int:
    """The most tenants of ``name`` running at the same moment, from their logged start and end times."""
    events = sorted(e for line in lines(project) if line[0] == name
                    for e in ((float(line[3]), 1), (float(line[4]), -1)))
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_one_invocation_alone_keeps_every_worker_process_busy(fair):
    """10 processes on two workers: more than the window before the fleet answers (8 batches), so the
    window must grow to what the fleet has (found with Celery's remote control) to keep all busy."""
    from pinstripe_jobs.model.plan import shard_of

    job(fair, "wide", sleep=0.4)
    config = (fair.root / "pinstripe.toml").read_text().replace("batch_size = 5", "batch_size = 1")
    (fair.root / "pinstripe.toml").write_text(config)
    workers = [worker(fair, "--concurrency", "5"), worker(fair, "--concurrency", "5")]
    pools = set().union(*(pool_pids(w) for w in workers))
    assert len(pools) == 10
    result = run(fair, "run-background-job", "--name", "wide", "--executor", "celery", "--shard", "0/25", "--json",
                 timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    in_shard = [i for i in range(1, BIG + 1) if shard_of(i, 25) == 0]  # about 120 tenants, 0.4 s each
    assert sorted(r["tenant"] for r in json.loads(result.stdout)["runs"]) == in_shard
    assert sorted(int(line[1]) for line in lines(fair) if line[0] == "wide") == in_shard  # each ran once
    assert {int(line[2]) for line in lines(fair) if line[0] == "wide"} == pools  # every process ran tenants
    assert most_at_once(fair, "wide") == 10  # ... all of them at the same time


def test_a_higher_priority_invocation_gets_a_larger_share(fair):
    job(fair, "low")
    job(fair, "high")
    worker(fair, "--concurrency", "4")
    low = start(fair, "run-background-job", "--name", "low", "--executor", "celery", "--json")
    wait_until(lambda: count(fair, "low") >= 20, timeout=120, what="the low-priority invocation to be running")
    high = start(fair, "run-background-job", "--name", "high", "--executor", "celery", "--json", "--priority", "3")
    wait_until(lambda: count(fair, "high") >= 400, timeout=180, what="400 tenants of the high-priority invocation")
    assert low.poll() is None and high.poll() is None
    done = [line[0] for line in lines(fair)]
    both = done[done.index("high"):]  # from the first tenant of the second invocation: both are running
    highs, lows = both.count("high"), both.count("low")
    assert lows > 0 and highs >= 2 * lows, f"high {highs}, low {lows} (their windows are 4:1)"
    for proc in (low, high):
        doc, _ = stop(proc)
        assert_every_tenant_reported(doc, BIG)


def test_the_bot_shares_the_fleet_between_jobs_due_at_once(fair):
    """Two jobs due at the same tick: the small one, planned 1.5 s later, does not wait for the big one."""
    config = (fair.root / "pinstripe.toml").read_text().replace("[celery]", 'executor = "celery"\n\n[celery]')
    (fair.root / "pinstripe.toml").write_text(config)
    worker(fair, "--concurrency", "4")
    bot = start(fair, "run-due-jobs", "--at", "2026-11-29T03:00:20+00:00", env={"FAIR_PLAN_DELAY": "1.5"})
    wait_until(lambda: count(fair, "small") == 10 or bot.poll() is not None, timeout=120,
               what="the small job's ten tenants")
    assert count(fair, "small") == 10, bot.communicate()[1][-3000:]
    done = [line[0] for line in lines(fair)]
    big_before = done[:max(i for i, name in enumerate(done) if name == "small")].count("big")
    assert big_before < BIG // 2, f"the small job ended after {big_before} of the big job's tenants"
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=120)
    assert bot.returncode == 143, out[-2000:] + err[-3000:]
    history = json.loads(run(fair, "history", "--json", "--job", "small").stdout)["runs"]
    assert sorted(r["tenant"] for r in history) == list(range(1, 11))
    assert {r["status"] for r in history} == {"succeeded"} and {r["trigger"] for r in history} == {"schedule"}


def test_priority_is_checked_and_is_a_fleet_option(fair):
    fair.job("urgent", "priority = 10\n\ndef run(ctx):\n    pass\n")
    result = run(fair, "run-background-job", "--name", "urgent", "--executor", "celery")
    assert result.returncode == 3, result.stderr
    assert "priority must be a whole number >= 0 and <= 9, got 10" in result.stderr and "Traceback" not in result.stderr
    result = run(fair, "run-background-job", "--name", "big", "--executor", "celery", "--priority", "10")
    assert result.returncode == 2 and "--priority" in result.stderr and "0<=x<=9" in result.stderr
    result = run(fair, "run-background-job", "--name", "big", "--priority", "3")
    assert result.returncode == 2 and "--priority only applies to the celery executor" in result.stderr
    config = (fair.root / "pinstripe.toml").read_text() + "in_flight = 0\n"
    (fair.root / "pinstripe.toml").write_text(config)
    result = run(fair, "run-background-job", "--name", "big", "--executor", "celery")
    assert result.returncode == 3 and "in_flight" in result.stderr and "at least 1" in result.stderr
    assert lines(fair) == []


def test_the_window_is_the_configured_in_flight_times_one_plus_priority(fair, monkeypatch):
    """[celery] in_flight = 3 and a job's priority = 2: exactly 3 x (1 + 2) batches are sent to a queue that
    no worker reads, then the run waits for a result; a stop then reports every tenant (the fleet is not
    asked for its size: the window is the configured one)."""
    import threading

    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.execution.signals import StopFlag
    from pinstripe_jobs.fleet import window
    from pinstripe_jobs.fleet.broker import make_app
    from pinstripe_jobs.fleet.executor import FleetExecutor, priority_of
    from pinstripe_jobs.model.plan import RunOptions
    from pinstripe_jobs.observers.base import NullObserver

    fair.job("urgent", "priority = 2\n\ndef run(ctx):\n    pass\n")
    settings = load_settings(fair.root / "pinstripe.toml")
    settings.executor = "celery"
    settings.celery = {**settings.celery, "in_flight": 3}
    runner = Runner(settings, stop=StopFlag(grace=0))
    sent: list[int] = []
    waited_with: list[int] = []
    send, gather = FleetExecutor._send, FleetExecutor._gather
    monkeypatch.setattr(FleetExecutor, "_send", lambda self, plan, batch, options, pending: (
        sent.append(len(batch)), send(self, plan, batch, options, pending))[1])
    monkeypatch.setattr(FleetExecutor, "_gather", lambda self, pending, *args, **kwargs: (
        waited_with.append(len(pending)), gather(self, pending, *args, **kwargs))[1])
    monkeypatch.setattr(window, "fleet_processes", lambda *args: pytest.fail("the fleet was asked"))
    try:
        plan = runner.plan("urgent", RunOptions())
        assert (plan.spec.priority, priority_of(plan)) == (2, 2)
        assert priority_of(runner.plan("urgent", RunOptions(priority=0))) == 0  # --priority wins over the job's
        summaries = []
        thread = threading.Thread(target=lambda: summaries.append(runner.execute(plan, NullObserver())), daemon=True)
        thread.start()
        wait_until(lambda: 9 in waited_with, timeout=60, what="the run to wait with its window full")
        runner.stop.request(signal.SIGTERM)
        thread.join(60)
        assert not thread.is_alive()
        assert sent == [5] * 9 and max(waited_with) == 9  # 3 x (1 + 2) batches of 5, never more in flight
        counts = summaries[0].counts
        assert counts == {"interrupted": 45, "skipped": BIG - 45}, counts  # every tenant reported
    finally:
        runner.close()
        app = make_app(settings)
        with app.connection_for_write() as conn:  # the 9 batches nobody will take
            conn.default_channel.queue_delete(settings.celery["queue"])
