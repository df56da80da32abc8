"""Heartbeat monitors: a real local HTTP server receives the calls of real runs, in order."""
from __future__ import annotations

import time

from tests.conftest import TENANTS
from tests.observers.receivers import PingReceiver
from tests.procs import free_port, run

JOB = '''
def run(ctx, fail="0"):
    if ctx.tenant.id == int(fail):
        raise RuntimeError("broken")
'''


def setup(project, monitor: str, job_extra: str = "") -> None:
    project.sqlite_tenants(TENANTS)
    project.config(f'tenants = "sqlite:///tenants.db"\n{monitor}')
    project.job("sync", job_extra + JOB)


def test_start_then_success_with_the_exit_code_and_counts_in_the_body(project):
    with PingReceiver() as pings:
        setup(project, f'[monitor]\nurl = "{pings.url}/ping/KEY/{{job}}/{{event}}"\n')
        done = run(project, "run-background-job", "--name", "sync")
    assert done.returncode == 0, done.stderr
    assert [(m, p) for m, p, _ in pings.calls] == [("POST", "/ping/KEY/sync/start"), ("POST", "/ping/KEY/sync/success")]
    start, success = pings.calls[0][2], pings.calls[1][2]
    assert start["event"] == "start" and start["job"] == "sync" and start["trigger"] == "manual"
    assert success["exit_code"] == 0 and success["counts"] == {"succeeded": 4} and success["status"] == "succeeded"
    assert success["invocation"] == start["invocation"]


def test_a_failed_run_calls_fail_and_keeps_its_exit_code(project):
    with PingReceiver() as pings:
        setup(project, f'[monitor]\nurl = "{pings.url}/ping/{{job}}/{{event}}/{{exit_code}}"\n')
        done = run(project, "run-background-job", "--name", "sync", "--param", "fail=3")
    assert done.returncode == 1
    assert [p for _, p, _ in pings.calls] == ["/ping/sync/start/", "/ping/sync/fail/1"]
    assert pings.calls[1][2]["counts"] == {"failed": 1, "succeeded": 3}


def test_per_event_urls_and_get(project):
    with PingReceiver() as pings:
        setup(project, f'[monitor]\nmethod = "GET"\nstart = "{pings.url}/p/{{job}}?state=run"\n'
                       f'success = "{pings.url}/p/{{job}}?state=complete"\nfail = "{pings.url}/p/{{job}}?state=fail"\n')
        run(project, "run-background-job", "--name", "sync", "--param", "fail=1")
    assert pings.calls == [("GET", "/p/sync?state=run", None), ("GET", "/p/sync?state=fail", None)]


def test_a_job_overrides_the_url_or_turns_its_monitor_off(project):
    with PingReceiver() as pings:
        setup(project, f'[monitor]\nurl = "{pings.url}/all/{{job}}/{{event}}"\n',
              job_extra=f'monitor = "{pings.url}/own/{{event}}"\n')
        project.job("quiet", "monitor = False\n" + JOB)
        run(project, "run-background-job", "--name", "sync")
        run(project, "run-background-job", "--name", "quiet")
    assert [p for _, p, _ in pings.calls] == ["/own/start", "/own/success"]


def test_a_monitor_that_is_down_or_slow_never_changes_the_outcome(project):
    down = f"http://127.0.0.1:{free_port()}"
    setup(project, f'[monitor]\nurl = "{down}/SECRET-KEY/{{event}}"\n')
    done = run(project, "run-background-job", "--name", "sync")
    assert done.returncode == 0
    assert "monitor start call for sync failed" in done.stderr and "SECRET-KEY" not in done.stderr
    with PingReceiver(delay=3) as slow:
        project.config(f'tenants = "sqlite:///tenants.db"\n[monitor]\nurl = "{slow.url}/{{event}}"\ntimeout = 0.3\n')
        began = time.monotonic()
        done = run(project, "run-background-job", "--name", "sync", "--param", "fail=2")
        took = time.monotonic() - began
    assert done.returncode == 1
    assert took < 5, took  # two calls cut at 0.3s each, not 2 x 3s
    assert done.stderr.count("TimeoutError") + done.stderr.count("timed out") >= 2


def test_bad_monitor_config_is_a_clear_error(project):
    project.job("sync", JOB)
    for table, message in (('[monitor]\nurll = "https://x"\n', "Unknown key 'urll' in [monitor]"),
                           ('[monitor]\nurl = "ftp://x/{event}"\n', "is not an http(s) URL"),
                           ('[monitor]\nurl = "https://x"\ntimeout = 0\n', "timeout"),
                           ('[monitor]\nstart = "https://x/s"\n', "has no url"),
                           ('[telemetry]\ntraces = "yes"\n', "must be true or false"),
                           ('[telemetry]\nendpoint = "x"\n', "OTEL_*")):
        project.config(table)
        done = run(project, "run-background-job", "--name", "sync")
        assert done.returncode == 3, (table, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, (table, done.stderr)


def test_an_invocation_skipped_as_already_running_sends_no_end(project):
    """The running instance reports its own end; the skipped one only its start."""
    from tests.procs import start, wait_for

    project.sqlite_tenants(TENANTS[:1])
    with PingReceiver() as pings:
        project.config(f'tenants = "sqlite:///tenants.db"\n[monitor]\nurl = "{pings.url}/{{job}}/{{event}}"\n')
        project.job("hold", '''
            import time
            from pathlib import Path

            def run(ctx):
                Path("holding").write_text("1")
                deadline = time.time() + 60
                while not Path("release").exists() and time.time() < deadline:
                    time.sleep(0.02)
        ''')
        first = start(project, "run-background-job", "--name", "hold")
        wait_for(project.root / "holding")
        second = run(project, "run-background-job", "--name", "hold")
        (project.root / "release").write_text("1")
        first.communicate(timeout=60)
    assert second.returncode == 4 and first.returncode == 0
    assert [p for _, p, _ in pings.calls] == ["/hold/start", "/hold/start", "/hold/success"]
