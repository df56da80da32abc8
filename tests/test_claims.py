"""Tenants claimed a page ahead (the speed issue): what a kill -9 leaves, counted from the job's own log,
and connections that stay few under --concurrency 200."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.procs import history, run, start, wait_for, wait_until

# Logs "start T" / "end T"; at tenant STOP_AT it writes started-T and waits for a release file.
BLOCKING_JOB = '''
import time
from pathlib import Path
ROOT = Path(__file__).parent.parent
STOP_AT = 10

def log(text):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(text + "\\n")

def run(ctx):
    log(f"start {ctx.tenant.id}")
    if ctx.tenant.id == STOP_AT and not (ROOT / "release").exists():
        (ROOT / f"started-{ctx.tenant.id}").write_text("1")
        deadline = time.time() + 60
        while not (ROOT / "release").exists() and time.time() < deadline:
            time.sleep(0.02)
    log(f"end {ctx.tenant.id}")
'''


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_kill_9_leaves_claimed_tenants_queued_and_only_failed_runs_each_once(project, store, request):
    state = f'state = "{request.getfixturevalue("pg_schema_url")}"\n' if store == "postgres" else ""
    project.json_tenants([{"id": i} for i in range(1, 41)])
    project.config(f'tenants = "tenants.json"\n{state}')
    project.job("work", BLOCKING_JOB)
    proc = start(project, "run-background-job", "--name", "work")
    wait_for(project.root / "started-10")
    proc.send_signal(signal.SIGKILL)  # no cleanup code runs
    proc.communicate()
    starts = [line for line in project.log() if line.startswith("start")]
    assert starts == [f"start {i}" for i in range(1, 11)]
    newest = {r["tenant"]: r["status"] for r in reversed(history(project, "--job", "work"))}
    assert {t: newest[t] for t in range(1, 10)} == {t: "succeeded" for t in range(1, 10)}  # ends committed
    assert newest[10] == "abandoned"  # it was running: its holder is gone
    queued = sorted(t for t, status in newest.items() if status == "queued")
    assert queued and queued == list(range(11, 11 + len(queued)))  # claimed ahead, never started
    assert set(newest) == set(range(1, 11 + len(queued)))  # nothing else was touched
    (project.root / "release").write_text("1")
    again = run(project, "run-background-job", "--name", "work", "--only-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    rerun = [line for line in project.log()[len(starts) * 2 - 1:] if line.startswith("start")]
    assert sorted(rerun, key=lambda line: int(line.split()[1])) == [f"start {t}" for t in [10, *queued]]
    rows = history(project, "--job", "work")
    for tenant in queued:  # the claim's row ended skipped when its lock was taken over; then one real run
        mine = [r for r in rows if r["tenant"] == tenant]
        assert [r["status"] for r in mine] == ["succeeded", "skipped"], mine
        assert mine[1]["error"].startswith("never started")


@pytest.mark.parametrize("job", ["plain", "async"])
def test_connections_stay_few_under_concurrency_200(project, pg_url, pg_schema_url, job):
    """400 tenants, 200 at a time, PostgreSQL tenants and state: the tool holds a handful of connections
    (the state store's and the tenant source's), never one per running tenant."""
    import psycopg

    app = f"conc{os.getpid()}{job}"
    tenants_url = f"{pg_schema_url}&application_name={app}"
    with psycopg.connect(libpq(tenants_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO tenants SELECT g FROM generate_series(1, 400) g")
    project.config(f'tenants = "{tenants_url}"\nstate = "{tenants_url}"\n')
    body = "import asyncio\n\nasync def run(ctx):\n    await asyncio.sleep(0.2)\n" if job == "async" else \
        "import time\n\ndef run(ctx):\n    time.sleep(0.2)\n"
    project.job("work", body)
    proc = start(project, "run-background-job", "--name", "work", "--concurrency", "200")
    seen = []
    with psycopg.connect(libpq(pg_url), autocommit=True) as admin:
        def count() -> int:
            return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                 (app,)).fetchone()[0]

        while proc.poll() is None:
            seen.append(count())
            time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err
    assert 1 <= max(seen) <= 3, seen  # seen: the tool's connections were counted while it ran
    assert wait_until(lambda: count_finished(project) == 400)


def count_finished(project) -> int:
    return sum(1 for r in history(project, "--job", "work") if r["status"] == "succeeded")


def libpq(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]
