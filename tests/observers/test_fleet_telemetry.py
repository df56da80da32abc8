"""Telemetry on the fleet: real ``pinstripe worker`` processes (prefork), a real broker and PostgreSQL. The
workers' run spans join the CLI's trace; a prefork worker's --metrics-port counts what all its pool ran."""
from __future__ import annotations

from collections import Counter

import pytest

from tests.observers.receivers import OtlpReceiver
from tests.observers.test_metrics import by_job_and_status, counted, scrape
from tests.observers.test_tracing import otel_env
from tests.procs import free_port, history, run, wait_until
from tests.test_fleet import worker

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("prometheus_client")


def test_a_fleet_run_is_one_trace_across_the_cli_and_the_workers(fleet):
    with OtlpReceiver() as receiver:
        env = otel_env(receiver)
        worker(fleet, "--concurrency", "2", env=env)
        done = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", env=env)
        assert done.returncode == 1, done.stderr  # tenant 6 fails
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1 and len(r.named("pinstripe.run")) == 8,
                      timeout=60)
    [invocation] = receiver.named("pinstripe.invocation")
    runs = receiver.named("pinstripe.run")
    assert invocation.attributes["pinstripe.executor"] == "celery"
    assert {r.trace_id for r in runs} == {invocation.trace_id}
    assert {r.parent_id for r in runs} == {invocation.span_id}
    [failed] = [r for r in runs if r.status_code == 2]
    assert failed.attributes["pinstripe.tenant_id"] == "6"


def test_a_prefork_workers_metrics_count_what_its_pool_ran(fleet):
    port = free_port()
    worker(fleet, "--concurrency", "2", "--pool", "prefork", "--metrics-port", str(port))
    assert run(fleet, "run-background-job", "--name", "work", "--executor", "celery").returncode == 1
    assert run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--tenant", "1").returncode == 0
    expected = by_job_and_status(history(fleet))
    assert expected == Counter({("work", "succeeded"): 8, ("work", "failed"): 1})
    samples = wait_until(lambda: (s := scrape(port)) and counted(s, "pinstripe_runs_total") == expected and s,
                         timeout=30, what="the worker's metrics to count every run")
    assert samples[("pinstripe_run_duration_seconds_count", ("job", "work"))] == 9
    assert samples[("pinstripe_runs_running", ("job", "work"))] == 0
