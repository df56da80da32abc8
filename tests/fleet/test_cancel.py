"""``pinstripe cancel`` of an invocation running on the fleet (real Celery workers, real brokers, PostgreSQL
state): the invoking process exits 5 within seconds, no tenant starts after the cancel, the running one
finishes, the rest are recorded cancelled with the reason. Counted from the job's own log."""
from __future__ import annotations

import json
import subprocess
import time

from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.store.state import StateStore
from tests.procs import SCRIPT, STARTED, clean_env, run, wait_for, wait_until
from tests.test_fleet import _stop_workers, broker, calls, fleet, worker  # noqa: F401 - fixtures


def test_cancel_stops_a_fleet_invocation(fleet):  # noqa: F811
    (fleet.root / "hold").write_text("1")  # batch [1, 2]: tenant 1 holds until "release"
    worker(fleet, "--concurrency", "1")
    cli = subprocess.Popen([str(SCRIPT), "run-background-job", "--name", "work", "--executor", "celery", "--json"],
                           cwd=fleet.root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(cli)
    wait_for(fleet.root / "holding-1", timeout=60)
    url = fleet.root.joinpath("pinstripe.toml").read_text().split("\"")[3]  # state = "..."
    store = StateStore(url)
    try:
        invocation = store.query("SELECT id FROM pinstripe_invocations WHERE job = 'work' AND ended_at IS NULL")[0][0]
    finally:
        store.close()
    cancelled = run(fleet, "cancel", invocation, "--reason", "stop the fleet", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    who = json.loads(cancelled.stdout)["who"]
    (fleet.root / "release").write_text("1")  # the running tenant finishes (its grace period)
    asked_at = time.time()
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == ExitCode.CANCELLED, err
    assert time.time() - asked_at < 15
    assert [c[1] for c in calls(fleet) if c[0] == "start"] == ["1"]  # nothing started after the cancel
    assert [c[1] for c in calls(fleet) if c[0] == "end"] == ["1"]
    doc = json.loads(out)
    statuses = {r["tenant"]: r["status"] for r in doc["runs"]}
    assert statuses == {1: "succeeded", **{t: "cancelled" for t in range(2, 9)}}
    wait_until(lambda: not json.loads(run(fleet, "history", "--json", "--status", "running").stdout)["runs"],
               timeout=60, what="the worker to finish its batch")
    history = json.loads(run(fleet, "history", "--json", "--limit", "100").stdout)["runs"]
    recorded = {r["tenant"]: (r["status"], r["error"]) for r in history}
    assert sorted(r["tenant"] for r in history) == list(range(1, 9))  # every tenant recorded, once
    assert recorded[1][0] == "succeeded"
    assert {recorded[t] for t in range(2, 9)} == {("cancelled", f"cancelled by {who}: stop the fleet")}
