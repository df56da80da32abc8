"""The invocations contract: begun and ended with counts and durations; a killed one reads crashed and is closed by
the next; idempotency keys, unique jobs, resume take-over, and the reads."""
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


def test_a_killed_invocation_is_closed_crashed_by_the_next_of_its_job(stores, killed):
    store = stores()
    killed("invocation")
    assert _invocation(store, "inv-dead")["ended_at"] is None
    store.begin_invocation("inv-next", "job", "manual")
    row = _invocation(store, "inv-dead")
    assert (row["status"], row["counts"]) == ("crashed", "abandoned=1,succeeded=1")
    assert row["p50_ms"] == 500.0
    latest = dict(store.query("SELECT tenant_key, status FROM pinstripe_latest WHERE job = 'job'"))
    assert latest == {"1": "succeeded"}  # its ended run folded; the one still running is not an end


def test_outcomes_of_running_runs_only_when_asked(stores):
    store = stores()
    store.begin_run("job", 1, "manual", invocation="inv")
    assert store.invocation_outcomes("job", "inv", [1]) == {}
    assert store.invocation_outcomes("job", "inv", [1], running=True) == {"1": ("running", None)}


def test_the_record_holds_what_it_was_asked_and_reads_as_shown(stores):
    store = stores()
    details = {"selection": {"source": "tenants.db", "tenants": ["1"], "exclude": [], "shard": None},
               "options": {"concurrency": 4}, "started_by": "ops@host", "executor": "threads"}
    assert store.begin_invocation("inv", "job", "manual", args={"args": ["a"]}, details=details).outcome == "new"
    assert store.begin_invocation("inv", "job", "manual").outcome == "new"  # once per id
    store.end_run(store.begin_run("job", 1, "manual", invocation="inv"), "succeeded")
    store.invocation_progress("inv", 3, 3)
    other = stores()
    row = other.get_invocation("inv")
    assert (row["status"], row["selection"], row["options"], row["started_by"], row["executor"]) == (
        "running", details["selection"], {"concurrency": 4}, "ops@host", "threads")
    assert row["counts"] == {"succeeded": 1} and row["done"] == 1 and row["args"] == {"args": ["a"]}
    store.renew()  # the heartbeat writes the scan's progress
    assert other.get_invocation("inv")["total"] == 3
    store.end_invocation("inv", "succeeded", 0, {"succeeded": 1})
    assert [r["id"] for r in other.list_invocations(job="job", status="succeeded")] == ["inv"]
    assert other.list_invocations(job="job", status="running") == [] and other.get_invocation("nope") is None


def test_a_killed_invocation_reads_crashed_and_its_tenants_are_known(stores, killed):
    store = stores()
    killed("invocation")
    row = store.get_invocation("inv-dead")
    assert row["status"] == "crashed" and row["counts"] == {"abandoned": 1, "succeeded": 1}
    assert store.invocation_tenants("inv-dead") == {"1": "succeeded", "2": "abandoned"}
    assert [r["id"] for r in store.list_invocations(status="crashed")] == ["inv-dead"]


def test_a_crashed_invocation_is_resumed_once_and_then_reflects_the_whole(stores, killed):
    killed("invocation")
    first, second = stores(), stores()
    assert first.resume_invocation("inv-dead").outcome == "resume"
    assert second.resume_invocation("inv-dead").outcome == "busy"  # its new holder is alive
    assert second.resume_invocation("missing").outcome == "missing"
    first.end_run(first.begin_run("job", 3, "manual", invocation="inv-dead"), "succeeded")
    first.end_invocation("inv-dead", "succeeded", 0, {"succeeded": 1})
    row = second.get_invocation("inv-dead")
    assert (row["status"], row["exit_code"], row["resumed"]) == ("failed", 1, 1)  # tenant 2 was abandoned
    assert row["counts"] == {"abandoned": 1, "succeeded": 2}
    assert second.resume_invocation("inv-dead").outcome == "finished"


def test_an_idempotency_key_names_one_invocation(stores):
    store, other = stores(), stores()
    assert store.begin_invocation("a", "job", "manual", key="k").outcome == "new"
    busy = other.begin_invocation("b", "job", "manual", key="k")
    assert (busy.outcome, busy.id) == ("busy", "a")
    store.end_invocation("a", "interrupted", 130, {})
    resumed = other.begin_invocation("c", "job", "manual", key="k")
    assert (resumed.outcome, resumed.id) == ("resume", "a")
    other.end_invocation("a", "failed", 1, {})
    finished = store.begin_invocation("d", "job", "manual", key="k")
    assert (finished.outcome, finished.id, finished.record["exit_code"]) == ("finished", "a", 1)
    assert {r["id"] for r in store.list_invocations()} == {"a"}  # b, c, d recorded nothing


def test_a_unique_job_has_one_live_invocation(stores, killed):
    store, other = stores(), stores()
    assert store.begin_invocation("a", "job", "manual", unique="job|[]").outcome == "new"
    busy = other.begin_invocation("b", "job", "manual", unique="job|[]")
    assert (busy.outcome, busy.id) == ("busy", "a")
    assert other.begin_invocation("c", "job", "manual", unique="job|[1]").outcome == "new"  # other arguments
    store.end_invocation("a", "succeeded", 0, {})
    assert other.begin_invocation("d", "job", "manual", unique="job|[]").outcome == "new"


def test_a_dead_unique_holder_does_not_block(stores, state_url):
    import subprocess
    import sys
    code = ("import sys; from pinstripe_jobs.store import StateStore; s = StateStore(sys.argv[1]); "
            "print(s.begin_invocation('dead', 'job', 'manual', unique='job|[]').outcome, flush=True)")
    out = subprocess.run([sys.executable, "-c", code, state_url], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "new"  # the process exited without ending it: provably gone
    store = stores()
    assert store.begin_invocation("next", "job", "manual", unique="job|[]").outcome == "new"
    assert store.get_invocation("dead")["status"] == "crashed"
