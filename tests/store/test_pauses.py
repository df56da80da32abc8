"""The pauses contract: a pause is seen by every store on the database, kept as first set, lifted once."""
from __future__ import annotations


def test_a_pause_is_seen_by_another_store_and_lifted_once(stores):
    mine, other = stores(), stores()
    assert mine.pause("sync", who="ann@host", reason="incident 42") is True
    assert mine.pause("sync", who="bob@host", reason="again") is False  # kept as first set
    seen = other.paused("sync")
    assert seen is not None and (seen["who"], seen["reason"], seen["tenant"]) == ("ann@host", "incident 42", None)
    assert other.paused("report") is None
    assert other.unpause("sync") is True and mine.unpause("sync") is False
    assert mine.paused("sync") is None


def test_a_tenant_pause_is_apart_from_the_whole_jobs(stores):
    store = stores()
    assert store.pause("sync", 7, who="ann@host") is True
    assert store.pause("sync", "eu-1", who="ann@host", reason="migrating") is True
    assert store.paused("sync") is None  # the job itself is not paused
    assert sorted(store.paused_tenants("sync")) == ["7", "eu-1"]
    assert store.paused_tenants("sync")["eu-1"]["reason"] == "migrating"
    store.pause("sync", who="ann@host")
    assert [row["tenant"] for row in store.pauses("sync")] == [None, "7", "eu-1"]
    assert store.pauses("other") == [] and len(store.pauses()) == 3
    assert store.unpause("sync", 7) is True and list(store.paused_tenants("sync")) == ["eu-1"]
    assert store.paused("sync") is not None


def test_a_pause_survives_reopening(stores):
    stores().pause("sync", who="ann@host", reason="r")
    assert stores().paused("sync")["reason"] == "r"
