"""The audit trail contract: appended, read newest first, filtered, secrets masked, pruned with history."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.store.conftest import T0


def test_actions_are_read_back_newest_first_with_their_details(stores):
    mine, other = stores(), stores()
    mine.audit("run", who="ann@host", job="sync", details={"args": ["a"], "tenants": [1, 2]})
    mine.audit("pause", who="ann@host", job="sync", details={"reason": "incident"})
    mine.audit("cancel", who="bob@dash", source="dashboard", details={"invocation": "inv-1"})
    trail = other.audit_trail()
    assert [row["action"] for row in trail] == ["cancel", "pause", "run"]
    assert trail[0]["source"] == "dashboard" and trail[0]["job"] is None and trail[0]["who"] == "bob@dash"
    assert trail[2]["details"] == {"args": ["a"], "tenants": [1, 2]}
    assert [row["action"] for row in other.audit_trail(job="sync")] == ["pause", "run"]
    assert [row["action"] for row in other.audit_trail(action="run")] == ["run"]
    assert len(other.audit_trail(limit=1)) == 1


def test_secrets_in_details_are_masked_and_an_unknown_source_refused(stores):
    store = stores()
    store.audit("run", who="ann@host", job="sync", details={"url": "postgresql://u:hunter2@db/x"})
    assert "hunter2" not in str(store.audit_trail()[0]["details"])
    with pytest.raises(ValueError):
        store.audit("run", who="ann@host", source="email")


def test_old_actions_and_cancel_requests_are_pruned_with_history(stores):
    clock = [T0]
    store = stores(clock=lambda: clock[0], history_days=1)
    store.audit("run", who="ann@host", job="sync")
    store.request_cancel("inv-old", who="ann@host")
    clock[0] = T0 + timedelta(days=2)
    store.audit("pause", who="ann@host", job="sync")
    store.prune()
    assert [row["action"] for row in store.audit_trail()] == ["pause"]
    assert store.cancel_request("inv-old") is None


def test_details_of_any_shape_are_read_back_as_json(stores):
    """Written without the json module (a manual run's start-up): still JSON a reader decodes."""
    from pinstripe_jobs.errors import ExitCode

    store = stores()
    details = {"text": 'quote " backslash \\ newline \n bell \x07 é', "n": [1, 2.5, None, True, False],
               "code": ExitCode.CANCELLED, "nested": {"b": 1, "a": [("t", 2)]}, 7: float("inf")}
    store.audit("run", who="ann@host", job="sync", details=details)
    assert store.audit_trail()[0]["details"] == {
        "text": 'quote " backslash \\ newline \n bell \x07 é', "n": [1, 2.5, None, True, False], "code": 5,
        "nested": {"a": [["t", 2]], "b": 1}, "7": "inf"}
