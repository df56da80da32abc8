"""The public read API: runs as shown (abandoned, int tenants), last runs, tenants to rerun, query."""
from __future__ import annotations

from pinstripe_jobs.store import HOST


def test_present_shows_a_gone_holders_run_abandoned(stores):
    store = stores()
    row = {"status": "running", "host": HOST, "pid": 2 ** 22 + 12345, "pid_token": "x", "ended_at": None,
           "heartbeat_at": "2026-11-29T10:00:00+00:00", "tenant_kind": "int", "tenant": "7"}
    assert store.holder_alive(HOST, row["pid"], "x", None) is False
    shown = store.present(row)
    assert (shown["status"], shown["ended_at"], shown["tenant"]) == ("abandoned", "2026-11-29T10:00:00+00:00", 7)
    assert "pid_token" not in shown and "tenant_kind" not in shown
    assert store.holder_alive(HOST, store.engine.pid, store.engine.token, None) is True
    assert store.holder_alive(HOST, None, None, None) is False  # released


def test_runs_last_runs_and_failed_tenants(stores):
    store = stores()
    for tenant, status in [(1, "succeeded"), (2, "failed"), (1, "failed"), (3, "skipped")]:
        store.end_run(store.begin_run("job", tenant, "manual", lock=False), status)
    store.end_run(store.begin_run("other", "a", "schedule"), "succeeded")
    assert [r["tenant"] for r in store.runs(job="job", status="failed")] == [1, 2]
    assert store.last_runs()["other"]["tenant"] == "a"
    assert sorted(store.failed_tenants("job")) == ["1", "2", "3"]
    assert store.query("SELECT count(*) FROM pinstripe_runs WHERE job = ?", ("job",)) == [(4,)]
