"""StateStore satisfies every contract of store/contracts.py (mypy checks the signatures statically in
state.py; this checks the objects at run time, on both databases)."""
from __future__ import annotations

import pytest

from pinstripe_jobs.store import contracts
from pinstripe_jobs.store.reads import HistoryQueries

KINDS = [contracts.Runs, contracts.Claims, contracts.Ticks, contracts.Slots, contracts.Invocations,
         contracts.LatestStatus, contracts.Meta, contracts.Maintenance, contracts.History, contracts.Store]


@pytest.mark.parametrize("contract", KINDS, ids=lambda c: c.__name__)
def test_the_store_satisfies_each_contract(stores, contract):
    assert isinstance(stores(), contract)


def test_an_object_missing_a_method_does_not_satisfy_the_contract():
    class Partial:
        def remember(self, key, value):
            return None

    assert not isinstance(Partial(), contracts.Meta)


def test_every_contract_method_documents_its_guarantees():
    for contract in KINDS:
        for name, member in vars(contract).items():
            if callable(member) and not name.startswith("_"):
                assert member.__doc__ and len(member.__doc__) > 20, f"{contract.__name__}.{name}"


def test_the_dashboard_reads_through_the_public_read_api_only(stores):
    store = stores()
    store.end_run(store.begin_run("job", 1, "manual"), "failed", "ValueError: x")
    queries = HistoryQueries(store)
    items, _ = queries.runs(job="job")
    assert [(r["tenant"], r["status"]) for r in items] == [(1, "failed")]
    assert queries.run(items[0]["id"])["error"] == "ValueError: x"


def test_no_module_asks_which_database_and_the_reads_use_no_private_store_name():
    from pathlib import Path

    import pinstripe_jobs

    package = Path(pinstripe_jobs.__file__).parent
    for path in package.rglob("*.py"):
        if path.name not in ("dialects.py", "schema.py"):
            text = path.read_text()
            assert "is_sqlite" not in text and "is_postgres" not in text, path
    reads = (package / "store" / "reads.py").read_text()
    assert "store._" not in reads
