"""The cancel requests contract: the first request stands, any store on the database sees it."""
from __future__ import annotations

from pinstripe_jobs.store.cancels import cancel_reason


def test_the_first_request_stands_and_is_seen_elsewhere(stores):
    mine, other = stores(), stores()
    assert other.cancel_request("inv-1") is None
    assert mine.request_cancel("inv-1", who="ann@host", reason="wrong arguments") is True
    assert other.request_cancel("inv-1", who="bob@host", reason="later") is False
    request = other.cancel_request("inv-1")
    assert request is not None and (request["who"], request["reason"]) == ("ann@host", "wrong arguments")
    assert cancel_reason(request) == "cancelled by ann@host: wrong arguments"
    assert other.cancel_request("inv-2") is None


def test_polling_a_request_does_not_commit_waiting_run_ends(stores):
    """Polled while a run writes: the read leaves the deferred ends for their own commit."""
    store = stores()
    lease = store.begin_run("job", 1, "manual")
    store.end_run(lease, "succeeded", defer=True)
    assert store.cancel_request("inv-1") is None
    assert store.engine.deferred  # still waiting for the commit it rides on
    store.flush()
    assert store.runs(job="job")[0]["status"] == "succeeded"
