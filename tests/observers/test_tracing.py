"""OpenTelemetry traces of real runs, sent over OTLP/HTTP to a real receiver (protobuf decoded)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TENANTS
from tests.observers.receivers import OtlpReceiver
from tests.procs import run

pytest.importorskip("opentelemetry.sdk")

# A job with its own instrumented call (a span of its own): it must nest under the tenant's run span.
TRACED_JOB = '''
import asyncio
from opentelemetry import trace

tracer = trace.get_tracer("the-app")

def run(ctx):
    with tracer.start_as_current_span("app.query") as span:
        span.set_attribute("tenant", str(ctx.tenant.id))
        ctx.log.info("querying")
        if ctx.tenant.id == 2:
            raise ValueError("tenant 2 is broken")
'''

ASYNC_JOB = '''
import asyncio
from opentelemetry import trace

tracer = trace.get_tracer("the-app")

async def run(ctx):
    await asyncio.sleep(0.01)
    with tracer.start_as_current_span("app.call"):
        await asyncio.sleep(0.01)
'''


def otel_env(receiver: OtlpReceiver, **extra: str) -> dict:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_SERVICE_NAME": "billing-worker",
            "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}


@pytest.fixture
def traced_project(project):
    project.sqlite_tenants(TENANTS)
    project.config('tenants = "sqlite:///tenants.db"\n')
    project.job("traced", TRACED_JOB)
    project.job("traced-async", ASYNC_JOB)
    return project


@pytest.mark.parametrize("concurrency", ["1", "3"])
def test_a_local_run_is_one_trace_with_a_span_per_tenant_and_the_jobs_own_spans_inside(traced_project, concurrency):
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-background-job", "--name", "traced", "--concurrency", concurrency,
                   "--log-format", "json", env=otel_env(receiver))
        assert done.returncode == 1, done.stderr  # tenant 2 failed
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1 and len(r.named("app.query")) == 4)
    [invocation] = receiver.named("pinstripe.invocation")
    runs = receiver.named("pinstripe.run")
    assert invocation.resource["service.name"] == "billing-worker"
    assert invocation.attributes["pinstripe.job"] == "traced"
    assert invocation.attributes["pinstripe.trigger"] == "manual"
    assert invocation.attributes["pinstripe.executor"] == "local"
    assert invocation.attributes["pinstripe.tenant_count"] == 4
    assert invocation.attributes["pinstripe.exit_code"] == 1
    assert invocation.status_code == 2  # ERROR: a tenant failed
    assert invocation.parent_id == ""
    assert sorted(r.attributes["pinstripe.tenant_id"] for r in runs) == ["1", "2", "3", "4"]
    assert {r.trace_id for r in runs} == {invocation.trace_id}
    assert {r.parent_id for r in runs} == {invocation.span_id}
    by_tenant = {r.attributes["pinstripe.tenant_id"]: r for r in runs}
    failed = by_tenant["2"]
    assert failed.status_code == 2 and "tenant 2 is broken" in failed.status_message
    assert failed.attributes["pinstripe.status"] == "failed"
    assert ("exception", ) == tuple({name for name, _ in failed.events})
    assert failed.events[0][1]["exception.type"] == "ValueError"
    assert all(by_tenant[t].status_code != 2 and by_tenant[t].attributes["pinstripe.status"] == "succeeded"
               for t in ("1", "3", "4"))
    assert all(r.attributes["pinstripe.attempt"] == 1 for r in runs)
    for query in receiver.named("app.query"):  # the job's own span is a child of its tenant's run span
        assert query.parent_id == by_tenant[query.attributes["tenant"]].span_id
        assert query.trace_id == invocation.trace_id
    # the JSON log lines carry the trace and span ids of the run they were written in
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert len(lines) == 4
    for line in lines:
        run_span = by_tenant[str(line["tenant"])]
        assert line["trace_id"] == invocation.trace_id
        [query] = [q for q in receiver.named("app.query") if q.attributes["tenant"] == str(line["tenant"])]
        assert line["span_id"] == query.span_id and query.parent_id == run_span.span_id


def test_an_async_jobs_spans_nest_under_its_tenants_run_span(traced_project):
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-background-job", "--name", "traced-async", "--concurrency", "4",
                   env=otel_env(receiver))
        assert done.returncode == 0, done.stderr
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1 and len(r.named("app.call")) == 4)
    runs = {r.span_id: r for r in receiver.named("pinstripe.run")}
    assert len(runs) == 4
    assert sorted(runs[c.parent_id].attributes["pinstripe.tenant_id"] for c in receiver.named("app.call")) == \
        ["1", "2", "3", "4"]


def test_retries_are_one_span_per_attempt(traced_project):
    traced_project.job("flaky", '''
        from pathlib import Path

        def run(ctx):
            marker = Path(f"attempted-{ctx.tenant.id}")
            if not marker.exists():
                marker.write_text("1")
                raise RuntimeError("first attempt fails")
    ''')
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-background-job", "--name", "flaky", "--tenant", "1", "--retries", "1",
                   env=otel_env(receiver))
        assert done.returncode == 0, done.stderr
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1)
    runs = sorted(receiver.named("pinstripe.run"), key=lambda r: r.attributes["pinstripe.attempt"])
    assert [(r.attributes["pinstripe.attempt"], r.attributes["pinstripe.status"]) for r in runs] == \
        [(1, "failed"), (2, "succeeded")]


def test_a_bot_tick_is_one_trace(traced_project):
    traced_project.job("nightly", '''
        schedule = "0 3 * * *"

        def run(ctx):
            pass
    ''')
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-due-jobs", "--at", "2026-11-29T03:00:10+00:00", env=otel_env(receiver))
        assert done.returncode == 0, done.stdout + done.stderr
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1 and len(r.named("pinstripe.run")) == 4)
    [invocation] = receiver.named("pinstripe.invocation")
    assert invocation.attributes["pinstripe.trigger"] == "schedule"
    assert invocation.attributes["pinstripe.tick"].startswith("2026-11-29T03:00")
    assert invocation.parent_id == ""
    assert {r.trace_id for r in receiver.named("pinstripe.run")} == {invocation.trace_id}


def test_telemetry_traces_false_wins_over_the_environment_and_sdk_disabled_turns_it_off(traced_project):
    with OtlpReceiver() as receiver:
        traced_project.config('tenants = "sqlite:///tenants.db"\n[telemetry]\ntraces = false\n')
        first = run(traced_project, "run-background-job", "--name", "traced-async", env=otel_env(receiver))
        traced_project.config('tenants = "sqlite:///tenants.db"\n[telemetry]\ntraces = true\n')
        second = run(traced_project, "run-background-job", "--name", "traced-async",
                     env=otel_env(receiver, OTEL_SDK_DISABLED="true"))
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        # both processes have exited: a span they sent would have been received before they ended (the SDK
        # exports what is batched at exit, synchronously)
        assert receiver.spans == []


def test_traces_true_turns_tracing_on_without_any_otel_variable(traced_project):
    with OtlpReceiver() as receiver:
        traced_project.config('tenants = "sqlite:///tenants.db"\n[telemetry]\ntraces = true\n')
        done = run(traced_project, "run-background-job", "--name", "traced-async", "--tenant", "1",
                   env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces"})
        assert done.returncode == 0, done.stderr
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1)
    assert receiver.named("pinstripe.invocation")[0].resource["service.name"] == "pinstripe-jobs"


def test_an_unsupported_exporter_is_a_clear_configuration_error(traced_project):
    done = run(traced_project, "run-background-job", "--name", "traced-async", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    assert done.returncode == 3
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported" in done.stderr and "Traceback" not in done.stderr


def test_an_isolated_run_that_times_out_is_an_error_span(traced_project):
    traced_project.job("slow", '''
        import time

        def run(ctx):
            if ctx.tenant.id == 1:
                time.sleep(30)
    ''')
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-background-job", "--name", "slow", "--timeout", "0.5", "--tenant", "1",
                   "--tenant", "2", env=otel_env(receiver))
        assert done.returncode == 124, done.stderr  # timed out
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1)
    runs = {r.attributes["pinstripe.tenant_id"]: r for r in receiver.named("pinstripe.run")}
    assert runs["1"].attributes["pinstripe.status"] == "timed_out" and runs["1"].status_code == 2
    assert "timed out after 0.5s" in runs["1"].status_message
    assert runs["2"].attributes["pinstripe.status"] == "succeeded"


def test_an_isolated_jobs_own_spans_nest_under_its_run_span(traced_project):
    """isolation = "process" (and timed plain jobs): the job runs in a forked child, which sends its spans."""
    traced_project.job("isolated", 'isolation = "process"\n' + TRACED_JOB)
    with OtlpReceiver() as receiver:
        done = run(traced_project, "run-background-job", "--name", "isolated", env=otel_env(receiver))
        assert done.returncode == 1, done.stderr
        receiver.wait(lambda r: len(r.named("pinstripe.invocation")) == 1 and len(r.named("app.query")) == 4)
    runs = {r.attributes["pinstripe.tenant_id"]: r for r in receiver.named("pinstripe.run")}
    for query in receiver.named("app.query"):
        assert query.parent_id == runs[query.attributes["tenant"]].span_id
    assert runs["2"].status_code == 2 and "tenant 2 is broken" in runs["2"].status_message
