"""The dashboard's steering through Starlette's test client over real runs (SQLite and PostgreSQL state): an
invocation's page and JSON, cancel through ``pinstripe cancel`` as the dashboard (audited as such), the
refusals of actions not allowed, paused jobs on the jobs page, and the audit page."""
from __future__ import annotations

import json

from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.store.state import StateStore
from tests.procs import start, wait_for, wait_until
from tests.test_dashboard import HOLD_JOB
from tests.web.conftest import SAME_ORIGIN, TOKEN, client_for


def running_invocation(project, url: str, job: str) -> str:
    def find() -> list:
        store = StateStore(url)
        try:
            return store.query("SELECT id FROM pinstripe_invocations WHERE job = ? AND ended_at IS NULL", (job,))
        finally:
            store.close()

    return wait_until(find, 30, "the invocation")[0][0]


def signed_in(project):
    client = client_for(project, allow_actions=True)
    client.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN)
    return client


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_an_invocation_is_shown_cancelled_from_the_dashboard_and_audited(dash, state_url):
    dash.job("hold", HOLD_JOB)
    err_path = dash.root / "run.err"
    with open(err_path, "w") as err_file:
        proc = start(dash, "run-background-job", "--name", "hold", "--json", stderr=err_file)
    wait_for(dash.root / "holding-1", timeout=30)
    invocation = running_invocation(dash, state_url, "hold")
    client = signed_in(dash)
    shown = client.get(f"/api/invocations/{invocation}").json()
    assert (shown["job"], shown["status"], shown["live"], shown["cancel"]) == ("hold", "running", True, None)
    html = client.get(f"/invocations/{invocation}").text
    assert 'id="cancel"' in html and 'id="resume"' not in html and "data-live-invocation" in html

    response = client.post(f"/invocations/{invocation}/cancel", data={"csrf": csrf_of(html), "reason": "oops"},
                           headers=SAME_ORIGIN, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("?cancelled=0")
    wait_until(lambda: "no more tenants start" in err_path.read_text(), 15, "the run to see the cancel")
    (dash.root / "release").write_text("1")
    out, _ = proc.communicate(timeout=30)
    err = err_path.read_text()
    assert proc.returncode == ExitCode.CANCELLED, err
    statuses = {r["tenant"]: r["status"] for r in json.loads(out)["runs"]}
    assert statuses == {1: "succeeded", 2: "cancelled", 3: "cancelled", 4: "cancelled"}
    assert dash.log().count("sync 1") == 1 and not (dash.root / "holding-2").exists()  # none started after

    shown = client.get(f"/api/invocations/{invocation}").json()
    assert shown["status"] == "cancelled" and shown["resumable"] is True
    assert shown["cancel"]["who"] == "dashboard (testclient)" and shown["cancel"]["reason"] == "oops"
    html = client.get(f"/invocations/{invocation}").text
    assert 'id="resume"' in html and 'id="cancel"' not in html and f"pinstripe resume {invocation}" in html
    coverage = shown["coverage"]  # which tenants: computed again from the recorded selection, once it stopped
    assert set(coverage["not_run"]["first"]) | set(coverage["abandoned"]["first"]) == {"2", "3", "4"}
    assert coverage["not_run"]["count"] + coverage["abandoned"]["count"] == 3
    assert ", ".join(coverage["not_run"]["first"]) in html
    actions = client.get("/api/audit").json()["actions"]
    assert [(a["action"], a["source"], a["who"]) for a in actions][0] == ("cancel", "dashboard",
                                                                         "dashboard (testclient)")
    assert actions[0]["details"] == {"invocation": invocation, "reason": "oops"}
    assert actions[1]["action"] == "run" and actions[1]["source"] == "cli"
    assert "dashboard (testclient)" in client.get("/audit").text


def test_cancel_and_resume_are_refused_without_sign_in_or_csrf(dash, state_url):
    store = StateStore(state_url)
    try:
        invocation = store.query("SELECT id FROM pinstripe_invocations WHERE job = 'sync'")[0][0]
    finally:
        store.close()
    read_only = client_for(dash)
    assert read_only.post(f"/invocations/{invocation}/cancel", headers=SAME_ORIGIN).status_code == 403
    client = client_for(dash, allow_actions=True)
    assert client.post(f"/invocations/{invocation}/resume", headers=SAME_ORIGIN).status_code == 401
    client.post("/login", data={"token": TOKEN}, headers=SAME_ORIGIN)
    assert client.post(f"/invocations/{invocation}/cancel", data={"csrf": "wrong"},
                       headers=SAME_ORIGIN).status_code == 403
    html = client.get(f"/invocations/{invocation}").text
    assert 'id="resume"' not in html and 'id="cancel"' not in html  # failed and ended: neither applies
    csrf = csrf_of(client.get("/jobs/sync").text)
    refused = client.post(f"/invocations/{invocation}/resume", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert refused.status_code == 400 and "only a crashed, interrupted or cancelled one" in refused.text
    assert client.get("/invocations/no-such-id").status_code == 404
    assert [a["action"] for a in client.get("/api/audit").json()["actions"]] == ["run"]  # the first run only


def test_the_jobs_page_shows_what_is_paused(dash):
    assert dash.cli("pause", "sync", "--reason", "incident 42").exit_code == 0
    assert dash.cli("pause", "greet", "--tenant", "3").exit_code == 0
    client = client_for(dash)
    html = client.get("/").text
    assert 'id="paused-sync"' in html and "incident 42" in html and "paused for tenant 3" in html
    jobs = {job["name"]: job for job in client.get("/api/jobs").json()["jobs"]}
    assert jobs["sync"]["paused"]["reason"] == "incident 42" and jobs["greet"]["paused"] is None
    assert [p["tenant"] for p in jobs["greet"]["paused_tenants"]] == ["3"]


def test_the_api_cancels_and_resumes_an_invocation(dash, state_url):
    from tests.procs import pid_alive
    from tests.web.conftest import BEARER

    dash.job("hold", HOLD_JOB)
    err_path = dash.root / "run.err"
    with open(err_path, "w") as err_file:
        proc = start(dash, "run-background-job", "--name", "hold", stderr=err_file)
    wait_for(dash.root / "holding-1", timeout=30)
    invocation = running_invocation(dash, state_url, "hold")
    client = client_for(dash, allow_actions=True)
    assert client.post(f"/api/invocations/{invocation}/cancel", json={"reason": "api"}).status_code == 401
    response = client.post(f"/api/invocations/{invocation}/cancel", json={"reason": "from the API"}, headers=BEARER)
    assert response.status_code == 202 and response.json()["cancelled"] is True
    wait_until(lambda: "no more tenants start" in err_path.read_text(), 15, "the run to see the cancel")
    (dash.root / "release").write_text("1")
    assert proc.wait(timeout=30) == ExitCode.CANCELLED
    assert [p.name for p in sorted(dash.root.glob("holding-*"))] == ["holding-1"]

    resumed = client.post(f"/api/invocations/{invocation}/resume", headers=BEARER)
    assert resumed.status_code == 202, resumed.text
    wait_until(lambda: not pid_alive(resumed.json()["pid"]), timeout=60, what="the resume to finish")
    assert [p.name for p in sorted(dash.root.glob("holding-*"))] == [f"holding-{n}" for n in range(1, 5)]
    shown = client.get(f"/api/invocations/{invocation}").json()
    assert shown["status"] == "succeeded" and shown["counts"] == {"succeeded": 4}, shown
    actions = client.get("/api/audit?job=hold").json()["actions"]
    assert [(a["action"], a["source"]) for a in actions] == [("resume", "api"), ("cancel", "api"), ("run", "cli")]
    again = client.post(f"/api/invocations/{invocation}/resume", headers=BEARER)
    assert again.status_code == 400 and "only a crashed, interrupted or cancelled one" in again.json()["error"]
