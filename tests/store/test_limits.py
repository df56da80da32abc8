"""The ``Limits`` contract (store/limits.py) on SQLite and PostgreSQL: grants never exceed the count in a
window, returned tokens stop counting, buckets are separate, a concurrency limit's slots are shared and a
dead holder's slot is freed."""
from __future__ import annotations

import subprocess
import sys

from pinstripe_jobs.store.state import StateStore


def test_grants_never_exceed_the_count_and_returned_tokens_count_no_more(state_url):
    store = StateStore(state_url)
    try:
        first = store.take_tokens("api", "k", 10, 60.0, 8, 0.02)
        assert first.tokens == 8
        second = store.take_tokens("api", "k", 10, 60.0, 8, 0.02)
        assert second.tokens == 2  # only what is left in the window
        third = store.take_tokens("api", "k", 10, 60.0, 1, 0.02)
        assert third.tokens == 0 and 59 < third.retry_in <= 60.1  # when the oldest tokens leave the window
        store.return_tokens(first.block, 5)
        assert store.limit_usage("api", "k", 60.0) == 5
        assert store.take_tokens("api", "k", 10, 60.0, 9, 0.02).tokens == 5
        assert store.take_tokens("api", "other", 10, 60.0, 3, 0.02).tokens == 3  # another bucket
    finally:
        store.close()


def test_a_second_store_sees_the_same_window(state_url):
    one, two = StateStore(state_url), StateStore(state_url)
    try:
        assert one.take_tokens("api", "", 3, 60.0, 2, 0.02).tokens == 2
        assert two.take_tokens("api", "", 3, 60.0, 2, 0.02).tokens == 1
        assert one.take_tokens("api", "", 3, 60.0, 1, 0.02).tokens == 0
    finally:
        one.close()
        two.close()


def test_a_concurrency_limits_slots_are_shared_and_a_dead_holders_is_freed(state_url):
    holder = subprocess.run([sys.executable, "-c", (
        "from pinstripe_jobs.store.state import StateStore\n"
        f"s = StateStore({state_url!r})\n"
        "assert s.take_limit_slot('smtp', '', 1) is not None\n"
        "import os; os._exit(0)\n")], capture_output=True, text=True, timeout=60)  # exits holding it
    assert holder.returncode == 0, holder.stderr
    store = StateStore(state_url)
    try:
        slot = store.take_limit_slot("smtp", "", 1)  # its holder is provably gone (a dead process here)
        assert slot is not None
        other = StateStore(state_url)
        try:
            assert other.take_limit_slot("smtp", "", 1) is None  # cap 1, and its holder is alive
            assert other.take_limit_slot("smtp", "eu", 1) is not None  # another key, another bucket
            store.release_slot(slot)
            assert other.take_limit_slot("smtp", "", 1) is not None
        finally:
            other.close()
    finally:
        store.close()
