"""The slots contract: at most ``cap`` per tenant across stores; released; a killed holder's slot is freed."""
from __future__ import annotations


def test_slots_are_capped_across_stores_and_released(stores):
    mine, other = stores(), stores()
    assert mine.take_slot(7, 2) == ("7", 0)
    assert other.take_slot(7, 2) == ("7", 1)
    assert other.take_slot(7, 2) is None and mine.take_slot(7, 2) is None  # both held by live holders
    assert mine.take_slot(8, 2) == ("8", 0)  # another tenant
    mine.release_slot(("7", 0))
    assert other.take_slot(7, 2) == ("7", 0)


def test_a_killed_holders_slot_is_taken_by_the_next(stores, killed):
    store = stores()
    killed("slot")
    assert store.take_slot(1, 1) == ("1", 0)


def test_ending_a_run_frees_its_slot_at_once(stores):
    from pinstripe_jobs.store import Lease

    mine, other = stores(), stores()
    slot = mine.take_slot(1, 1)
    lease = mine.begin_run("job", 1, "manual")
    mine.end_run(Lease(lease.run_id, slot), "succeeded", defer=True)
    assert other.take_slot(1, 1) == ("1", 0)
