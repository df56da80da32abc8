"""The state store contract, against SQLite and PostgreSQL: history, locks, abandoned runs, tick claims."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.store.state import StateStore

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(state_url):
    s = StateStore(state_url)
    yield s
    s.close()


def test_a_run_is_recorded_when_it_starts_and_updated_when_it_ends(store):
    lease = store.begin_run("job", 7, "manual")
    [row] = store.runs()
    assert (row["job"], row["tenant"], row["trigger"], row["status"], row["ended_at"]) == ("job", 7, "manual",
                                                                                          "running", None)
    assert row["pid"] and row["host"]
    store.end_run(lease, "failed", "ValueError: x")
    [row] = store.runs()
    assert (row["status"], row["error"]) == ("failed", "ValueError: x") and row["ended_at"] >= row["started_at"]


def test_lock_is_per_job_and_tenant(store):
    a = store.begin_run("job", 1, "manual")
    assert a is not None
    assert store.begin_run("job", 1, "schedule") is None  # held by a live run (this process)
    b = store.begin_run("job", 2, "manual")
    c = store.begin_run("other", 1, "manual")
    assert b is not None and c is not None
    assert store.begin_run("job", 1, "manual", lock=False) is not None  # overlap = "allow"
    store.end_run(a, "succeeded")
    again = store.begin_run("job", 1, "manual")
    assert again is not None


def test_non_tenant_jobs_lock_per_job(store):
    lease = store.begin_run("solo", None, "manual")
    assert store.begin_run("solo", None, "manual") is None
    store.end_run(lease, "succeeded")
    assert store.runs()[0]["tenant"] is None


def test_tick_claims_are_exactly_once(store, state_url):
    assert store.claim_tick("job", T0) is True
    assert store.claim_tick("job", T0) is False
    other = StateStore(state_url)
    assert other.claim_tick("job", T0) is False
    assert other.claim_tick("job", T0 + timedelta(minutes=1)) is True
    assert other.claim_tick("job#1", T0) is True
    assert store.last_claimed_tick("job") == T0 + timedelta(minutes=1)
    other.close()


def test_history_filters_and_order(store):
    for tenant, status in [(1, "succeeded"), (2, "failed"), (1, "failed"), (3, "succeeded")]:
        store.end_run(store.begin_run("job", tenant, "manual", lock=False), status)
    store.end_run(store.begin_run("other", 1, "schedule", lock=False), "succeeded")
    assert [r["job"] for r in store.runs()] == ["other", "job", "job", "job", "job"]
    assert [r["tenant"] for r in store.runs(job="job", status="failed")] == [1, 2]
    assert len(store.runs(tenant="1")) == 3
    assert len(store.runs(limit=2)) == 2
    assert store.failed_tenants("job") == ["1", "2"] or sorted(store.failed_tenants("job")) == ["1", "2"]
    store.end_run(store.begin_run("job", 1, "manual"), "succeeded")
    assert store.failed_tenants("job") == ["2"]
    assert store.last_runs()["other"]["trigger"] == "schedule"


def test_prune_removes_old_finished_runs(state_url):
    clock = [T0 - timedelta(days=40)]
    store = StateStore(state_url, clock=lambda: clock[0], history_days=30)
    store.end_run(store.begin_run("job", 1, "manual"), "succeeded")
    store.claim_tick("job", clock[0])
    store.finish_tick("job", clock[0])
    clock[0] = T0
    store.end_run(store.begin_run("job", 2, "manual"), "succeeded")
    assert store.prune() == 1
    assert [r["tenant"] for r in store.runs()] == [2]
    assert store.last_claimed_tick("job") is None
    store.close()


HOLD_LOCK = """
import sys, time
from pinstripe_jobs.store.state import StateStore
store = StateStore(sys.argv[1])
lease = store.begin_run("job", 1, "manual")
print("locked" if lease else "busy", flush=True)
time.sleep(60)
"""


def test_lock_is_released_when_its_holder_is_killed(store, state_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, state_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert store.begin_run("job", 1, "manual") is None  # held by a live process
        assert store.runs()[0]["status"] == "running"
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs
        holder.wait()
    assert store.runs()[0]["status"] == "abandoned"
    assert store.runs(status="abandoned")[0]["pid"] == holder.pid
    assert store.failed_tenants("job") == ["1"]
    lease = store.begin_run("job", 1, "manual")
    assert lease is not None
    store.end_run(lease, "succeeded")


def test_unusable_state_url_is_a_config_error_with_masked_password():
    with pytest.raises(ConfigError) as info:
        StateStore("postgresql+psycopg://u:topsecret@127.0.0.1:1/x", retry_s=0.5)
    assert "topsecret" not in str(info.value) and "not usable" in str(info.value)


def test_deferred_run_ends_ride_on_the_next_write(store, state_url):
    other = StateStore(state_url)
    first = store.begin_run("job", 1, "manual")
    store.end_run(first, "succeeded", defer=True)
    assert other.runs()[0]["status"] == "running"  # not committed yet: another process still sees it going
    second = store.begin_run("job", 1, "manual")  # the deferred end is committed first, so the lock is free
    assert second is not None
    assert [r["status"] for r in other.runs()] == ["running", "succeeded"]
    store.end_run(second, "failed", "ValueError: x", defer=True)
    store.flush()
    assert [(r["status"], r["error"]) for r in other.runs()] == [("failed", "ValueError: x"), ("succeeded", None)]
    other.close()


def test_many_processes_can_open_a_new_store_at_once(state_url):
    """Schema creation and the daily prune race safely when several processes start together."""
    code = ("import sys\nfrom pinstripe_jobs.store.state import StateStore\n"
            "s = StateStore(sys.argv[1])\ns.end_run(s.begin_run('job', None, 'manual', lock=False), 'succeeded')\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, state_url], stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    store = StateStore(state_url)
    assert len(store.runs()) == 6
    store.close()


def test_claimed_tenants_are_queued_hold_their_locks_and_start_durably(store, state_url):
    other = StateStore(state_url)
    claimed = store.claim("job", [1, 2, 2, "x"], "manual", invocation="inv")  # a repeated id is claimed once
    assert sorted(claimed) == ["1", "2", "x"]
    assert {r["tenant"]: r["status"] for r in other.runs()} == {1: "queued", 2: "queued", "x": "queued"}
    assert other.begin_run("job", 2, "manual") is None  # a queued row holds the lock, like a running one
    assert other.claim("job", [1, 3], "manual") .keys() == {"3"}  # only what is free
    assert store.start(claimed["1"]) is True
    assert {r["tenant"]: r["status"] for r in other.runs(job="job")}[1] == "running"  # committed before the job
    store.end_run(claimed["1"], "succeeded", defer=True)
    assert store.start(claimed["2"], linger=0.001)  # the deferred end rides on this start's commit
    assert [r["status"] for r in other.runs(tenant="1")] == ["succeeded"]
    assert other.tick_tenants("job", T0) == set()  # queued rows never started: a resumed tick runs them
    other.close()


def test_a_claim_taken_over_before_it_starts_is_not_started(state_url):
    clock = [T0]
    mine = StateStore(state_url, clock=lambda: clock[0], lock_stale_s=60)
    claimed = mine.claim("job", [1], "manual")["1"]
    # the claimer looks gone: as if on another host whose heartbeat stopped two minutes ago
    mine.engine.call(lambda conn: mine.engine.execute(conn, "UPDATE pinstripe_runs SET host = 'elsewhere'"))
    clock[0] = T0 + timedelta(minutes=2)
    other = StateStore(state_url, clock=lambda: clock[0], lock_stale_s=60)
    lease = other.begin_run("job", 1, "manual")
    assert lease is not None
    rows = other.runs(tenant="1")
    assert [r["status"] for r in rows] == ["running", "skipped"] and rows[1]["error"].startswith("never started")
    assert mine.start(claimed) is False  # it must not run: another run holds the tenant now
    other.end_run(lease, "succeeded")
    mine.close()
    other.close()


def test_concurrent_starts_share_commits(store):
    import threading

    claimed = store.claim("job", list(range(40)), "manual")
    commits = []
    real = store.engine.commit_pending
    store.engine.commit_pending = lambda conn: (commits.append(1), real(conn))[1]
    barrier = threading.Barrier(40)
    results = []

    def start(lease):
        barrier.wait()
        results.append(store.start(lease, linger=0.005))

    threads = [threading.Thread(target=start, args=(lease,)) for lease in claimed.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 40
    assert {r["status"] for r in store.runs(limit=None)} == {"running"}
    assert len(commits) < 20, len(commits)  # 40 starts, a handful of commits
