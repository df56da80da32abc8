"""The dashboard's pages and JSON API (Starlette's test client over real runs, on SQLite and PostgreSQL
state), its store migration, and the ``pinstripe dashboard`` command as a real process."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.procs import SCRIPT, clean_env, modules_after, pid_alive, start, wait_for, wait_until

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
from starlette.testclient import TestClient  # noqa: E402

from pinstripe_jobs.config import load_settings  # noqa: E402
from pinstripe_jobs.store.schema import CURRENT  # noqa: E402
from pinstripe_jobs.web.app import Dashboard, create_app  # noqa: E402

TOKEN = "correct-horse-battery"

# Records every call in calls.log; even tenants fail until the file "fixed" exists.
SYNC_JOB = '''
"""Sync each tenant's data."""
from pathlib import Path

ROOT = Path(__file__).parent.parent

def run(ctx):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"sync {ctx.tenant.id}\\n")
    if ctx.tenant.id % 2 == 0 and not (ROOT / "fixed").exists():
        raise ValueError("bad data <script>alert(1)</script>")
'''

HOLD_JOB = '''
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent

def run(ctx):
    (ROOT / f"holding-{ctx.tenant.id}").write_text("1")
    deadline = time.time() + 60
    while not (ROOT / "release").exists() and time.time() < deadline:
        time.sleep(0.02)
'''


@pytest.fixture
def dash(tenant_project, state_url):
    """A project with a failing job run once, and a test client over its dashboard."""
    project = tenant_project
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')
    project.job("sync", SYNC_JOB)
    result = project.cli("run-background-job", "--name", "sync")
    assert result.exit_code == 1, result.output
    return project


def client_for(project, *, allow_actions=False, root_path="", token=TOKEN):
    settings = load_settings(project.root / "pinstripe.toml")
    dashboard = Dashboard(settings, token=token, allow_actions=allow_actions,
                          project_args=["--config", str(project.root / "pinstripe.toml")])
    return TestClient(create_app(dashboard, root_path), root_path=root_path)


def test_the_jobs_api_lists_jobs_with_their_last_invocation(dash):
    jobs = client_for(dash).get("/api/jobs").json()
    sync = next(job for job in jobs["jobs"] if job["name"] == "sync")
    assert sync["description"] == "Sync each tenant's data."
    assert sync["last_invocation"]["counts"] == {"failed": 2, "succeeded": 2}
    assert sync["last_invocation"]["status"] == "failed" and sync["last_invocation"]["exit_code"] == 1
    assert len(sync["durations_ms"]) == 1 and sync["durations_ms"][0] is not None


def test_the_tenant_grid_puts_failing_tenants_first_and_filters_and_pages(dash):
    client = client_for(dash)
    data = client.get("/api/jobs/sync").json()
    assert [(t["tenant"], t["status"]) for t in data["grid"]] == [(2, "failed"), (4, "failed"), (1, "succeeded"),
                                                                 (3, "succeeded")]
    assert data["grid_counts"] == {"failed": 2, "succeeded": 2}
    inv = data["invocations"][0]
    assert inv["trigger"] == "manual" and inv["counts"] == {"failed": 2, "succeeded": 2}
    assert inv["p50_ms"] is not None and inv["p50_ms"] <= inv["p95_ms"] <= inv["max_ms"]
    only = client.get("/api/jobs/sync/tenants", params={"status": "succeeded"}).json()
    assert [t["tenant"] for t in only["tenants"]] == [1, 3]
    assert [t["tenant"] for t in client.get("/api/jobs/sync/tenants", params={"q": "4"}).json()["tenants"]] == [4]
    seen, cursor = [], None
    while True:
        page = client.get("/api/jobs/sync/tenants",
                          params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        seen += [t["tenant"] for t in page["tenants"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [2, 4, 1, 3]
    bad = client.get("/api/jobs/sync/tenants", params={"status": "nonsense"})
    assert bad.status_code == 400 and "unknown status" in bad.json()["error"]
    assert client.get("/api/jobs/sync/tenants", params={"cursor": "zz"}).status_code == 400
    too_many = client.get("/api/runs", params={"limit": "0"})
    assert too_many.status_code == 400 and "limit must be a whole number from 1 to 500" in too_many.json()["error"]


def test_failures_are_grouped_by_error_with_traceback_and_since_when_kept(dash):
    client = client_for(dash)
    [group] = client.get("/api/failures").json()["failures"]
    assert group["job"] == "sync" and group["exception"] == "ValueError" and group["tenants"] == 2
    assert group["error"] == "ValueError: bad data <script>alert(1)</script>"
    assert group["sample_tenants"] == [2, 4]
    assert "sync.py" in group["traceback"] and 'raise ValueError("bad data' in group["traceback"]
    since_4 = {t["tenant"]: t for t in client.get("/api/jobs/sync").json()["grid"]}[4]["failing_since"]
    assert since_4 and group["since"] <= since_4
    # tenant 4 fails again; then tenant 2 recovers
    assert dash.cli("run-background-job", "--name", "sync", "--tenant", "4").exit_code == 1
    (dash.root / "fixed").write_text("1")
    assert dash.cli("run-background-job", "--name", "sync", "--tenant", "2").exit_code == 0
    [group] = client.get("/api/failures").json()["failures"]
    assert group["sample_tenants"] == [4] and group["since"] == since_4  # failing since its first failure
    grid = {t["tenant"]: t for t in client.get("/api/jobs/sync").json()["grid"]}
    assert grid[2]["status"] == "succeeded" and grid[2]["failing_since"] is None
    assert len(client.get("/api/jobs/sync").json()["invocations"]) == 3


def test_runs_are_cursor_paged_newest_first_and_each_has_its_traceback(dash):
    client = client_for(dash)
    failed = client.get("/api/runs", params={"job": "sync", "status": "failed"}).json()["runs"]
    assert sorted(r["tenant"] for r in failed) == [2, 4]
    ids, cursor = [], None
    while True:
        page = client.get("/api/runs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        ids += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)
    run = client.get(f"/api/runs/{failed[0]['id']}").json()
    assert run["status"] == "failed" and "Traceback" in run["traceback"] and run["invocation"]
    assert client.get("/api/runs/999999").status_code == 404
    assert client.get("/api/runs", params={"tenant": "2"}).json()["runs"][0]["tenant"] == 2


def test_pages_render_job_text_literally(dash):
    client = client_for(dash)
    for path in ("/", "/jobs/sync", "/failures", "/runs", "/running", "/ticks"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "<script>alert(1)" not in response.text, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "bad data &lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/failures").text
    assert client.get("/jobs/nope").status_code == 404
    assert "No job named" in client.get("/jobs/nope").text


def test_links_carry_the_root_path_behind_a_reverse_proxy(dash):
    client = client_for(dash, root_path="/jobs")  # the test client sends the full path, prefix included
    html = client.get("/jobs/jobs/sync").text
    assert 'href="/jobs/static/dashboard.css"' in html and 'href="/jobs/failures"' in html
    assert 'href="/jobs/runs/' in html
    assert client.get("/jobs/static/dashboard.css").status_code == 200


def test_the_served_root_path_is_what_a_stripping_proxy_forwards_to(dash):
    proc, url = serve(dash, "--root-path", "/jobs/")
    with urllib.request.urlopen(url + "jobs/sync", timeout=10) as response:  # what the proxy forwards
        html = response.read().decode()
    assert 'href="/jobs/failures"' in html and 'src="/jobs/static/live.js"' in html
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0


def test_running_runs_show_host_and_pid_and_a_killed_one_reads_abandoned(dash):
    dash.job("hold", HOLD_JOB)
    proc = start(dash, "run-background-job", "--name", "hold", "--tenant", "1")
    wait_for(dash.root / "holding-1")
    client = client_for(dash)
    running = wait_until(lambda: client.get("/api/running").json()["running"], what="a running run")
    assert [(r["job"], r["tenant"], r["status"], r["pid"]) for r in running] == [("hold", 1, "running", proc.pid)]
    assert running[0]["host"] == os.uname().nodename and running[0]["elapsed_s"] >= 0
    assert "hold" in client.get("/running").text
    proc.kill()  # kill -9: the row stays 'running', its holder is gone
    proc.communicate()
    [row] = client.get("/api/running").json()["running"]
    assert row["status"] == "abandoned"
    assert client.get("/api/jobs/hold").json()["invocations"][0]["status"] == "abandoned"


def test_the_runs_of_a_killed_invocation_reach_the_grid_with_the_next_invocation(dash):
    dash.job("hold", HOLD_JOB.replace("(ROOT / f\"holding-{ctx.tenant.id}\").write_text(\"1\")",
                                      "(ROOT / f\"holding-{ctx.tenant.id}\").write_text(\"1\")\n"
                                      "    if ctx.tenant.id != 4:\n"
                                      "        return"))
    proc = start(dash, "run-background-job", "--name", "hold")
    wait_for(dash.root / "holding-4")  # tenants 1, 2, 3 ended; 4 holds
    proc.kill()  # kill -9 before the invocation ended (its ends may not be folded into the grid yet)
    proc.communicate()
    (dash.root / "release").write_text("1")
    assert dash.cli("run-background-job", "--name", "hold", "--tenant", "4").exit_code == 0
    client = client_for(dash)
    data = client.get("/api/jobs/hold").json()
    assert [(t["tenant"], t["status"]) for t in data["grid"]] == [(1, "succeeded"), (2, "succeeded"),
                                                                 (3, "succeeded"), (4, "succeeded")]
    killed = data["invocations"][1]
    assert killed["status"] == "abandoned" and killed["ended_at"] is not None
    assert killed["counts"] == {"abandoned": 1, "succeeded": 3}


def test_ticks_show_what_the_scheduler_fired(dash):
    dash.job("nightly", 'schedule = "0 3 * * *"\n\ndef run(ctx):\n    pass\n')
    from tests.procs import run

    result = run(dash, "run-due-jobs", "--at", "2026-11-29T03:00:10+00:00")
    assert result.returncode == 0, result.stderr
    ticks = client_for(dash).get("/api/ticks").json()["ticks"]
    assert [(t["job"], t["kind"], t["state"]) for t in ticks] == [("nightly", "fired", "done")]
    assert ticks[0]["tick"].startswith("2026-11-29T03:00:00")
    invocation = client_for(dash).get("/api/jobs/nightly").json()["invocations"][0]
    assert invocation["trigger"] == "schedule" and invocation["tick"].startswith("2026-11-29T03:00:00")


def test_actions_are_off_by_default(dash):
    client = client_for(dash)
    assert "Run now" not in client.get("/jobs/sync").text
    response = client.post("/api/jobs/sync/run", json={"only_failed": True},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403 and "--allow-actions" in response.json()["error"]
    assert client.post("/jobs/sync/run", data={"only_failed": "1"}).status_code == 403


def test_actions_need_the_token_and_a_same_origin_form(dash):
    client = client_for(dash, allow_actions=True)
    assert "Run now" not in client.get("/jobs/sync").text  # not signed in
    assert client.post("/api/jobs/sync/run", json={}).status_code == 401
    assert client.post("/api/jobs/sync/run", json={},
                       headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.post("/login", data={"token": "wrong"}, headers={"Origin": "http://testserver"}).status_code == 403
    signed = client.post("/login", data={"token": TOKEN}, headers={"Origin": "http://testserver"},
                         follow_redirects=False)
    assert signed.status_code == 303 and "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    html = client.get("/jobs/sync").text
    assert "Run now" in html and "Rerun failed tenants" in html
    csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    evil = client.post("/jobs/sync/run", data={"csrf": csrf, "only_failed": "1"},
                       headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    no_token = client.post("/jobs/sync/run", data={"only_failed": "1"}, headers={"Origin": "http://testserver"})
    assert no_token.status_code == 403
    assert len(dash.log()) == 4  # the job's own log: nothing ran beyond the first run


def test_rerun_failed_tenants_through_the_api_runs_only_them_and_is_recorded(dash):
    client = client_for(dash, allow_actions=True)
    (dash.root / "fixed").write_text("1")
    before = len(dash.log())
    response = client.post("/api/jobs/sync/run", json={"only_failed": True},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 202, response.text
    pid = response.json()["pid"]
    wait_until(lambda: not pid_alive(pid), timeout=60, what="the rerun to finish")
    assert sorted(dash.log()[before:]) == ["sync 2", "sync 4"]  # the job's own log: only the failed ones, once
    grid = client.get("/api/jobs/sync").json()
    assert grid["grid_counts"] == {"succeeded": 4}
    assert grid["invocations"][0]["trigger"] == "dashboard"


def test_a_store_from_before_the_dashboard_is_migrated_without_losing_history(tmp_path):
    from pinstripe_jobs.store.reads import HistoryQueries
    from pinstripe_jobs.store.state import StateStore

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:  # the version-3 schema, as the previous release left it
        db.executescript("""
            CREATE TABLE pinstripe_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, tenant TEXT,
                trigger TEXT NOT NULL, tick TEXT, attempt INTEGER NOT NULL DEFAULT 1, started_at TEXT NOT NULL,
                ended_at TEXT, status TEXT NOT NULL, error TEXT, host TEXT, pid INTEGER, pid_token TEXT,
                session INTEGER, lock_key TEXT, heartbeat_at TEXT, lease TEXT, tenant_kind TEXT);
            CREATE TABLE pinstripe_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE pinstripe_ticks (job TEXT NOT NULL, tick TEXT NOT NULL, claimed_at TEXT NOT NULL, host TEXT,
                pid INTEGER, pid_token TEXT, heartbeat_at TEXT, finished_at TEXT, PRIMARY KEY (job, tick));
            CREATE TABLE pinstripe_slots (tenant TEXT NOT NULL, slot INTEGER NOT NULL, host TEXT, pid INTEGER,
                pid_token TEXT, heartbeat_at TEXT, PRIMARY KEY (tenant, slot));
            INSERT INTO pinstripe_meta VALUES ('schema', '3'), ('pruned_at', '2999-01-01T00:00:00+00:00');
        """)
        rows = [("sync", "1", "int", "manual", "2026-11-28T10:00:00+00:00", "failed", "ValueError: old"),
                ("sync", "1", "int", "manual", "2026-11-28T11:00:00+00:00", "succeeded", None),
                ("sync", "2", "int", "manual", "2026-11-28T11:00:01+00:00", "failed", "ValueError: old")]
        db.executemany("INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, started_at, ended_at, status, "
                       "error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [(*r[:5], r[4], *r[5:]) for r in rows])
    store = StateStore(f"sqlite:///{path}")
    history = HistoryQueries(store)
    assert len(store.runs(limit=None)) == 3  # nothing lost
    grid, _ = history.grid("sync")
    assert [(t["tenant"], t["status"]) for t in grid] == [(2, "failed"), (1, "succeeded")]
    assert history.failures()[0]["sample_tenants"] == [2]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM pinstripe_meta WHERE key = 'schema'").fetchone()[0] == str(CURRENT)
        plan = " ".join(str(r) for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM pinstripe_latest WHERE job = 'sync' ORDER BY rank, tenant_key LIMIT 51"))
    assert "pinstripe_latest_rank" in plan and "TEMP B-TREE" not in plan  # one page, read in index order
    store.close()


# -- the command ---------------------------------------------------------------------------------------
def serve(project, *args, env=None):
    proc = start(project, "dashboard", "--port", "0", *args, env=env)
    line = proc.stderr.readline()
    assert "Dashboard on http://" in line, line + proc.stderr.read()
    return proc, line.split("Dashboard on ", 1)[1].split(" ", 1)[0]


def test_the_command_serves_until_sigterm(dash):
    proc, url = serve(dash)
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "api/jobs", timeout=10) as response:
        assert any(job["name"] == "sync" for job in json.load(response)["jobs"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_the_command_refuses_actions_without_a_token(tenant_project):
    result = subprocess.run([str(SCRIPT), "dashboard", "--allow-actions"], cwd=tenant_project.root,
                            env=clean_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "PINSTRIPE_DASHBOARD_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_the_command_says_when_the_port_is_taken(tenant_project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([str(SCRIPT), "dashboard", "--port", str(port)], cwd=tenant_project.root,
                                env=clean_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_the_command_rejects_a_bad_root_path(tenant_project):
    result = tenant_project.cli("dashboard", "--root-path", "jobs?x")
    assert result.exit_code == 2 and "URL path prefix" in result.output


def test_a_missing_extra_is_named_with_the_install_command(tenant_project):
    code = ("import sys\nsys.modules['starlette'] = None\nfrom pinstripe_jobs.cli import main\n"
            "main(['dashboard', '--port', '0'])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tenant_project.root, env=clean_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert "pip install 'pinstripe-jobs[dashboard]'" in result.stderr and "Traceback" not in result.stderr


def test_other_commands_never_import_the_dashboard_or_celery(tenant_project):
    imported = modules_after(tenant_project.root, ["run-background-job", "--name", "record"],
                             "m.split('.')[0] in ('starlette', 'uvicorn', 'jinja2', 'celery', 'kombu') or "
                             "m.startswith(('pinstripe_jobs.web', 'pinstripe_jobs.fleet.worker', "
                             "'pinstripe_jobs.fleet.executor'))")
    assert imported == []
    assert len(tenant_project.log()) == 4
