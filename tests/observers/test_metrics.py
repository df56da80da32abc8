"""Prometheus metrics of real runs, scraped over HTTP and parsed with prometheus_client's parser: the
dashboard's /metrics (from history), the bot's and a prefork worker's --metrics-port (what they ran)."""
from __future__ import annotations

import signal
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import TENANTS
from tests.procs import free_port, history, run, start, wait_until

pytest.importorskip("prometheus_client")

JOB = '''
def run(ctx, fail="0"):
    if ctx.tenant.id == int(fail):
        raise RuntimeError("broken")
'''


def scrape(port: int) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {(s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
            for s in f.samples}


def by_job_and_status(rows) -> Counter:
    return Counter((r["job"], r["status"]) for r in rows)


def counted(samples: dict, name: str) -> Counter:
    found: Counter = Counter()
    for key, value in samples.items():
        if key[0] == name and value:
            labels = dict(key[1:])
            found[(labels["job"], labels["status"])] = int(value)
    return found


def test_the_dashboard_serves_history_as_metrics(project):
    project.sqlite_tenants(TENANTS)
    project.config('tenants = "sqlite:///tenants.db"\n')
    project.job("sync", JOB)
    project.job("report", JOB)
    assert run(project, "run-background-job", "--name", "sync", "--param", "fail=2").returncode == 1
    assert run(project, "run-background-job", "--name", "sync").returncode == 0
    assert run(project, "run-background-job", "--name", "report", "--shard", "0/2").returncode == 0
    port = free_port()
    start(project, "dashboard", "--port", str(port))
    samples = wait_until(lambda: scrape(port), timeout=30, what="the dashboard's /metrics")
    rows = history(project)
    assert counted(samples, "pinstripe_history_runs") == by_job_and_status(rows)
    assert counted(samples, "pinstripe_history_invocations") == Counter({("sync", "failed"): 1,
                                                                         ("sync", "succeeded"): 1,
                                                                         ("report", "succeeded"): 1})
    newest = max(datetime.fromisoformat(r["ended_at"]) for r in rows if r["job"] == "sync" and
                 r["status"] == "succeeded")
    assert samples[("pinstripe_history_last_success_timestamp_seconds", ("job", "sync"))] == \
        pytest.approx(newest.timestamp(), abs=0.001)


def test_the_bot_serves_metrics_of_what_it_ran(project):
    """One daily tick made due at once with --since: its runs, its lag, its invocation; equal to history."""
    project.sqlite_tenants(TENANTS)
    project.config('tenants = "sqlite:///tenants.db"\nmisfire_grace = 172800\n')
    project.job("nightly", 'schedule = "0 3 * * *"\n' + JOB.replace('fail="0"', 'fail="4"'))
    now = datetime.now(UTC)
    tick = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if tick > now:
        tick -= timedelta(days=1)
    port = free_port()
    bot = start(project, "start-bot", "--metrics-port", str(port), "--since", (tick - timedelta(minutes=1)).isoformat())

    def invoked():
        samples = scrape(port)
        return samples if samples.get(("pinstripe_invocations_total", ("job", "nightly"), ("status", "failed"))) \
            else None

    samples = wait_until(invoked, timeout=60, what="the bot's invocation in its metrics")
    rows = history(project)
    assert counted(samples, "pinstripe_runs_total") == by_job_and_status(rows) == \
        Counter({("nightly", "succeeded"): 3, ("nightly", "failed"): 1})
    assert samples[("pinstripe_run_duration_seconds_count", ("job", "nightly"))] == 4
    assert samples[("pinstripe_runs_running", ("job", "nightly"))] == 0
    lag = samples[("pinstripe_schedule_lag_seconds", ("job", "nightly"))]
    assert (now - tick).total_seconds() - 5 <= lag <= (datetime.now(UTC) - tick).total_seconds() + 5
    assert samples[("pinstripe_last_success_timestamp_seconds", ("job", "nightly"))] >= now.timestamp() - 5
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=60)
    assert bot.returncode == 0, err
    assert not [key for key in samples if "tenant" in dict(key[1:])]  # never a tenant label


def test_metrics_port_in_use_is_a_clear_error(project):
    project.config("")
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        done = run(project, "start-bot", "--metrics-port", str(taken.getsockname()[1]))
    assert done.returncode == 2
    assert "--metrics-port" in done.stderr and "cannot listen" in done.stderr and "Traceback" not in done.stderr


def test_skip_reasons_are_labels_without_hosts_or_numbers():
    from pinstripe_jobs.observers.metrics import reason_label

    assert reason_label("already running (pid 123 on web-1)") == "already running"
    assert reason_label("max failures (3) reached") == "max failures"
    assert reason_label("something new: host-7") == "other"
    assert reason_label(None) == "other"


def test_a_dashboard_with_no_history_yet_serves_empty_metrics():
    from prometheus_client.parser import text_string_to_metric_families

    from pinstripe_jobs.observers.metrics import history_exposition

    body, content_type = history_exposition(None)
    assert content_type.startswith("text/plain")
    families = {f.name: f.samples for f in text_string_to_metric_families(body.decode())}
    assert families == {"pinstripe_history_runs": [], "pinstripe_history_invocations": [],
                        "pinstripe_history_last_success_timestamp_seconds": []}
