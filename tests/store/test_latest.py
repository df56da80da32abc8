"""The latest-status contract: ended runs folded into each tenant's newest status; newer runs win."""
from __future__ import annotations


def _latest(store):
    return {row[0]: row[1:] for row in store.query("SELECT tenant_key, status, failing_since IS NOT NULL FROM "
                                                   "pinstripe_latest WHERE job = 'job'")}


def test_flush_folds_ended_runs_and_the_newest_wins(stores):
    store = stores()
    store.end_run(store.begin_run("job", 1, "manual"), "failed", "ValueError: x", defer=True)
    store.end_run(store.begin_run("job", 2, "manual"), "succeeded", defer=True)
    store.flush()
    assert _latest(store) == {"1": ("failed", True), "2": ("succeeded", False)}
    store.end_run(store.begin_run("job", 1, "manual"), "succeeded")
    store.flush()
    assert _latest(store)["1"] == ("succeeded", False)  # no longer failing


def test_rebuild_folds_history_written_outside_the_store(stores):
    store = stores()
    store.end_run(store.begin_run("job", 1, "manual"), "succeeded")
    store.flush()
    store.engine.call(lambda conn: store.engine.execute(conn, "DELETE FROM pinstripe_latest"))
    assert _latest(store) == {}
    store.rebuild_latest()
    assert _latest(store) == {"1": ("succeeded", False)}
