"""Workspaces (services, isolation, cleanup, nested calls) and the Python API."""
from __future__ import annotations

import asyncio
import json

import pytest

from pinstripe_jobs import JobFailed, arun_background_job, run_background_job
from pinstripe_jobs.errors import UnknownJob, UsageError

from .conftest import RECORDING_JOB

SERVICES = '''
import itertools
from pathlib import Path

LOG = Path(__file__).parent / "services.log"
_ids = itertools.count(1)

def note(text):
    with open(LOG, "a") as fh:
        fh.write(text + "\\n")

class Closable:
    def __init__(self, ctx):
        self.n = next(_ids)
        self.tenant = ctx.tenant.id if ctx.tenant else None
        note(f"open closable {self.n} for {self.tenant}")
    def close(self):
        note(f"close closable {self.n} for {self.tenant}")

def closable(ctx):
    return Closable(ctx)

class Managed:
    def __init__(self, tenant): self.tenant = tenant
    def __enter__(self):
        note(f"enter managed for {self.tenant}")
        return "managed-value"
    def __exit__(self, *exc):
        note(f"exit managed for {self.tenant}")

def managed(ctx):
    return Managed(ctx.tenant.id if ctx.tenant else None)

def generated(ctx):
    tenant = ctx.tenant.id if ctx.tenant else None
    note(f"setup generated for {tenant}")
    yield {"tenant": tenant}
    note(f"teardown generated for {tenant}")

def failing_teardown(ctx):
    yield "x"
    raise OSError("disk gone")
'''


@pytest.fixture
def svc_project(tenant_project):
    tenant_project.module("app_services", SERVICES)
    tenant_project.config('''
        tenants = "sqlite:///tenants.db"
        [services]
        closable = "app_services:closable"
        managed = "app_services:managed"
        generated = "app_services:generated"
        failing_teardown = "app_services:failing_teardown"
    ''')
    return tenant_project


def services_log(project):
    path = project.root / "services.log"
    return path.read_text().splitlines() if path.exists() else []


def test_services_are_lazy_per_workspace_and_cleaned_up(svc_project):
    svc_project.job("uses", '''
        def run(ctx):
            assert ctx.closable is ctx.closable  # one instance per workspace
            assert ctx.managed == "managed-value"
            assert ctx.generated == {"tenant": ctx.tenant.id}
            if ctx.tenant.id == 2:
                raise RuntimeError("fails after using services")
    ''')
    result = svc_project.cli("run-background-job", "--name", "uses", "--tenant", "1", "--tenant", "2")
    assert result.exit_code == 1
    assert services_log(svc_project) == [
        "open closable 1 for 1", "enter managed for 1", "setup generated for 1",
        "teardown generated for 1", "exit managed for 1", "close closable 1 for 1",
        "open closable 2 for 2", "enter managed for 2", "setup generated for 2",
        "teardown generated for 2", "exit managed for 2", "close closable 2 for 2",
    ]


def test_unused_services_are_never_created(svc_project):
    svc_project.job("plain", "def run(ctx):\n    pass\n")
    assert svc_project.cli("run-background-job", "--name", "plain").exit_code == 0
    assert services_log(svc_project) == []


def test_failing_teardown_fails_the_run(svc_project):
    svc_project.job("td", "def run(ctx):\n    ctx.failing_teardown\n")
    result = svc_project.cli("run-background-job", "--name", "td", "--tenant", "1", "--json")
    assert result.exit_code == 1
    run = json.loads(result.stdout)["runs"][0]
    assert run["error"] == "ServiceCleanupError: cleanup of service 'failing_teardown' failed: OSError: disk gone"


def test_unknown_service_is_a_clear_attribute_error(svc_project):
    svc_project.job("typo", "def run(ctx):\n    ctx.mailr\n")
    result = svc_project.cli("run-background-job", "--name", "typo", "--tenant", "1", "--json")
    error = json.loads(result.stdout)["runs"][0]["error"]
    assert "ctx has no attribute or service 'mailr' (services: closable" in error


def test_broken_service_reference_stops_the_run_as_a_configuration_error(svc_project):
    svc_project.config('tenants = "sqlite:///tenants.db"\n[services]\nbad = "app_services:nothing_here"\n')
    svc_project.job("usebad", "def run(ctx):\n    ctx.bad\n")
    result = svc_project.cli("run-background-job", "--name", "usebad", "--json")
    assert result.exit_code == 3  # the config's fault: not run for every tenant as if the job had failed
    doc = json.loads(result.stdout)
    assert "has no attribute 'nothing_here'" in doc["runs"][0]["error"] and doc["status"] == "error"
    assert [r["status"] for r in doc["runs"]] == ["failed", "skipped", "skipped", "skipped"]
    assert doc["runs"][1]["reason"] == "configuration error" and "nothing_here" in doc["error"]


def test_workspace_carries_job_args_params_and_tenant(tenant_project):
    tenant_project.job("echo", '''
        import json
        from pathlib import Path
        def run(ctx, a, *, b="x"):
            with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
                fh.write(json.dumps([ctx.job, ctx.tenant.id, ctx.tenant.name, list(ctx.args), ctx.params]) + "\\n")
    ''')
    result = tenant_project.cli("run-background-job", "--name", "echo", "--arg", "1", "--param", "b=2", "--tenant", "2")
    assert result.exit_code == 0
    assert json.loads(tenant_project.log()[0]) == ["echo", 2, "Globex", ["1"], {"b": "2"}]


def test_nested_call_inside_a_tenant_runs_for_that_tenant_only(tenant_project):
    tenant_project.job("outer", '''
        def run(ctx):
            ctx.run_background_job("record", "from-outer")
    ''')
    result = tenant_project.cli("run-background-job", "--name", "outer", "--tenant", "2", "--tenant", "3")
    assert result.exit_code == 0
    assert tenant_project.log() == ["record 2 ['from-outer'] {}", "record 3 ['from-outer'] {}"]


def test_nested_call_outside_a_tenant_fans_out_and_failures_propagate(tenant_project):
    tenant_project.job("outer", '''
        multi_tenant = False
        def run(ctx):
            ctx.run_background_job("record")
            ctx.run_background_job("boom")
    ''')
    tenant_project.job("boom", "def run(ctx):\n    if ctx.tenant.id == 3:\n        raise ValueError('no')\n")
    result = tenant_project.cli("run-background-job", "--name", "outer", "--json")
    assert [line.split()[1] for line in tenant_project.log()] == ["1", "2", "3", "4"]
    assert result.exit_code == 1
    error = json.loads(result.stdout)["runs"][0]["error"]
    assert error.startswith("JobFailed: Background job 'boom' failed:") and "tenant 3: failed: ValueError: no" in error


def test_nested_call_respects_the_nested_jobs_filter(tenant_project):
    tenant_project.job("active_record", '''
from pathlib import Path
def tenants_filter(t):
    return t.where(active=True)
def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"active {ctx.tenant.id}\\n")
''')
    tenant_project.job("outer", "def run(ctx):\n    ctx.run_background_job('active-record')\n")
    assert tenant_project.cli("run-background-job", "--name", "outer").exit_code == 0
    assert tenant_project.log() == ["active 1", "active 2", "active 4"]


def test_tenant_is_read_only_inside_a_job(tenant_project):
    tenant_project.job("mutate", "def run(ctx):\n    ctx.tenant.name = 'x'\n")
    result = tenant_project.cli("run-background-job", "--name", "mutate", "--tenant", "1", "--json")
    assert "read-only" in json.loads(result.stdout)["runs"][0]["error"]


def test_async_jobs_run(tenant_project):
    tenant_project.job("asyncjob", RECORDING_JOB.replace("def run(ctx, *args, **params):",
                                                         "import asyncio\nasync def run(ctx, *args, **params):\n"
                                                         "    await asyncio.sleep(0)"))
    result = tenant_project.cli("run-background-job", "--name", "asyncjob")
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in tenant_project.log()] == ["1", "2", "3", "4"]


# -- Python API -------------------------------------------------------------------------------------
def test_api_returns_per_run_results(tenant_project):
    tenant_project.job("value", "def run(ctx, n: int):\n    return ctx.tenant.id * n\n")
    summary = run_background_job("value", "10")
    assert [(r.tenant, r.status, r.value) for r in summary.runs] == [
        (1, "succeeded", 10), (2, "succeeded", 20), (3, "succeeded", 30), (4, "succeeded", 40)]


def test_api_raises_job_failed_with_cause_and_results(tenant_project):
    tenant_project.job("risky", "def run(ctx):\n    if ctx.tenant.id in (2, 4):\n"
                                "        raise ValueError(f'bad {ctx.tenant.id}')\n")
    with pytest.raises(JobFailed) as info:
        run_background_job("risky")
    error = info.value
    assert "tenant 2: failed: ValueError: bad 2" in str(error) and "tenant 4: failed: ValueError: bad 4" in str(error)
    assert isinstance(error.__cause__, ValueError) and str(error.__cause__) == "bad 2"
    assert [r.status for r in error.result.runs] == ["succeeded", "failed", "succeeded", "failed"]


def test_api_bad_input_raises_usage_errors(tenant_project):
    with pytest.raises(UnknownJob, match="No background job named 'nope'"):
        run_background_job("nope")
    tenant_project.job("two", "def run(ctx, a, b):\n    pass\n")
    with pytest.raises(UsageError, match="missing a required argument: 'b'"):
        run_background_job("two", 1)


def test_api_takes_config_and_async_form(tmp_path, tenant_project):
    other = tmp_path / "elsewhere"
    (other / "jobs").mkdir(parents=True)
    (other / "jobs" / "hello.py").write_text("multi_tenant = False\ndef run(ctx, who):\n    return f'hi {who}'\n")
    (other / "pinstripe.toml").write_text("")
    summary = run_background_job("hello", "bob", config=other / "pinstripe.toml")
    assert summary.runs[0].value == "hi bob"
    summary = asyncio.run(arun_background_job("hello", "amy", config=str(other / "pinstripe.toml")))
    assert summary.runs[0].value == "hi amy"


def test_api_inside_a_job_runs_for_the_current_tenant(tenant_project):
    tenant_project.job("outer", "from pinstripe_jobs import run_background_job\n"
                                "def run(ctx):\n    run_background_job('record', 'via-api')\n")
    assert tenant_project.cli("run-background-job", "--name", "outer", "--tenant", "4").exit_code == 0
    assert tenant_project.log() == ["record 4 ['via-api'] {}"]


def test_sys_exit_in_a_job_fails_that_tenant_only(tenant_project):
    tenant_project.job("quitter", "import sys\ndef run(ctx):\n    if ctx.tenant.id == 2:\n        sys.exit(5)\n")
    result = tenant_project.cli("run-background-job", "--name", "quitter", "--json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    assert [(r["tenant"], r["status"], r["error"]) for r in runs] == [
        (1, "succeeded", None), (2, "failed", "SystemExit: 5"), (3, "succeeded", None), (4, "succeeded", None)]


def test_keyboard_interrupt_through_the_api_still_cleans_up(svc_project):
    svc_project.job("ctrlc", "def run(ctx):\n    ctx.closable\n    raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        run_background_job("ctrlc")
    assert services_log(svc_project) == ["open closable 1 for 1", "close closable 1 for 1"]
    history = json.loads(svc_project.cli("history", "--json").stdout)["runs"]
    assert [(r["tenant"], r["status"]) for r in history] == [(1, "interrupted")]


def test_the_api_raises_a_clean_config_error_when_the_source_breaks_mid_run(project, monkeypatch):
    """summary.error (tenant source, state store or a service broke mid-run) becomes a ConfigError whose
    message is not labelled twice."""
    import sqlite3

    from pinstripe_jobs import ConfigError, run_background_job
    from pinstripe_jobs.tenants import sqlite as native

    monkeypatch.setattr(native, "PAGE", 2)
    project.sqlite_tenants([{"id": i, "name": f"t{i}", "active": True, "plan": None} for i in range(1, 7)])
    with sqlite3.connect(project.root / "tenants.db") as db:  # a duplicate id on the second page
        db.execute("CREATE TABLE t2 AS SELECT * FROM tenants")
        db.execute("UPDATE t2 SET id = 3 WHERE id = 4")
    project.config('tenants = "sqlite:///tenants.db"\ntenants_table = "t2"\n')
    project.job("record", RECORDING_JOB)
    with pytest.raises(ConfigError) as info:
        run_background_job("record")
    assert info.value.message.startswith("Duplicate tenant id 3") and info.value.exit_code == 3
    assert "Configuration error" not in info.value.message and info.value.hint == "Make `id` the table's primary key."
    assert len(project.log()) == 3  # what ran before the break did run


@pytest.mark.parametrize("options, message", [
    ({"concurrency": 30000}, "concurrency must be a whole number from 1 to 1000, got 30000"),
    ({"retries": 10**9}, "retries must be a whole number from 0 to 100"),
    ({"timeout": float("nan")}, "timeout must be a number of seconds > 0"),
    ({"timeout": 1e300}, "timeout must be a number of seconds > 0"),
])
def test_the_python_api_checks_the_same_ranges_as_the_command_line(tenant_project, options, message):
    """#20: run_background_job(concurrency=30000) was unbounded (the CLI refused it, the API started threads)."""
    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.errors import UsageError
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.model.plan import RunOptions

    runner = Runner(load_settings(cwd=tenant_project.root, env={}))
    try:
        with pytest.raises(UsageError) as info:
            runner.plan("record", RunOptions(**options))
        assert message in info.value.message
    finally:
        runner.close()
