"""The invocations contract: begun and ended with counts and durations; a killed one closed by the next."""
from __future__ import annotations


def _invocation(store, invocation):
    columns = ("status", "exit_code", "counts", "p50_ms", "p95_ms", "max_ms", "ended_at")
    [row] = store.query(f"SELECT {', '.join(columns)} FROM pinstripe_invocations WHERE id = ?", (invocation,))
    return dict(zip(columns, row, strict=True))


def test_an_invocation_ends_with_its_counts_and_durations(stores):
    store = stores()
    store.end_run(store.begin_run("job", 0, "manual"), "succeeded", duration_s=9)  # before: not counted
    store.begin_invocation("inv", "job", "manual", args={"x": 1})
    for tenant, seconds in enumerate([0.1, 0.2, 0.3, 0.4], 1):
        store.end_run(store.begin_run("job", tenant, "manual", invocation="inv"), "succeeded", duration_s=seconds,
                      defer=True)
    store.end_invocation("inv", "succeeded", 0, {"succeeded": 4})
    row = _invocation(store, "inv")
    assert (row["status"], row["exit_code"], row["counts"]) == ("succeeded", 0, "succeeded=4")
    assert (row["p50_ms"], row["p95_ms"], row["max_ms"]) == (200.0, 400.0, 400.0) and row["ended_at"]
    assert store.invocation_outcomes("job", "inv", [1, 2, 9]) == {"1": ("succeeded", None), "2": ("succeeded", None)}


def test_a_killed_invocation_is_closed_abandoned_by_the_next_of_its_job(stores, killed):
    store = stores()
    killed("invocation")
    assert _invocation(store, "inv-dead")["ended_at"] is None
    store.begin_invocation("inv-next", "job", "manual")
    row = _invocation(store, "inv-dead")
    assert (row["status"], row["counts"]) == ("abandoned", "abandoned=1,succeeded=1")
    assert row["p50_ms"] == 500.0
    latest = dict(store.query("SELECT tenant_key, status FROM pinstripe_latest WHERE job = 'job'"))
    assert latest == {"1": "succeeded"}  # its ended run folded; the one still running is not an end


def test_outcomes_of_running_runs_only_when_asked(stores):
    store = stores()
    store.begin_run("job", 1, "manual", invocation="inv")
    assert store.invocation_outcomes("job", "inv", [1]) == {}
    assert store.invocation_outcomes("job", "inv", [1], running=True) == {"1": ("running", None)}
