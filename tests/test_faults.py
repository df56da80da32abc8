"""Real faults, counted from the jobs' own logs: terminated backends, a database stopped and restarted
mid-run, a full disk, kill -9 mid-tick, a lock whose holder loses its connection, hostile job text."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.procs import history, pid_alive, run, start, terminate_backends, wait_for, wait_until

# Appends "start T" and "end T" to calls.log; at the tenant named in fault.json, does the fault once
# (terminate the tool's backends, or run shell commands: stop/restart a database, fill a disk).
FAULT_JOB = '''
import json, subprocess, time
from pathlib import Path
ROOT = Path(__file__).parent.parent

def log(text):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(text + "\\n")

def run(ctx):
    log(f"start {ctx.tenant.id}")
    spec = json.loads((ROOT / "fault.json").read_text())
    marker = ROOT / "fault-done"
    if str(ctx.tenant.id) == str(spec["at"]) and not marker.exists():
        marker.write_text("1")
        if spec.get("terminate"):
            import psycopg
            with psycopg.connect(spec["admin"], autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                             (spec["terminate"],))
        for command in spec.get("commands", []):
            subprocess.run(command, capture_output=True)
    log(f"end {ctx.tenant.id}")
'''
ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def fault_project(project, fault: dict, state: str | None = None, extra: str = "", tenants: int = 4):
    project.json_tenants([{"id": i} for i in range(1, tenants + 1)])
    project.config('tenants = "tenants.json"\n' + (f'state = "{state}"\n' if state else "") + extra)
    project.job("work", FAULT_JOB)
    (project.root / "fault.json").write_text(json.dumps(fault))
    return project


def calls(project) -> list[str]:
    return project.log()


def statuses(project, env=None) -> dict[str, str]:
    return {r["tenant"]: r["status"] for r in reversed(history(project, "--job", "work", env=env))}


# -- a dropped state connection ------------------------------------------------------------------------
def test_terminated_state_backends_are_reconnected_and_nothing_is_lost(project, pg_app):
    url, app = pg_app
    fault_project(project, {"at": 2, "terminate": app, "admin": ADMIN}, state=url)
    result = run(project, "run-background-job", "--name", "work", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert [(r["tenant"], r["status"]) for r in doc["runs"]] == [(i, "succeeded") for i in range(1, 5)]
    assert calls(project) == [f"{what} {i}" for i in range(1, 5) for what in ("start", "end")]  # once each
    assert statuses(project) == {i: "succeeded" for i in range(1, 5)}


def test_a_database_restart_mid_run_is_ridden_out(project, throwaway_pg):
    commands = throwaway_pg.commands()
    fault_project(project, {"at": 2, "commands": [commands["stop"], commands["start"]]}, state=throwaway_pg.url)
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert calls(project) == [f"{what} {i}" for i in range(1, 5) for what in ("start", "end")]
    assert statuses(project) == {i: "succeeded" for i in range(1, 5)}


def test_a_store_that_stays_down_is_reported_not_lost(project, throwaway_pg):
    """Past state_retry_s: finished jobs keep their real status, the rest are skipped with the reason,
    the JSON document is complete and the exit code is 3."""
    fault_project(project, {"at": 2, "commands": [throwaway_pg.commands()["stop"]]}, state=throwaway_pg.url,
                  extra="state_retry_s = 1\n")
    result = run(project, "run-background-job", "--name", "work", "--json")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert [(r["tenant"], r["status"], r.get("reason")) for r in doc["runs"]] == [
        (1, "succeeded", None), (2, "succeeded", None), (3, "skipped", "state store unavailable"),
        (4, "skipped", "state store unavailable")]
    assert "state store" in doc["error"] and (doc["status"], doc["exit_code"]) == ("error", 3)
    assert calls(project) == ["start 1", "end 1", "start 2", "end 2"]  # nothing ran without its lock


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small filesystem: {done.stderr}")
        pytest.skip(f"cannot mount a small filesystem: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_sqlite_state_on_a_full_disk(project, small_disk):
    state = small_disk / "state.db"
    fill = ["sh", "-c", f"dd if=/dev/zero of={small_disk}/filler bs=64k 2>/dev/null; true"]
    fault_project(project, {"at": 2, "commands": [fill]}, state=f"sqlite:///{state}", extra="state_retry_s = 1\n",
                  tenants=6)
    result = run(project, "run-background-job", "--name", "work", "--json")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    runs = [(r["tenant"], r["status"]) for r in doc["runs"]]
    assert runs[:2] == [(1, "succeeded"), (2, "succeeded")]  # finished jobs keep their real status
    assert all(status == "skipped" for _, status in runs[2:]) and len(runs) == 6
    assert "full" in doc["error"] or "disk" in doc["error"]
    assert calls(project) == ["start 1", "end 1", "start 2", "end 2"]
    (small_disk / "filler").unlink()  # space again: the history is readable and truthful
    rows = statuses(project)
    assert rows[1] == "succeeded" and rows.get(2) in ("succeeded", "abandoned")
    # tenants never started have no row, or a `queued` one (claimed ahead: resumable, rerun by --only-failed)
    assert all(rows[t] == "queued" for t in rows if t > 2), rows


def test_hostile_job_text_is_stored_capped_and_masked(project, pg_app):
    url, _ = pg_app
    project.json_tenants([{"id": 1}, {"id": 2}])
    project.config(f'tenants = "tenants.json"\nstate = "{url}"\n')
    project.job("work",
                "def run(ctx):\n    raise ValueError('nul\\0byte postgresql://u:hunter2@db/x ' + 'y' * 200_000)\n")
    began = time.monotonic()
    result = run(project, "run-background-job", "--name", "work", "--json", timeout=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - began < 30  # masking and trimming are linear (was minutes per tenant)
    doc = json.loads(result.stdout)
    assert [r["status"] for r in doc["runs"]] == ["failed", "failed"]
    assert "hunter2" not in result.stdout + result.stderr
    [row, _] = history(project, "--job", "work")
    assert row["status"] == "failed" and "\\0" in row["error"] and "hunter2" not in row["error"]
    assert len(row["error"]) <= 4000 and "more characters" in row["error"]


def test_a_tenant_id_too_long_to_store_is_a_clear_error(project):
    project.json_tenants([{"id": 1}, {"id": "x" * 1_000_000}])
    project.config('tenants = "tenants.json"\n')
    project.job("work", FAULT_JOB)
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3 and "1,000,000 characters long (the limit is 255)" in result.stderr
    assert "Traceback" not in result.stderr and calls(project) == []


def test_a_store_that_goes_down_under_concurrency_misreports_nothing(project, throwaway_pg):
    """With threads, a job that completed is never reported failed because its history write failed."""
    fault_project(project, {"at": 2, "commands": [throwaway_pg.commands()["stop"]]}, state=throwaway_pg.url,
                  extra="state_retry_s = 1\n", tenants=8)
    result = run(project, "run-background-job", "--name", "work", "--json", "--concurrency", "3")
    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout)
    ended = {int(line.split()[1]) for line in calls(project) if line.startswith("end")}
    outcomes = {r["tenant"]: (r["status"], r.get("reason")) for r in doc["runs"]}
    assert sorted(outcomes) == list(range(1, 9))  # every tenant has a status
    for tenant, outcome in outcomes.items():
        expected = ("succeeded", None) if tenant in ended else ("skipped", "state store unavailable")
        assert outcome == expected, (tenant, outcome)
    assert 2 in ended and "Traceback" not in result.stderr


# -- locks that only a dead holder loses -----------------------------------------------------------------
HOLD_JOB = '''
import time
from pathlib import Path
ROOT = Path(__file__).parent.parent

def run(ctx):
    (ROOT / f"started-{ctx.tenant.id}").write_text("1")
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"start {ctx.tenant.id}\\n")
    deadline = time.time() + 60
    while not (ROOT / "release").exists() and time.time() < deadline:
        time.sleep(0.02)
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"end {ctx.tenant.id}\\n")
'''


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_live_holder_keeps_its_lock_through_a_dropped_connection(project, store, request):
    if store == "postgres":
        url, app = request.getfixturevalue("pg_app")
        state = f'state = "{url}"\n'
    else:
        state, app = "", None
    project.json_tenants([{"id": 1}])
    project.config(f'tenants = "tenants.json"\n{state}lock_stale_s = 0.5\n')
    project.job("hold", HOLD_JOB)
    holder = start(project, "run-background-job", "--name", "hold")
    wait_for(project.root / "started-1")
    if app:
        wait_until(lambda: terminate_backends(ADMIN, app), what="the holder's backends to be terminated")
    # Longer than lock_stale_s: the holder's heartbeat (renewed over a new connection) keeps the lock.
    first = history(project)[0]
    wait_until(lambda: history(project)[0]["heartbeat_at"] > (datetime.fromisoformat(first["started_at"])
                                                              + timedelta(seconds=1)).isoformat(),
               what="a renewed heartbeat")
    second = run(project, "run-background-job", "--name", "hold")
    assert second.returncode == 4, second.stdout + second.stderr  # skipped: already running
    (project.root / "release").write_text("1")
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, out + err
    assert "Traceback" not in err
    assert calls(project) == ["start 1", "end 1"]  # never two at once
    assert [(r["status"], r["error"]) for r in history(project)] == [("skipped", "already running"),
                                                                    ("succeeded", None)]


def test_only_a_provably_gone_holder_loses_its_lock(state_url):
    """Another host's lock is taken over only when its heartbeat is stale; this host's, when its process
    is dead."""
    from pinstripe_jobs.store.state import StateStore

    now = [datetime(2026, 11, 29, 10, 0, tzinfo=UTC)]
    store = StateStore(state_url, clock=lambda: now[0], lock_stale_s=60)
    try:
        lease = store.begin_run("job", 1, "manual")
        store.engine.leases.clear()  # no heartbeat thread: the test moves the clock
        store.engine.call(lambda conn: store.engine.execute(conn, "UPDATE pinstripe_runs SET host = 'elsewhere', "
                                                                  "pid = 1"))
        now[0] += timedelta(seconds=59)
        assert store.begin_run("job", 1, "manual") is None  # fresh enough: alive
        assert store.runs()[0]["status"] == "running"
        now[0] += timedelta(seconds=2)
        assert store.runs()[0]["status"] == "abandoned"  # reads as gone...
        taken = store.begin_run("job", 1, "manual")  # ...and is taken over
        assert taken is not None and taken.run_id != lease.run_id
        old = [r for r in store.runs() if r["id"] == lease.run_id][0]
        assert old["status"] == "abandoned" and old["ended_at"] == old["started_at"]  # its last sign of life
    finally:
        store.close()


def test_the_holder_renews_its_heartbeat(state_url):
    from pinstripe_jobs.store.state import StateStore

    store = StateStore(state_url, lock_stale_s=0.2)
    try:
        store.begin_run("job", 1, "manual")
        first = store.runs()[0]["heartbeat_at"]
        wait_until(lambda: store.runs()[0]["heartbeat_at"] > first, what="a renewed heartbeat")
    finally:
        store.close()


# -- ticks reach all their tenants -------------------------------------------------------------------------
# Tenant 2 holds until the file "release" exists; the others run at once.
TICK_JOB = '''
import time
from pathlib import Path
ROOT = Path(__file__).parent.parent
schedule = "0 0 * * *"  # daily: a bot killed within seconds never reaches its next tick (a minute's could)
catch_up = True

def log(text):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(text + "\\n")

def run(ctx):
    log(f"start {ctx.tenant.id}")
    if ctx.tenant.id == 2:
        (ROOT / "started-2").write_text(ctx.tick.isoformat() if ctx.tick else "manual")
        deadline = time.time() + 60
        while not (ROOT / "release").exists() and time.time() < deadline:
            time.sleep(0.02)
    log(f"end {ctx.tenant.id}")
'''


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("killed", ["run-due-jobs", "start-bot"])
def test_a_tick_whose_runner_is_killed_is_resumed_exactly_once(project, store, killed, request):
    state = f'state = "{request.getfixturevalue("pg_schema_url")}"\n' if store == "postgres" else ""
    project.json_tenants([{"id": i} for i in range(1, 5)])
    project.config(f'tenants = "tenants.json"\n{state}')
    project.job("tick", TICK_JOB)
    if killed == "run-due-jobs":
        proc = start(project, "run-due-jobs", "--at", "2026-11-29T00:00:30+00:00")
    else:  # the bot fires the last day's tick at once
        since = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
        proc = start(project, "start-bot", "--since", since)
    wait_for(project.root / "started-2")
    tick = wait_until(lambda: (project.root / "started-2").read_text())
    proc.kill()  # kill -9 mid-tick: tenant 2 is running, 3 and 4 never started
    proc.communicate()
    (project.root / "release").write_text("1")
    resumed = run(project, "run-due-jobs", "--at", tick)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming tick" in resumed.stderr
    again = run(project, "run-due-jobs", "--at", tick)
    assert again.returncode == 0 and "already fired" in again.stdout
    log = calls(project)
    assert sorted(line for line in log if line.startswith("start")) == ["start 1", "start 2", "start 3", "start 4"]
    assert sorted(line for line in log if line.startswith("end")) == ["end 1", "end 3", "end 4"]
    rows = history(project)  # newest first
    newest = {r["tenant"]: r["status"] for r in reversed(rows)}
    assert newest == {1: "succeeded", 2: "abandoned", 3: "succeeded", 4: "succeeded"}
    # one run row per tenant that started; a tenant claimed ahead by the killed runner (its lock taken, never
    # started) keeps that row, ended as skipped by the run that took its lock over
    started = [r for r in rows if not (r["status"] == "skipped" and r["error"].startswith("never started"))]
    assert sorted(r["tenant"] for r in started) == [1, 2, 3, 4]
    assert all(r["status"] != "queued" for r in rows)
    assert {datetime.fromisoformat(r["tick"]) for r in rows} == {datetime.fromisoformat(tick)}
    again = run(project, "run-background-job", "--name", "tick", "--only-failed")  # the abandoned one
    assert again.returncode == 0 and calls(project)[-2:] == ["start 2", "end 2"]


def test_run_due_jobs_that_cannot_claim_a_tick_exits_3_and_the_tick_fires_later(project, pg_schema_url):
    import psycopg

    project.json_tenants([{"id": 1}])
    project.config(f'tenants = "tenants.json"\nstate = "{pg_schema_url}"\nstate_retry_s = 1\n')
    project.job("tick",
                'schedule = "0 * * * *"\n' + FAULT_JOB.replace("    spec = json", "    return\n    spec = json"))
    assert run(project, "migrate").returncode == 0  # creates the store's tables
    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect(ADMIN) as conn:  # another session holds the claims table
        conn.execute(f"LOCK TABLE {schema}.pinstripe_ticks IN EXCLUSIVE MODE")
        result = run(project, "run-due-jobs", "--at", "2026-11-29T10:00")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "could not fire tick 2026-11-29T10:00:00+00:00" in result.stderr and "Traceback" not in result.stderr
    assert calls(project) == []
    later = run(project, "run-due-jobs", "--at", "2026-11-29T10:00:20")
    assert later.returncode == 0 and calls(project) == ["start 1"]


def test_the_bot_recovers_when_its_store_comes_back(project, pg_app):
    """In process, with a fake clock: the store's backends are terminated between ticks; the bot fires
    the next tick, with one clear line and no traceback."""
    import logging

    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.scheduling.bot import Scheduler

    url, app = pg_app
    project.json_tenants([{"id": 1}])
    project.config(f'tenants = "tenants.json"\nstate = "{url}"\n')
    project.job("minutely",
                'schedule = "* * * * *"\n' + FAULT_JOB.replace("    spec = json", "    return\n    spec = json"))
    clock = [datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)]
    runner = Runner(load_settings())
    ticks = []

    def wait(seconds):
        wait_until(lambda: not scheduler.threads, what="the tick's run to finish")  # then move the clock
        clock[0] += timedelta(seconds=seconds)
        if clock[0].minute != (ticks[-1].minute if ticks else -1):
            ticks.append(clock[0])
            terminate_backends(ADMIN, app)  # every tick meets a dropped connection
        if len(ticks) >= 3:
            runner.stop.request(signal.SIGTERM)

    scheduler = Scheduler(runner, now=lambda: clock[0], wait=wait)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("pinstripe").addHandler(handler)
    try:
        scheduler.loop()
        scheduler.shutdown(10, time.monotonic)
    finally:
        logging.getLogger("pinstripe").removeHandler(handler)
        runner.close()
    assert calls(project) == ["start 1", "start 1"]  # 10:01 and 10:02 fired
    assert not [r for r in records if r.exc_info]


# -- signals always win ------------------------------------------------------------------------------------
def test_sigterm_wins_over_a_tenant_source_that_never_answers(project):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    project.config(f'tenants = "postgresql+psycopg://u@127.0.0.1:{port}/x"\n')
    project.job("work", FAULT_JOB)
    proc = start(project, "run-background-job", "--name", "work", "--grace", "2", "--json")
    listener.settimeout(30)
    conn, _ = listener.accept()  # the tool is connected and waiting for an answer that never comes
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - began < 4
    assert proc.returncode == 143, err
    assert json.loads(out)["exit_code"] == 143 and "Traceback" not in err
    conn.close()
    listener.close()


def test_sigterm_wins_over_a_locked_history_table(project, pg_schema_url):
    import psycopg

    project.json_tenants([{"id": 1}, {"id": 2}])
    project.config(f'tenants = "tenants.json"\nstate = "{pg_schema_url}"\n')
    project.job("work", FAULT_JOB.replace("    spec = json", "    return\n    spec = json"))
    assert run(project, "migrate").returncode == 0  # creates the store's tables
    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect(ADMIN) as conn:
        conn.execute(f"LOCK TABLE {schema}.pinstripe_runs IN ACCESS EXCLUSIVE MODE")
        proc = start(project, "run-background-job", "--name", "work", "--grace", "2")
        wait_until(lambda: conn.execute(f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                        f"'{schema}.pinstripe_runs'::regclass").fetchone()[0],
                   what="the tool to wait on the lock")
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - began
    assert elapsed < 2 + 2.5, (elapsed, out, err)
    assert proc.returncode == 143, out + err
    assert "Traceback" not in out + err and calls(project) == []


# -- process isolation ---------------------------------------------------------------------------------------
def test_process_isolation_with_threads_and_output_never_hangs(project):
    project.json_tenants([{"id": i} for i in range(1, 25)])
    project.config('tenants = "tenants.json"\n')
    project.job("chatty", "import sys\ndef run(ctx):\n    for i in range(2000):\n"
                          "        print(f'{ctx.tenant.id} line {i}')\n    sys.stderr.write('err\\n')\n"
                          "    ctx.log.info('done %s', ctx.tenant.id)\n")
    for _ in range(3):
        result = run(project, "run-background-job", "--name", "chatty", "--isolation", "process",
                     "--concurrency", "8", timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        lines = [line for line in result.stdout.splitlines() if " line " in line]
        assert len(lines) == 24 * 2000  # nothing lost, whole lines only
        assert result.stderr.count("done ") == 24


SLEEP_JOB = '''
import os, subprocess, time
from pathlib import Path
ROOT = Path(__file__).parent.parent

def run(ctx):
    grandchild = subprocess.Popen(["sleep", "600"])
    (ROOT / f"pids-{ctx.tenant.id}").write_text(f"{os.getpid()} {grandchild.pid}")
    time.sleep(600)
'''


def _pids(project, tenant=1) -> tuple[int, int]:
    path = project.root / f"pids-{tenant}"
    wait_for(path)
    wait_until(lambda: path.read_text().strip())
    child, grandchild = map(int, path.read_text().split())
    return child, grandchild


def test_a_group_sigterm_gives_isolated_children_the_grace_period(project):
    project.json_tenants([{"id": 1}, {"id": 2}])
    project.config('tenants = "tenants.json"\n')
    project.job("sleepy", SLEEP_JOB)
    proc = start(project, "run-background-job", "--name", "sleepy", "--isolation", "process", "--grace", "1",
                 "--json", start_new_session=True)
    child, grandchild = _pids(project)
    os.killpg(proc.pid, signal.SIGTERM)  # what systemd, `timeout` and kill -- -PGID do
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    doc = json.loads(out)
    assert [(r["tenant"], r["status"]) for r in doc["runs"]] == [(1, "interrupted"), (2, "skipped")]
    wait_until(lambda: not pid_alive(child) and not pid_alive(grandchild), what="the job's processes to end")
    assert [(r["tenant"], r["status"]) for r in history(project)] == [(2, "skipped"), (1, "interrupted")]


def test_isolated_children_die_with_a_killed_parent(project):
    project.json_tenants([{"id": 1}])
    project.config('tenants = "tenants.json"\n')
    project.job("sleepy", SLEEP_JOB.replace('subprocess.Popen(["sleep", "600"])', 'subprocess.Popen(["true"])'))
    proc = start(project, "run-background-job", "--name", "sleepy", "--isolation", "process")
    child, _ = _pids(project)
    proc.kill()
    proc.communicate()
    wait_until(lambda: not pid_alive(child), what="the child to die with its parent")
    second = run(project, "run-background-job", "--name", "sleepy", "--timeout", "0.5")  # the lock is free
    assert second.returncode == 124, second.stdout + second.stderr


def test_a_timeout_stops_the_jobs_whole_process_tree(project):
    project.json_tenants([{"id": 1}])
    project.config('tenants = "tenants.json"\n')
    project.job("sleepy", SLEEP_JOB)
    result = run(project, "run-background-job", "--name", "sleepy", "--timeout", "1")
    assert result.returncode == 124, result.stdout + result.stderr
    child, grandchild = _pids(project)
    wait_until(lambda: not pid_alive(child) and not pid_alive(grandchild), what="the job's processes to end")


# -- job code cannot break the runner --------------------------------------------------------------------------
def test_a_job_that_forks_and_returns_in_the_child_does_not_fan_out_twice(tenant_project):
    tenant_project.job("forky", '''
import os
from pathlib import Path

def run(ctx):
    pid = os.fork()
    if pid == 0:
        return "child"  # returns into the runner in a second process
    os.waitpid(pid, 0)
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id}\\n")
''')
    result = run(tenant_project, "run-background-job", "--name", "forky")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("forky: succeeded") == 1
    assert tenant_project.log() == ["1", "2", "3", "4"]


def test_a_job_that_changes_directory_or_environment_does_not_move_the_tool(tenant_project, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tenant_project.job("wander", f'''
import os
from pathlib import Path

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{{ctx.tenant.id}} {{os.getcwd()}} {{os.environ.get('WANDERED')}}\\n")
    os.chdir({str(elsewhere)!r})
    os.environ["WANDERED"] = "yes"
''')
    result = run(tenant_project, "run-background-job", "--name", "wander", "--junit-xml", "reports/junit.xml")
    assert result.returncode == 0, result.stderr
    assert (tenant_project.root / "reports" / "junit.xml").exists()
    assert tenant_project.log() == [f"{i} {tenant_project.root} None" for i in range(1, 5)]


# -- tenant ids and sources ------------------------------------------------------------------------------------
def _sqlite_text_ids(path, ids):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tenants (id TEXT, name TEXT)")
        db.executemany("INSERT INTO tenants VALUES (?, 'x')", [(i,) for i in ids])


@pytest.mark.parametrize("bad, message", [
    ("duplicate", "Duplicate tenant id"), ("null", "has no 'id'"), ("empty", "has an empty id")])
def test_bad_ids_past_the_first_page_are_caught(project, bad, message):
    ids = [f"t{i:05d}" for i in range(2500)]
    if bad == "duplicate":
        ids.insert(1000, ids[999])  # straddles the first page boundary
    else:
        ids.append(None if bad == "null" else "")
    _sqlite_text_ids(project.root / "tenants.db", ids)
    project.config('tenants = "sqlite:///tenants.db"\n')
    project.job("work", "def run(ctx):\n    pass\n")
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3, result.stdout
    assert message in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_bad_ids_in_postgresql_are_caught_at_any_position(project, pg_url):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    table = f"bad_ids_{os.getpid()}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE {table} (id TEXT, name TEXT)"))
        conn.execute(sa.text(f"INSERT INTO {table} SELECT 'id' || lpad(g::text, 5, '0'), 'x' FROM "
                             "generate_series(1, 2500) g"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (NULL, 'null at the end')"))
    try:
        project.config(f'tenants = "{pg_url}"\ntenants_table = "{table}"\n')
        project.job("work", "def run(ctx):\n    pass\n")
        result = run(project, "run-background-job", "--name", "work")
        assert result.returncode == 3 and "has no 'id'" in result.stderr, result.stdout + result.stderr
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table} SET id = 'id01000' WHERE id IS NULL"))  # now a duplicate
        result = run(project, "run-background-job", "--name", "work")
        assert result.returncode == 3 and "Duplicate tenant id 'id01000'" in result.stdout  # found mid-run
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_a_dropped_tenant_source_connection_resumes_the_scan(project, pg_url):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    table = f"resume_{os.getpid()}"
    app = f"src{os.getpid()}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text(f"INSERT INTO {table} SELECT g FROM generate_series(1, 2500) g"))
    try:
        fault_project(project, {"at": 1500, "terminate": app, "admin": ADMIN})
        project.config(f'tenants = "{pg_url}?application_name={app}"\ntenants_table = "{table}"\n')
        result = run(project, "run-background-job", "--name", "work")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        starts = [line for line in calls(project) if line.startswith("start")]
        assert starts == [f"start {i}" for i in range(1, 2501)]  # every tenant once, in order
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


# -- history: skipped tenants, --only-failed, old databases --------------------------------------------------
def test_only_failed_reruns_everything_that_did_not_succeed(tenant_project):
    tenant_project.job("flaky", '''
from pathlib import Path
ROOT = Path(__file__).parent.parent

def run(ctx):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id}\\n")
    if ctx.tenant.id == 2 and not (ROOT / "fixed").exists():
        raise RuntimeError("broken")
''')
    first = run(tenant_project, "run-background-job", "--name", "flaky", "--fail-fast")
    assert first.returncode == 1 and tenant_project.log() == ["1", "2"]
    assert {r["tenant"]: r["status"] for r in history(tenant_project)} == {
        1: "succeeded", 2: "failed", 3: "skipped", 4: "skipped"}
    (tenant_project.root / "fixed").write_text("1")
    again = run(tenant_project, "run-background-job", "--name", "flaky", "--only-failed")
    assert again.returncode == 0 and tenant_project.log()[2:] == ["2", "3", "4"]


def test_an_existing_state_database_is_migrated_in_place(project):
    import sqlite3

    from pinstripe_jobs.store.state import StateStore

    path = project.root / "old.db"
    with sqlite3.connect(path) as db:  # the first release's tables
        db.executescript("""
            CREATE TABLE pinstripe_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, tenant TEXT,
                trigger TEXT NOT NULL, tick TEXT, attempt INTEGER NOT NULL DEFAULT 1, started_at TEXT NOT NULL,
                ended_at TEXT, status TEXT NOT NULL, error TEXT, host TEXT, pid INTEGER, pid_token TEXT,
                session INTEGER, lock_key TEXT);
            CREATE TABLE pinstripe_ticks (job TEXT NOT NULL, tick TEXT NOT NULL, claimed_at TEXT NOT NULL, host TEXT,
                pid INTEGER, PRIMARY KEY (job, tick));
            INSERT INTO pinstripe_runs (job, tenant, trigger, started_at, ended_at, status)
                VALUES ('job', '1', 'manual', '2026-11-28T10:00:00+00:00', '2026-11-28T10:00:01+00:00', 'failed');
            INSERT INTO pinstripe_ticks VALUES ('job', '2026-11-28T10:00:00+00:00', '2026-11-28T10:00:00+00:00',
                'gone', 1);
        """)
    store = StateStore(f"sqlite:///{path}")
    try:
        assert [(r["tenant"], r["status"]) for r in store.runs()] == [("1", "failed")]
        assert store.orphan_ticks() == []  # ticks claimed before the upgrade count as done
        assert store.failed_tenants("job") == ["1"]
    finally:
        store.close()


def test_a_state_store_that_refuses_writes_is_a_clear_error_not_a_traceback(project, pg_url, request):
    """A database user without rights on the history table (a refusal, not an outage): exit 3, every tenant
    reported, and the message names the fix."""
    import sqlalchemy as sa

    schema = f"pst_ro_{abs(hash(request.node.nodeid)) % 10**8}_{os.getpid()}"
    role = f"{schema}_user"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    project.json_tenants([{"id": 1}, {"id": 2}])
    state = f"{pg_url}?options=-csearch_path%3D{schema}"
    project.config(f'tenants = "tenants.json"\nstate = "{state}"\n')
    project.job("record", "def run(ctx):\n    pass\n")
    assert run(project, "run-background-job", "--name", "record").returncode == 0  # creates the tables
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
            conn.execute(sa.text(f"GRANT USAGE ON SCHEMA {schema} TO {role}"))
            conn.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"))
        readonly = state.replace("postgres@", f"{role}@")
        project.config(f'tenants = "tenants.json"\nstate = "{readonly}"\n')
        result = run(project, "run-background-job", "--name", "record", "--json")
        assert result.returncode == 3, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "refused an operation" in result.stderr + result.stdout
        assert "permission denied" in result.stderr + result.stdout
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        engine.dispose()
