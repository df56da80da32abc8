"""The executor contract: executors chosen by name, and each local executor over a tiny plan."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.errors import ConfigError, ExitCode
from pinstripe_jobs.execution.executors.base import Executor
from pinstripe_jobs.execution.executors.inline import InlineExecutor
from pinstripe_jobs.execution.executors.registry import EXECUTORS, executor_for
from pinstripe_jobs.execution.executors.tasks import AsyncioExecutor
from pinstripe_jobs.execution.executors.threads import ThreadsExecutor
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.model.plan import RunOptions
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import Observer

ASYNC_JOB = '''
from pathlib import Path

async def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.job} {ctx.tenant.id}\\n")
'''


class Recorder(Observer):
    """Overrides only the per-tenant hooks."""

    def __init__(self) -> None:
        self.started_ids: list[object] = []
        self.results: list[RunResult] = []

    def run_started(self, tenant):
        self.started_ids.append(None if tenant is None else tenant.id)

    def run_finished(self, result):
        self.results.append(result)


@pytest.fixture
def runner(tenant_project):
    tenant_project.job("arecord", ASYNC_JOB)
    runner = Runner(load_settings(cwd=tenant_project.root, env={}))
    yield runner
    runner.close()


@pytest.mark.parametrize("job, concurrency, expected", [
    ("record", None, InlineExecutor), ("record", 3, ThreadsExecutor), ("arecord", None, AsyncioExecutor),
    ("arecord", 3, AsyncioExecutor)])
def test_local_picks_the_executor_by_the_plan(runner, job, concurrency, expected):
    plan = runner.plan(job, RunOptions(concurrency=concurrency))
    executor = runner.executor(plan)
    assert type(executor) is expected and isinstance(executor, Executor) and executor.claims_ahead


def test_an_isolated_async_job_runs_on_threads_or_inline_not_as_tasks(runner):
    plan = runner.plan("arecord", RunOptions(isolation="process"))
    assert type(executor_for("local", runner, plan)) is InlineExecutor


def test_celery_is_chosen_by_name_and_claims_nothing_ahead(runner):
    from pinstripe_jobs.fleet.executor import FleetExecutor

    plan = runner.plan("record", RunOptions(deadline=5.0))
    executor = executor_for("celery", runner, plan)
    assert isinstance(executor, FleetExecutor) and executor.name == "celery"
    assert executor.claims_ahead is False and executor.deadline == 5.0
    assert set(EXECUTORS) == {"local", "celery"}


def test_an_unknown_executor_name_is_a_clear_configuration_error(runner):
    runner.settings.executor = "dask"
    with pytest.raises(ConfigError) as info:
        runner.run("record")
    assert info.value.exit_code == ExitCode.CONFIG
    assert "Unknown executor 'dask'" in info.value.message and "'local', 'celery'" in info.value.message
    assert 'executor = "local"' in (info.value.hint or "")


def test_the_local_executor_never_imports_the_fleet_or_celery(tenant_project):
    """Start-up time: the optional extras are imported only when their executor is used."""
    code = ("import sys\nfrom pinstripe_jobs.config import load_settings\n"
            "from pinstripe_jobs.execution.runner import Runner\n"
            "runner = Runner(load_settings())\nsummary = runner.run('record')\nrunner.close()\n"
            "assert summary.counts == {'succeeded': 4}, summary.counts\n"
            "loaded = [m for m in sys.modules if m.startswith(('celery', 'kombu', 'pinstripe_jobs.fleet'))]\n"
            "assert not loaded, loaded\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tenant_project.root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("kind, job, concurrency", [
    (InlineExecutor, "record", 1), (ThreadsExecutor, "record", 3), (AsyncioExecutor, "arecord", 2)])
def test_each_local_executor_runs_and_reports_every_tenant(runner, tenant_project, kind, job, concurrency):
    plan = runner.plan(job, RunOptions(concurrency=concurrency, keep_runs=True))
    summary = Summary(plan.spec.name, runs=[])
    observer = Recorder()
    kind(runner).run(plan, plan.tenants(), observer, summary)
    assert summary.counts == {Status.SUCCEEDED: 4}
    assert sorted(observer.started_ids) == [1, 2, 3, 4]
    assert sorted(r.tenant for r in observer.results) == [1, 2, 3, 4]
    assert sorted(line.split()[1] for line in tenant_project.log()) == ["1", "2", "3", "4"]


@pytest.mark.parametrize("kind, job, concurrency", [
    (InlineExecutor, "record", 1), (ThreadsExecutor, "record", 3), (AsyncioExecutor, "arecord", 2)])
def test_each_local_executor_skips_and_records_what_it_may_not_start(runner, tenant_project, kind, job, concurrency):
    plan = runner.plan(job, RunOptions(concurrency=concurrency, skip_reason="paused by the operator"))
    summary = Summary(plan.spec.name, runs=[])
    observer = Recorder()
    kind(runner).run(plan, plan.tenants(), observer, summary)
    assert summary.counts == {Status.SKIPPED: 4} and observer.started_ids == []
    assert {(r.status, r.reason) for r in observer.results} == {(Status.SKIPPED, "paused by the operator")}
    assert tenant_project.log() == []
    recorded = runner.state.invocation_outcomes(plan.spec.name, plan.invocation, [1, 2, 3, 4])
    assert {key: outcome[0] for key, outcome in recorded.items()} == {str(i): "skipped" for i in (1, 2, 3, 4)}


THREAD_COUNTING_JOB = '''
import threading
from pathlib import Path

def run(ctx):
    workers = sum(1 for t in threading.enumerate() if t.name.startswith("pinstripe-worker-"))
    with open(Path(__file__).parent.parent / "threads.log", "a") as fh:
        fh.write(f"{workers}\\n")
'''


def test_threads_start_as_tenants_come_never_more_than_there_are_tenants(tenant_project):
    """#20: 20 tenants at --concurrency 20000 started 20,000 threads; now a worker is started only when every
    running one is busy, so a run never has more worker threads than tenants."""
    tenant_project.job("count-threads", THREAD_COUNTING_JOB)
    result = tenant_project.cli("run-background-job", "--name", "count-threads", "--concurrency", "1000")
    assert result.exit_code == 0, result.output
    counts = [int(line) for line in (tenant_project.root / "threads.log").read_text().split()]
    tenants = len(counts)
    assert tenants >= 2 and max(counts) <= tenants
