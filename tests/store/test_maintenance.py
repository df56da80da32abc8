"""The maintenance contract: prune keeps held rows; the daily check; opening a store prunes nothing,
``open_store`` prunes for commands that write only."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from pinstripe_jobs.store import open_store
from tests.store.conftest import T0


def test_prune_removes_old_finished_history_and_keeps_held_rows(stores):
    clock = [T0 - timedelta(days=40)]
    store = stores(clock=lambda: clock[0], history_days=30)
    store.end_run(store.begin_run("job", 1, "manual"), "succeeded")
    held = store.begin_run("job", 2, "manual")  # old, but still running: its lock stays
    queued = store.claim("job", [3], "manual")["3"]
    store.claim_tick("job", clock[0])
    store.finish_tick("job", clock[0])
    clock[0] = T0
    store.end_run(store.begin_run("job", 4, "manual"), "succeeded")
    assert store.prune() == 1
    assert sorted(r["id"] for r in store.runs()) == sorted([held.run_id, queued.run_id, store.runs()[0]["id"]])
    assert store.last_claimed_tick("job") is None
    assert store.begin_run("job", 2, "manual") is None  # the held row still holds the lock


def test_maintain_prunes_at_most_once_a_day(stores):
    clock = [T0]
    store = stores(clock=lambda: clock[0], history_days=30)
    assert store.maintain() is True
    clock[0] = T0 + timedelta(hours=23)
    assert store.maintain() is False
    clock[0] = T0 + timedelta(days=1, minutes=1)
    assert store.maintain() is True


def test_opening_prunes_nothing_and_open_store_prunes_for_writers_only(stores, state_url):
    settings = SimpleNamespace(state_url=state_url, history_days=30, state_retry_s=10, lock_stale_s=60)
    store = stores()
    old = (T0 - timedelta(days=400)).isoformat()
    store.remember("pruned_at", old)
    store.engine.call(lambda conn: store.engine.execute(
        conn, "INSERT INTO pinstripe_runs (job, trigger, started_at, ended_at, status) VALUES ('old', 'manual', ?, ?, "
              "'succeeded')", (old, old)))  # long before now: prunable
    stores()  # opening a store: no pruning
    reader = open_store(settings, read_only=True)
    reader.close()
    assert len(store.runs(job="old")) == 1 and store.recall("pruned_at").startswith("2025")
    writer = open_store(settings)
    writer.close()
    assert store.runs(job="old") == [] and not store.recall("pruned_at").startswith("2025")


def test_a_read_only_open_never_creates_a_sqlite_file(tmp_path):
    path = tmp_path / "state" / "state.db"
    settings = SimpleNamespace(state_url=f"sqlite:///{path}", history_days=30, state_retry_s=10, lock_stale_s=60)
    assert open_store(settings, read_only=True) is None and not path.exists()


def test_maintenance_that_cannot_get_its_locks_is_skipped_without_holding_the_command_up(stores, state_url):
    import sqlite3
    import time

    store = stores(retry_s=30)
    store.remember("pruned_at", (T0 - timedelta(days=400)).isoformat())
    if state_url.startswith("sqlite"):
        blocker = sqlite3.connect(state_url.split(":///", 1)[1], isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        from tests.conftest import PG_URL

        blocker = psycopg.connect(PG_URL.replace("+psycopg", ""))
        schema = state_url.rsplit("%3D", 1)[1]
        blocker.execute(f"LOCK TABLE {schema}.pinstripe_runs IN ACCESS EXCLUSIVE MODE")
    try:
        began = time.monotonic()
        assert store.maintain() is False
        assert time.monotonic() - began < 10  # one short try, not the 30 s retry budget
    finally:
        if state_url.startswith("sqlite"):
            blocker.execute("ROLLBACK")
        else:
            blocker.rollback()
        blocker.close()
    assert store.recall("pruned_at").startswith("2025")  # not pruned: the next command tries again
    assert store.maintain() is True
