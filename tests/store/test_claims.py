"""The claims contract: a page claimed in one transaction, started durably, ended; a killed claimer's
rows stay queued and are ended skipped by the next run."""
from __future__ import annotations

from tests.store.conftest import T0


def test_claim_start_and_end(stores):
    mine, other = stores(), stores()
    claimed = mine.claim("job", [1, 2, 2, None], "schedule", tick=T0, invocation="inv")
    assert sorted(claimed) == ["-", "1", "2"]  # a repeated tenant is claimed once
    assert {r["tenant"]: r["status"] for r in other.runs()} == {1: "queued", 2: "queued", None: "queued"}
    assert other.claim("job", [2, 3], "manual").keys() == {"3"}  # a queued row holds its lock
    assert mine.start(claimed["1"]) is True
    assert other.runs(tenant="1")[0]["status"] == "running"  # committed before the job would be called
    assert other.tick_tenants("job", T0) == {"1"}  # queued rows never started: not yet the tick's
    mine.end_run(claimed["1"], "succeeded")
    assert other.runs(tenant="1")[0]["status"] == "succeeded"


def test_a_killed_claimers_rows_stay_queued_and_the_next_run_skips_them(stores, killed):
    store = stores()
    killed("claim")
    assert {r["status"] for r in store.runs()} == {"queued"}
    lease = store.begin_run("job", 1, "manual")
    assert lease is not None
    old = [r for r in store.runs(tenant="1") if r["id"] != lease.run_id][0]
    assert old["status"] == "skipped" and old["error"].startswith("never started")


def test_a_claim_without_locks_returns_each_tenant_its_own_row(stores):
    store = stores()
    claimed = store.claim("job", ["a", "b", "c"], "manual", lock=False)
    rows = {r["id"]: r["tenant"] for r in store.runs()}
    assert {key: rows[lease.run_id] for key, lease in claimed.items()} == {"a": "a", "b": "b", "c": "c"}
