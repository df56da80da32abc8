"""Named limits, Retry-After, errors not retried and the failure-rate brake (issue #22), through the installed
``pinstripe`` in real processes over real SQLite files and the real PostgreSQL. Every call is counted from
the job's own log: one line per call, with its ``time.time()``."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.errors import ConfigError, RetryAfter
from pinstripe_jobs.store.state import StateStore
from tests.procs import run, start, wait_until

CALLS_JOB = '''
import os, time
from pathlib import Path

CALLS = {calls}

def run(ctx):
    for _ in range(CALLS):
        with ctx.limit("api"{key}):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"{{time.time()}} {{os.getpid()}} {{ctx.tenant.id}}\\n")
'''


def tenants(n: int) -> str:
    return "tenants = [" + ", ".join(f"{{id = {i}}}" for i in range(1, n + 1)) + "]\n"


def calls(project) -> list[tuple[float, int, str]]:
    rows = [line.split() for line in project.log()]
    return sorted((float(t), int(pid), tenant) for t, pid, tenant in rows)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most calls in any half-open window [t, t + window) (it suffices to start windows at calls)."""
    times = sorted(times)
    best, low = 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - window:
            low += 1
        best = max(best, high - low + 1)
    return best


# -- a limit shared by processes -------------------------------------------------------------------------
def test_two_processes_started_at_once_share_a_10_per_second_limit(project, state_url):
    project.config(f'state = "{state_url}"\n{tenants(3)}[limits]\napi = "10/s"\n')
    project.job("alpha", CALLS_JOB.format(calls=5, key=""))
    project.job("beta", CALLS_JOB.format(calls=5, key=""))
    run(project, "migrate")  # the tables exist before the race (each process would create them otherwise)
    procs = [start(project, "run-background-job", "--name", name, "--concurrency", "3") for name in ("alpha", "beta")]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out + err
    made = calls(project)
    assert len(made) == 30 and len({pid for _, pid, _ in made}) == 2  # two processes, every call made
    times = [t for t, _, _ in made]
    assert most_in_any_window(times, 1.0) <= 10 + 1  # one token of clock slack
    span = times[-1] - times[0]
    assert span >= 1.9  # 30 calls at 10/s: the third ten cannot start before two seconds have passed
    assert span <= 4.5  # ... and the rate is used: not much more than that


def test_each_key_has_its_own_bucket_and_keys_run_in_parallel(project):
    project.config(f'{tenants(4)}[limits]\napi = "2/s"\n')
    project.job("keyed", CALLS_JOB.format(calls=4, key=", key=ctx.tenant.id"))
    started = time.monotonic()
    result = run(project, "run-background-job", "--name", "keyed", "--concurrency", "4", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    made = calls(project)
    assert len(made) == 16
    for key in "1234":
        assert most_in_any_window([t for t, _, tenant in made if tenant == key], 1.0) <= 2 + 1
    # one shared bucket would need 7 s for 16 calls at 2/s; four buckets in parallel about 1 s each
    assert elapsed < 6
    assert most_in_any_window([t for t, _, _ in made], 1.0) > 3  # the buckets really were separate
    document = json.loads(result.stdout)
    assert document["limit_waits"]["api"]["waits"] >= 4  # the waits are in the JSON document


def test_a_concurrency_limit_holds_across_processes_and_frees_a_killed_holders_slot(project, state_url):
    project.config(f'state = "{state_url}"\n{tenants(1)}[limits]\nsmtp = {{ concurrency = 1 }}\n')
    project.job("hold", '''
        import os, time
        from pathlib import Path

        def run(ctx):
            with ctx.limit("smtp"):
                with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                    fh.write(f"{time.time()} {os.getpid()} in\\n")
                time.sleep(float(os.environ.get("HOLD_S", "0")))
        ''')
    project.job("other", '''
        import os, time
        from pathlib import Path

        def run(ctx):
            with ctx.limit("smtp"):
                with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                    fh.write(f"{time.time()} {os.getpid()} other\\n")
        ''')
    run(project, "migrate")
    holder = start(project, "run-background-job", "--name", "hold", env={"HOLD_S": "600"}, start_new_session=True)
    wait_until(lambda: len(project.log()) == 1, what="the holder inside its limit")
    waiter = start(project, "run-background-job", "--name", "other")
    with pytest.raises(AssertionError):
        wait_until(lambda: len(project.log()) == 2, timeout=1.5, what="a second holder (must not happen)")
    os.killpg(holder.pid, signal.SIGKILL)  # kill -9 with the slot held
    holder.communicate()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, out + err
    assert [line.split()[2] for line in project.log()] == ["in", "other"]


def test_a_killed_holder_of_leased_tokens_does_not_leak_the_limit(project, state_url):
    project.config(f'state = "{state_url}"\n{tenants(1)}[limits]\napi = "5/s"\n')
    project.job("greedy", '''
        import os, time
        from pathlib import Path

        def run(ctx):
            for _ in range(5):
                with ctx.limit("api"):
                    pass
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"{time.time()} {os.getpid()} greedy\\n")
            time.sleep(600)
        ''')
    project.job("after", CALLS_JOB.format(calls=5, key=""))
    run(project, "migrate")
    greedy = start(project, "run-background-job", "--name", "greedy", start_new_session=True)
    wait_until(lambda: len(project.log()) == 1, what="the greedy holder took the whole window")
    os.killpg(greedy.pid, signal.SIGKILL)
    greedy.communicate()
    killed_at = time.time()
    result = run(project, "run-background-job", "--name", "after")
    assert result.returncode == 0, result.stderr
    made = [t for t, _, who in calls(project) if who != "greedy"]
    assert len(made) == 5
    assert made[-1] - killed_at < 2.5  # the dead holder's tokens left with their window: the full rate is back
    store = StateStore(state_url)
    try:
        wait_until(lambda: store.limit_usage("api", "", 1.0) == 0, timeout=5, what="the window to empty")
    finally:
        store.close()


# -- configuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("table,message", [
    ('api = "0/s"', "the count must be at least 1 and at most 1000000"),
    ('api = "10/d"', 'must be a rate such as "100/s"'),
    ("api = { concurrency = 0 }", "concurrency must be a whole number at least 1 and at most 10000"),
    ("api = { burst = 3 }", "must be a rate"),
    ('"bad name" = "1/s"', "is not a name"),
])
def test_bad_limits_are_refused_at_load_with_where_and_range(project, table, message):
    project.config(f"[limits]\n{table}\n")
    with pytest.raises(ConfigError, match="limits") as caught:
        load_settings()
    assert message in caught.value.message and "pinstripe.toml" in caught.value.message


def test_an_unknown_limit_fails_the_tenant_with_the_known_names(project):
    project.config(f'{tenants(1)}[limits]\napi = "5/s"\n')
    project.job("typo", 'def run(ctx):\n    with ctx.limit("apj"):\n        pass\n')
    result = run(project, "run-background-job", "--name", "typo")
    assert result.returncode == 1
    assert "no limit of that name (limits: api)" in result.stdout + result.stderr


def test_retry_after_refuses_a_delay_out_of_range():
    with pytest.raises(ValueError, match="at most 86400"):
        RetryAfter(10**6)


# -- Retry-After and errors that are not retried ----------------------------------------------------------
def test_retry_after_is_honoured_without_delaying_other_tenants(project):
    project.config(tenants(4))
    project.job("partner", '''
        import os, time
        from pathlib import Path
        from pinstripe_jobs import RetryAfter

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"{time.time()} {os.getpid()} {ctx.tenant.id}\\n")
            if ctx.tenant.id == 1 and ctx.attempt == 1:
                raise RetryAfter(1.5, "429 from the partner")
        ''')
    result = run(project, "run-background-job", "--name", "partner", "--concurrency", "2", "--json")
    assert result.returncode == 0, result.stderr
    made = calls(project)
    first = [t for t, _, who in made if who == "1"]
    others = [t for t, _, who in made if who != "1"]
    assert len(first) == 2 and len(others) == 3  # tried again once; the others once each
    assert first[1] - first[0] >= 1.5  # after the delay asked for
    assert max(others) < first[0] + 1.0  # the other tenants did not wait for it
    runs = json.loads(result.stdout)["runs"]
    assert next(r for r in runs if r["tenant"] == 1)["attempts"] == 2
    assert "RETRY" in result.stderr and "retry after 1.5s: 429 from the partner" in result.stderr


def test_retry_after_is_bounded_by_max_retry_after(project):
    project.config(tenants(1))
    project.job("stubborn", '''
        from pathlib import Path
        from pinstripe_jobs import RetryAfter

        max_retry_after = 2

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"0 0 {ctx.tenant.id}\\n")
            raise RetryAfter(0.05)
        ''')
    result = run(project, "run-background-job", "--name", "stubborn")
    assert result.returncode == 1
    assert len(project.log()) == 3  # the first attempt and two honoured RetryAfter


@pytest.mark.parametrize("raised,retried", [
    ("PermanentError('tenant deleted upstream')", False),  # never, whatever retry_on says
    ("ConnectionError('reset')", True),  # in retry_on
    ("ValueError('bad data')", False),  # not in retry_on
    ("KeyError('gone')", False),  # in give_up_on
])
def test_only_the_errors_named_are_retried(project, raised, retried):
    project.config(tenants(1))
    project.job("flaky", f'''
        from pathlib import Path
        from pinstripe_jobs import PermanentError

        retries = 2
        retry_backoff = 0
        retry_on = (ConnectionError, TimeoutError, PermanentError, KeyError)
        give_up_on = (KeyError,)

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"0 0 {{ctx.tenant.id}}\\n")
            raise {raised}
        ''')
    result = run(project, "run-background-job", "--name", "flaky")
    assert result.returncode == 1
    assert len(project.log()) == (3 if retried else 1)


def test_a_permanent_error_in_a_child_process_is_not_retried(project):
    project.config(tenants(1))
    project.job("isolated", '''
        from pathlib import Path
        from pinstripe_jobs import PermanentError

        retries = 3
        isolation = "process"

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"0 0 {ctx.tenant.id}\\n")
            raise PermanentError("no such account")
        ''')
    result = run(project, "run-background-job", "--name", "isolated")
    assert result.returncode == 1 and len(project.log()) == 1


# -- the failure-rate brake ---------------------------------------------------------------------------------
class _Alerts(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Alerts.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alerts():
    _Alerts.received = []
    server = HTTPServer(("127.0.0.1", 0), _Alerts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Alerts.received
    server.shutdown()
    server.server_close()


def test_the_brake_stops_a_run_that_fails_half_its_tenants(project, alerts):
    url, received = alerts
    project.config(f'{tenants(60)}[notify]\non = ["failure"]\nwebhook = "{url}"\n')
    project.job("half", '''
        from pathlib import Path

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"0 0 {ctx.tenant.id}\\n")
            if ctx.tenant.id % 2 == 0:
                raise ConnectionError("partner down")
        ''')
    result = run(project, "run-background-job", "--name", "half", "--max-failure-rate", "0.3", "--min-runs", "10",
                 "--json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    ran = len(project.log())
    assert ran == 10  # the brake held once ten runs had ended: 5 of 10 failed, more than 30%
    skipped = [r for r in document["runs"] if r["status"] == "skipped"]
    assert len(skipped) == 50 and all(r["reason"].startswith("failure-rate brake: 5 of 10 runs failed")
                                      for r in skipped)
    assert document["brake"].startswith("failure-rate brake")
    history = json.loads(run(project, "history", "--json", "--limit", "100").stdout)["runs"]
    assert sum(1 for r in history if r["status"] == "skipped") == 50  # recorded, with the reason
    wait_until(lambda: received, timeout=10, what="the alert")
    assert received[0]["event"] == "failure" and received[0]["brake"].startswith("failure-rate brake")


def test_the_brake_as_a_job_attribute_and_its_range(project):
    project.config(tenants(30))
    project.job("braked", '''
        max_failure_rate = 0.5

        def run(ctx):
            raise ConnectionError("down")
        ''')
    result = run(project, "run-background-job", "--name", "braked", "--json")
    assert result.returncode == 1
    counts = json.loads(result.stdout)["counts"]
    assert counts == {"failed": 20, "skipped": 10}  # --min-runs defaults to 20
    project.job("badbrake", "max_failure_rate = 1.5\n\ndef run(ctx):\n    pass\n")
    bad = run(project, "run-background-job", "--name", "badbrake")
    assert bad.returncode == 3 and "max_failure_rate must be more than 0 and at most 1" in bad.stderr
    option = run(project, "run-background-job", "--name", "braked", "--max-failure-rate", "0")
    assert option.returncode == 2 and "Traceback" not in option.stderr


def test_a_job_rate_limit_spaces_its_tenants_starts(project):
    project.config(tenants(6))
    project.job("paced", '''
        import os, time
        from pathlib import Path

        rate_limit = "3/s"

        def run(ctx):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(f"{time.time()} {os.getpid()} {ctx.tenant.id}\\n")
        ''')
    result = run(project, "run-background-job", "--name", "paced", "--concurrency", "6")
    assert result.returncode == 0, result.stderr
    times = [t for t, _, _ in calls(project)]
    assert len(times) == 6 and most_in_any_window(times, 1.0) <= 3 + 1
    assert times[-1] - times[0] >= 0.9
    assert "Waited on limits: job:paced" in result.stdout


# -- waiting: asyncio, timeouts, stops -----------------------------------------------------------------------
def test_async_jobs_take_tokens_with_async_with(project):
    project.config(f'{tenants(3)}[limits]\napi = "5/s"\n')
    project.job("aio", '''
        import os, time
        from pathlib import Path

        async def run(ctx):
            for _ in range(4):
                async with ctx.limit("api"):
                    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                        fh.write(f"{time.time()} {os.getpid()} {ctx.tenant.id}\\n")
        ''')
    result = run(project, "run-background-job", "--name", "aio", "--concurrency", "3")
    assert result.returncode == 0, result.stderr
    times = [t for t, _, _ in calls(project)]
    assert len(times) == 12 and most_in_any_window(times, 1.0) <= 5 + 1
    assert times[-1] - times[0] >= 1.9  # 12 calls at 5/s: the last two come after two seconds


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_the_runs_timeout_ends_a_wait_on_a_limit(project, kind):
    project.config(f'{tenants(1)}[limits]\nslow = "1/h"\n')
    project.job("starved", f'''
        from pathlib import Path

        timeout = 1

        {kind} run(ctx):
            for _ in range(2):  # the second token comes in an hour
                {"async " if kind == "async def" else ""}with ctx.limit("slow"):
                    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                        fh.write("0 0 1\\n")
        ''')
    started = time.monotonic()
    result = run(project, "run-background-job", "--name", "starved", "--json")
    assert time.monotonic() - started < 15
    assert result.returncode == 124, result.stderr
    assert json.loads(result.stdout)["runs"][0]["status"] == "timed_out" and len(project.log()) == 1


def test_a_stop_ends_a_wait_on_a_limit(project):
    project.config(f'{tenants(1)}[limits]\nslow = "1/h"\n')
    project.job("starved", '''
        from pathlib import Path

        def run(ctx):
            for _ in range(2):
                with ctx.limit("slow"):
                    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                        fh.write("0 0 1\\n")
        ''')
    proc = start(project, "run-background-job", "--name", "starved")
    wait_until(lambda: len(project.log()) == 1, what="the first token")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 143, out + err
    assert "interrupted" in out + err
