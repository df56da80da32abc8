"""With telemetry off, nothing of OpenTelemetry or prometheus-client is imported (they are installed here)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import TENANTS
from tests.procs import clean_env, modules_after

HEAVY = "m.split('.')[0] in ('opentelemetry', 'prometheus_client', 'google')"


@pytest.fixture
def plain_project(project, monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    project.sqlite_tenants(TENANTS)
    project.config('tenants = "sqlite:///tenants.db"\n')
    project.job("sync", 'schedule = "0 3 * * *"\n\ndef run(ctx):\n    ctx.log.info("hi")\n')
    return project


def test_a_run_and_a_tick_import_neither(plain_project):
    pytest.importorskip("opentelemetry.sdk")
    pytest.importorskip("prometheus_client")
    assert modules_after(plain_project.root, ["run-background-job", "--name", "sync", "--log-format", "json"],
                         HEAVY) == []
    assert modules_after(plain_project.root, ["run-due-jobs", "--at", "2026-11-29T03:00:05+00:00"], HEAVY) == []


def test_a_monitor_alone_imports_neither(plain_project):
    plain_project.config('tenants = "sqlite:///tenants.db"\n[monitor]\nstart = "http://127.0.0.1:9/s"\n'
                         'success = "http://127.0.0.1:9/ok"\nfail = "http://127.0.0.1:9/f"\ntimeout = 0.2\n')
    assert modules_after(plain_project.root, ["run-background-job", "--name", "sync"], HEAVY) == []


def test_the_python_api_and_the_dashboard_app_import_neither(plain_project):
    code = ("import sys\nfrom pinstripe_jobs import run_background_job\nrun_background_job('sync')\n"
            "from pinstripe_jobs.config import load_settings\n"
            "from pinstripe_jobs.web.app import Dashboard, create_app\n"
            "create_app(Dashboard(load_settings()))\n"
            f"print(sorted(m for m in sys.modules if {HEAVY}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=plain_project.root, env=clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_traces_on_imports_opentelemetry(plain_project):
    """The check above can fail: the same probe sees OpenTelemetry when tracing is on."""
    pytest.importorskip("opentelemetry.sdk")
    plain_project.config('tenants = "sqlite:///tenants.db"\n[telemetry]\ntraces = true\n')
    plain_project.monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    found = modules_after(plain_project.root, ["run-background-job", "--name", "sync"], HEAVY)
    assert "opentelemetry.trace" in found
