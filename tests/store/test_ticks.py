"""The ticks contract: claimed once, held until finished, an orphan when its holder dies, taken over once."""
from __future__ import annotations

from datetime import timedelta

from tests.store.conftest import T0


def test_a_tick_is_claimed_once_across_stores(stores):
    mine, other = stores(), stores()
    assert mine.claim_tick("job", T0) is True
    assert other.claim_tick("job", T0) is False and mine.claim_tick("job", T0) is False
    assert other.claim_tick("job", T0 + timedelta(minutes=1), kind="caught_up") is True
    assert mine.last_claimed_tick("job") == T0 + timedelta(minutes=1)
    assert mine.last_claimed_tick("other") is None


def test_a_killed_holders_tick_is_an_orphan_taken_over_once(stores, killed):
    mine, other = stores(), stores()
    killed("tick", T0.isoformat())
    assert mine.orphan_ticks() == [("job", T0)]
    assert mine.take_over_tick("job", T0) is True
    assert other.take_over_tick("job", T0) is False  # its new holder is alive
    assert other.orphan_ticks() == [] and mine.orphan_ticks() == []  # held by mine (not offered to itself)
    mine.finish_tick("job", T0)
    assert other.take_over_tick("job", T0) is False  # finished: never resumed


def test_a_released_tick_is_offered_to_the_next_scheduler(stores):
    mine, other = stores(), stores()
    assert mine.claim_tick("job", T0)
    assert other.orphan_ticks() == []  # its holder is alive
    mine.release_tick("job", T0)
    assert other.orphan_ticks() == [("job", T0)]
    assert other.take_over_tick("job", T0) is True


def test_tick_tenants_are_those_with_a_started_run(stores):
    store = stores()
    store.end_run(store.begin_run("job", 1, "schedule", tick=T0), "succeeded")
    store.begin_run("job", 2, "schedule", tick=T0)
    store.claim("job", [3], "schedule", tick=T0)
    store.begin_run("job", 4, "schedule", tick=T0 + timedelta(minutes=1))
    assert store.tick_tenants("job", T0) == {"1", "2"}
