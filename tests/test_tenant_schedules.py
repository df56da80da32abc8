"""Schedules that know their tenants: per-tenant time zones (daylight saving in both hemispheres) and
schedules, exactly-once ticks with two schedulers, spread, the fairness cap across processes, alerts."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.procs import history, run, start, wait_for, wait_until

# Logs "tenant tick" for each run, so a test sees who fired when.
LOGGING_JOB = '''
from pathlib import Path

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id} {ctx.tick.isoformat() if ctx.tick else None}\\n")
'''
ZONES = [{"id": "lon", "timezone": "Europe/London"}, {"id": "nyc", "timezone": "America/New_York"},
         {"id": "syd", "timezone": "Australia/Sydney"}, {"id": "utc", "timezone": None},
         {"id": "bad", "timezone": "Mars/Base"}]


@pytest.fixture
def zoned(project):
    project.json_tenants(ZONES)
    project.config('tenants = "tenants.json"\n')
    return project


def fired(project) -> list[str]:
    return sorted(line.split()[0] for line in project.log())


@pytest.mark.parametrize("cron, at, expected", [
    ("0 9 * * *", "2026-06-01T08:00:00+00:00", ["lon"]),          # 09:00 BST
    ("0 9 * * *", "2026-06-01T13:00:00+00:00", ["nyc"]),          # 09:00 EDT
    ("0 9 * * *", "2026-05-31T23:00:00+00:00", ["syd"]),          # 09:00 AEST (winter there)
    ("0 9 * * *", "2026-06-01T09:00:00+00:00", ["bad", "utc"]),   # no zone, or an unknown one: the config's (UTC)
    ("30 2 * * *", "2026-03-08T07:00:00+00:00", ["nyc"]),         # spring forward: 02:30 does not exist, 03:00 EDT
    ("30 1 * * *", "2026-10-25T00:30:00+00:00", ["lon"]),         # fall back: the first 01:30 (BST) ...
    ("30 1 * * *", "2026-10-25T01:30:00+00:00", ["bad", "utc"]),  # ... not again at 01:30 GMT
    ("30 2 * * *", "2026-10-03T16:00:00+00:00", ["syd"]),         # Southern spring forward: 03:00 AEDT
])
def test_each_tenant_fires_at_its_own_local_time(zoned, cron, at, expected):
    zoned.job("digest", f'schedule = "{cron}"\ntimezone = "tenant"\n' + LOGGING_JOB)
    result = run(zoned, "run-due-jobs", "--at", at)
    assert result.returncode == 0, result.stdout + result.stderr
    assert fired(zoned) == expected
    # The unknown zone is said when it matters: when the tenant is due by the zone it falls back to
    # (issue #20 item 9: it used to be said on every call, due or not).
    if "bad" in expected:
        assert "tenant bad: unknown time zone 'Mars/Base' (using UTC)" in result.stderr
        assert result.stderr.count("Mars/Base") == 1
    else:
        assert "Mars/Base" not in result.stderr


def test_dry_run_shows_which_tenants_would_fire_and_listing_says_per_tenant(zoned):
    zoned.job("digest", 'schedule = "0 9 * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    result = run(zoned, "run-due-jobs", "--at", "2026-06-01T08:00:00+00:00", "--dry-run")
    assert result.returncode == 0
    assert "digest: tick 2026-06-01T08:00:00+00:00 would fire for 1 tenant(s): lon" in result.stdout
    assert zoned.log() == [] and history(zoned) == []  # nothing claimed, nothing run
    listing = run(zoned, "list-background-jobs")
    assert "0 9 * * * (in each tenant's time zone)" in listing.stdout


def test_schedule_for_gives_each_tenant_its_own_schedule(project):
    project.json_tenants([{"id": 1, "cron": "*/15 * * * *"}, {"id": 2, "cron": "0 * * * *"},
                          {"id": 3, "cron": None}, {"id": 4, "cron": "not a cron"}])
    project.config('tenants = "tenants.json"\n')
    project.job("sync", "def schedule_for(tenant):\n    return tenant.cron\n" + LOGGING_JOB)
    quarter = run(project, "run-due-jobs", "--at", "2026-06-01T10:15")
    assert quarter.returncode == 0, quarter.stderr
    assert fired(project) == ["1"]
    assert "tenant 4: schedule_for: ValueError: invalid cron expression 'not a cron'" in quarter.stderr
    hour = run(project, "run-due-jobs", "--at", "2026-06-01T11:00")
    assert hour.returncode == 0 and fired(project) == ["1", "1", "2"]  # 3 (None) never fires


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_two_schedulers_fire_each_tenant_once_per_tick(zoned, store, request):
    env = {"PINSTRIPE_STATE": request.getfixturevalue("pg_schema_url")} if store == "postgres" else {}
    zoned.job("digest", 'schedule = "0 9 * * *"\ntimezone = "tenant"\n' + LOGGING_JOB)
    procs = [start(zoned, "run-due-jobs", "--at", "2026-06-01T09:00:00+00:00", env=env) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
    assert fired(zoned) == ["bad", "utc"]  # each once, whichever scheduler won the tick


def test_spread_offsets_are_stable_across_processes():
    code = ("from pinstripe_jobs.model.plan import spread_offset\n"
            "print([round(spread_offset(t, 600), 6) for t in (1, 'acme', 42)])")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "random")}
    assert len(outputs) == 1
    offsets = json.loads(outputs.pop())
    assert all(0 <= o < 600 for o in offsets) and len(set(offsets)) == 3


def test_spread_starts_tenants_at_their_offsets(tenant_project):
    from pinstripe_jobs.model.plan import spread_offset

    tenant_project.job("spready", '''
import time
from pathlib import Path

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.tenant.id} {time.time()}\\n")
''')
    began = time.time()
    result = run(tenant_project, "run-background-job", "--name", "spready", "--spread", "2s")
    assert result.returncode == 0, result.stderr
    starts = {int(line.split()[0]): float(line.split()[1]) for line in tenant_project.log()}
    order = sorted(starts, key=lambda t: spread_offset(t, 2.0))
    assert [int(line.split()[0]) for line in tenant_project.log()] == order  # in offset order
    for tenant, started in starts.items():
        assert started >= began + spread_offset(tenant, 2.0) - 0.05  # never before its offset


HOLD = '''
import time
from pathlib import Path
ROOT = Path(__file__).parent.parent

def run(ctx):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"start {ctx.job} {ctx.tenant.id}\\n")
    (ROOT / f"started-{ctx.job}").write_text("1")
    deadline = time.time() + 30
    while not (ROOT / "release").exists() and time.time() < deadline:
        time.sleep(0.02)
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"end {ctx.job} {ctx.tenant.id}\\n")
'''


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_fairness_cap_holds_across_processes(tenant_project, store, request):
    state = f'state = "{request.getfixturevalue("pg_schema_url")}"\n' if store == "postgres" else ""
    tenant_project.config(f'tenants = "sqlite:///tenants.db"\n{state}tenant_concurrency = 1\n')
    tenant_project.job("export", HOLD)
    tenant_project.job("report", HOLD.replace("deadline = time.time() + 30", "deadline = time.time()"))  # quick
    first = start(tenant_project, "run-background-job", "--name", "export", "--tenant", "1")
    wait_for(tenant_project.root / "started-export")
    skipped = run(tenant_project, "run-background-job", "--name", "report", "--tenant", "1")
    assert skipped.returncode == 4 and "tenant at its concurrency cap (1)" in skipped.stdout
    other = run(tenant_project, "run-background-job", "--name", "report", "--tenant", "2")
    assert other.returncode == 0  # another tenant is not held up
    waiting = start(tenant_project, "run-background-job", "--name", "report", "--tenant", "1", "--wait")
    assert "tenant_concurrency = 1" in waiting.stdout.readline() + waiting.stdout.readline()
    (tenant_project.root / "release").write_text("1")
    assert first.wait(timeout=30) == 0 and waiting.wait(timeout=30) == 0
    log = [line for line in tenant_project.log() if line.endswith(" 1")]
    assert log == ["start export 1", "end export 1", "start report 1", "end report 1"]  # never two at once


# -- alerts -----------------------------------------------------------------------------------------------------
class Receiver:
    """A webhook receiver on a loopback port; ``hang`` makes it accept and never answer."""

    def __init__(self, hang: bool = False):
        received = self.received = []
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if hang:
                    release.wait(30)
                    return
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/s3cretpath"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


FLAKY = '''
from pathlib import Path

def run(ctx):
    if (Path(__file__).parent.parent / "broken").exists() and ctx.tenant.id in (2, 3):
        raise RuntimeError(f"tenant {ctx.tenant.id} is broken")
'''


def test_alerts_once_per_invocation_then_recovery(tenant_project, receiver):
    out = tenant_project.root / "alerts.jsonl"
    tenant_project.config(f'tenants = "sqlite:///tenants.db"\n[notify]\nwebhook = "{receiver.url}"\n'
                          f'command = "cat >> {out}; echo >> {out}"\n')
    tenant_project.job("sync", FLAKY)
    assert run(tenant_project, "run-background-job", "--name", "sync").returncode == 0
    assert receiver.received == []  # success, no failure before it: nothing to say
    (tenant_project.root / "broken").write_text("1")
    failed = run(tenant_project, "run-background-job", "--name", "sync")
    assert failed.returncode == 1
    [message] = receiver.received  # one message for two failing tenants
    assert message["event"] == "failure" and message["counts"] == {"failed": 2, "succeeded": 2}
    assert [f["tenant"] for f in message["failures"]] == [2, 3]
    assert "tenant 2: failed: RuntimeError: tenant 2 is broken" in message["text"]
    assert "pinstripe run-background-job --name sync --only-failed" in message["text"]
    assert json.loads(out.read_text().splitlines()[0])["event"] == "failure"  # the command got the same
    (tenant_project.root / "broken").unlink()
    assert run(tenant_project, "run-background-job", "--name", "sync", "--only-failed").returncode == 0
    assert [m["event"] for m in receiver.received] == ["failure", "recovery"]
    assert run(tenant_project, "run-background-job", "--name", "sync").returncode == 0
    assert len(receiver.received) == 2  # no second recovery


def test_a_hanging_receiver_never_changes_the_outcome_and_its_secret_is_masked(tenant_project):
    hanging = Receiver(hang=True)
    try:
        tenant_project.config(f'tenants = "sqlite:///tenants.db"\n[notify]\nwebhook = "{hanging.url}"\n'
                              'timeout = 1\ncommand = "sleep 30"\n')
        tenant_project.job("sync", "def run(ctx):\n    raise RuntimeError('no')\n")
        began = time.monotonic()
        result = run(tenant_project, "run-background-job", "--name", "sync", "--tenant", "1")
        assert time.monotonic() - began < 15
        assert result.returncode == 1  # the run's own outcome
        assert "webhook alert for sync not sent" in result.stderr and "command alert for sync not sent" in result.stderr
        assert "s3cretpath" not in result.stdout + result.stderr
    finally:
        hanging.close()


def test_scheduled_runs_alert_with_their_trigger(tenant_project, receiver):
    tenant_project.config(f'tenants = "sqlite:///tenants.db"\n[notify]\nwebhook = "{receiver.url}"\n'
                          'callable = "alerts:collect"\n')
    tenant_project.module("alerts", '''
        import json
        from pathlib import Path

        def collect(message):
            Path("called.json").write_text(json.dumps(message))
    ''')
    tenant_project.job("nightly", "schedule = '0 3 * * *'\ndef run(ctx):\n    raise RuntimeError('x')\n")
    result = run(tenant_project, "run-due-jobs", "--at", "2026-06-01T03:00")
    assert result.returncode == 1
    wait_until(lambda: receiver.received, what="the alert")
    assert receiver.received[0]["trigger"] == "schedule" and receiver.received[0]["counts"] == {"failed": 4}
    assert json.loads((tenant_project.root / "called.json").read_text())["job"] == "nightly"


def test_a_skipped_invocation_alerts_when_asked(tenant_project, receiver):
    tenant_project.config(f'tenants = "sqlite:///tenants.db"\n[notify]\non = ["skipped"]\n'
                          f'webhook = "{receiver.url}"\n')
    tenant_project.job("export", HOLD)
    holder = start(tenant_project, "run-background-job", "--name", "export", "--tenant", "1")
    wait_for(tenant_project.root / "started-export")
    skipped = run(tenant_project, "run-background-job", "--name", "export", "--tenant", "1")
    assert skipped.returncode == 4
    (tenant_project.root / "release").write_text("1")
    assert holder.wait(timeout=30) == 0
    assert [m["event"] for m in receiver.received] == ["skipped"]  # the holder's success says nothing
    assert receiver.received[0]["counts"] == {"skipped": 1}
