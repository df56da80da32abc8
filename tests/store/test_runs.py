"""The runs contract: lock exclusivity, takeover of a dead holder, deferred ends, finished rows."""
from __future__ import annotations

from tests.procs import wait_until


def test_a_lock_is_exclusive_across_stores_until_its_run_ends(stores):
    mine, other = stores(), stores()
    lease = mine.begin_run("job", 1, "manual")
    assert lease is not None
    assert other.begin_run("job", 1, "manual") is None  # a live holder
    assert other.holder("job", 1).startswith("host ") and f"pid {mine.engine.pid}" in other.holder("job", 1)
    assert other.begin_run("job", 2, "manual") is not None  # another tenant: another lock
    assert other.begin_run("job", 1, "manual", lock=False) is not None  # overlap allowed: no lock taken
    mine.end_run(lease, "succeeded")
    assert other.holder("job", 1) is None
    assert other.begin_run("job", 1, "manual") is not None


def test_the_lock_of_a_killed_holder_is_taken_over_and_its_run_reads_abandoned(stores, killed):
    store = stores()
    pid = killed("run")
    [row] = store.runs()
    assert (row["status"], row["pid"]) == ("abandoned", pid)
    lease = store.begin_run("job", 1, "manual")
    assert lease is not None
    old = [r for r in store.runs() if r["pid"] == pid][0]
    assert old["status"] == "abandoned" and "taken over" in old["error"]


def test_deferred_ends_are_flushed_and_else_committed_by_the_heartbeat(stores):
    mine, other = stores(), stores()
    first = mine.begin_run("job", 1, "manual")
    mine.end_run(first, "succeeded", defer=True)
    assert other.runs()[0]["status"] == "running"  # not committed yet
    mine.flush()
    assert other.runs()[0]["status"] == "succeeded"
    second = mine.begin_run("job", 2, "manual")
    mine.end_run(second, "failed", "ValueError: y", defer=True)
    wait_until(lambda: other.runs(tenant="2")[0]["status"] == "failed", timeout=10,
               what="the heartbeat thread to commit the deferred end")


def test_record_many_writes_finished_rows_and_masks_secrets(stores):
    store = stores()
    store.record_many("job", range(1, 1203), "manual", "skipped", error="stopped: postgresql://u:hunter2@db/x")
    rows = store.runs(limit=None)
    assert len(rows) == 1202 and {r["status"] for r in rows} == {"skipped"}
    assert all(r["ended_at"] for r in rows) and "hunter2" not in rows[0]["error"]
    assert store.query("SELECT count(*) FROM pinstripe_latest WHERE job = 'job'") == [(1202,)]
