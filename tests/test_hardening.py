"""Signals, timeouts, process isolation, retries, CI reports, log format and secrets, with real processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from pinstripe_jobs.model.results import RunResult, Summary
from tests.procs import SCRIPT, start, wait_for

SERVICE = '''
from pathlib import Path
LOG = Path(__file__).parent / "services.log"
def res(ctx):
    with open(LOG, "a") as fh:
        fh.write(f"open {ctx.tenant.id}\\n")
    yield "resource"
    with open(LOG, "a") as fh:
        fh.write(f"close {ctx.tenant.id}\\n")
'''

# Each tenant's run marks that it started, then sleeps in small steps for SLEEP seconds.
SLOW_JOB = '''
import time
from pathlib import Path
ROOT = Path(__file__).parent.parent
def run(ctx, seconds: float):
    ctx.res
    (ROOT / f"started-{ctx.tenant.id}").write_text("")
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(0.01)
'''


@pytest.fixture
def slow_project(tenant_project):
    tenant_project.module("svc", SERVICE)
    tenant_project.config('tenants = "sqlite:///tenants.db"\n[services]\nres = "svc:res"\n')
    tenant_project.job("slow", SLOW_JOB)
    return tenant_project


def services_log(project):
    return (project.root / "services.log").read_text().splitlines()


def test_sigterm_lets_the_running_tenant_finish_and_skips_the_rest(slow_project):
    proc = start(slow_project, "run-background-job", "--name", "slow", "--arg", "0.6", "--json")
    wait_for(slow_project.root / "started-1")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    doc = json.loads(out)
    assert [(r["tenant"], r["status"]) for r in doc["runs"]] == [
        (1, "succeeded"), (2, "skipped"), (3, "skipped"), (4, "skipped")]
    assert doc["runs"][1]["reason"] == "interrupted" and doc["interrupted_by"] == signal.SIGTERM
    assert services_log(slow_project) == ["open 1", "close 1"]


def test_sigint_after_grace_interrupts_the_running_tenant(slow_project):
    proc = start(slow_project, "run-background-job", "--name", "slow", "--arg", "30", "--grace", "0.5")
    wait_for(slow_project.root / "started-1")
    began = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.time() - began < 10
    assert "INTERRUPTED (no" not in out
    assert "INTERRUPTED tenant 1" in out and "SKIPPED     tenant 2  0.000s  (interrupted)" in out
    assert "(interrupted by SIGINT)" in out  # the summary line
    assert services_log(slow_project) == ["open 1", "close 1"]  # cleaned up
    history = json.loads(subprocess.run([str(SCRIPT), "history", "--json"], cwd=slow_project.root,
                                        capture_output=True, text=True).stdout)["runs"]
    # the tenants never started are in history too, so that --only-failed picks them up
    assert [(r["tenant"], r["status"]) for r in history] == [(4, "skipped"), (3, "skipped"), (2, "skipped"),
                                                             (1, "interrupted")]


def test_second_ctrl_c_aborts_at_once_but_still_summarises(slow_project):
    proc = start(slow_project, "run-background-job", "--name", "slow", "--arg", "30", "--grace", "60")
    wait_for(slow_project.root / "started-1")
    began = time.time()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # still within the grace period
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.time() - began < 10
    assert "slow: interrupted - 1 interrupted, 3 skipped" in out
    assert services_log(slow_project) == ["open 1", "close 1"]


@pytest.mark.parametrize("extra", [["--concurrency", "2"], ["--isolation", "process"]])
def test_sigterm_with_threads_or_processes(slow_project, extra):
    proc = start(slow_project, "run-background-job", "--name", "slow", "--arg", "30", "--grace", "0.5", "--json",
                 *extra)
    wait_for(slow_project.root / "started-1")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    runs = json.loads(out)["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} <= {"interrupted", "skipped"}
    assert runs[0]["status"] == "interrupted" or runs[1]["status"] == "interrupted"


def test_hanging_plain_job_is_stopped_by_its_timeout(tenant_project):
    tenant_project.job("hang", '''
import time
timeout = 0.5
def run(ctx):
    if ctx.tenant.id == 2:
        time.sleep(60)  # ignores any cancellation
''')
    began = time.time()
    result = tenant_project.cli("run-background-job", "--name", "hang", "--json")
    assert time.time() - began < 15
    assert result.exit_code == 124
    runs = json.loads(result.stdout)["runs"]
    assert [(r["tenant"], r["status"]) for r in runs] == [
        (1, "succeeded"), (2, "timed_out"), (3, "succeeded"), (4, "succeeded")]
    assert runs[1]["error"] == "timed out after 0.5s"


def test_async_job_timeout_cancels_it_and_cli_overrides(tenant_project):
    tenant_project.job("ahang", "import asyncio\nasync def run(ctx):\n    if ctx.tenant.id == 4:\n"
                                "        await asyncio.sleep(60)\n")
    result = tenant_project.cli("run-background-job", "--name", "ahang", "--timeout", "0.3", "--json")
    assert result.exit_code == 124
    assert [r["status"] for r in json.loads(result.stdout)["runs"]] == ["succeeded"] * 3 + ["timed_out"]


def test_failure_beats_timeout_in_the_exit_code(tenant_project):
    tenant_project.job("mixed", "import time\ntimeout = 0.3\ndef run(ctx):\n    if ctx.tenant.id == 1:\n"
                                "        time.sleep(10)\n    if ctx.tenant.id == 2:\n        raise ValueError('x')\n")
    assert tenant_project.cli("run-background-job", "--name", "mixed").exit_code == 1


@pytest.mark.parametrize("crash, expected", [
    ("import ctypes; ctypes.string_at(0)", "killed by SIGSEGV"),
    ("import os; os._exit(3)", "exited with status 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
])
def test_process_isolation_contains_crashes(tenant_project, crash, expected):
    tenant_project.job("crashy", f"def run(ctx):\n    if ctx.tenant.id == 2:\n        {crash}\n"
                                 "    return ctx.tenant.id\n")
    result = tenant_project.cli("run-background-job", "--name", "crashy", "--isolation", "process", "--json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    assert [(r["tenant"], r["status"]) for r in runs] == [
        (1, "succeeded"), (2, "failed"), (3, "succeeded"), (4, "succeeded")]
    assert expected in runs[1]["error"] and runs[1]["error"].startswith("ChildProcessError")


def test_process_isolation_does_not_leak_global_state_and_returns_values(tenant_project):
    tenant_project.job("leaky", "isolation = 'process'\nSEEN = []\ndef run(ctx):\n    SEEN.append(ctx.tenant.id)\n"
                                "    return list(SEEN)\n")
    from pinstripe_jobs import run_background_job

    summary = run_background_job("leaky")
    assert [r.value for r in summary.runs] == [[1], [2], [3], [4]]


def test_process_isolation_with_concurrency(tenant_project):
    tenant_project.job("pids", "import os, time\ndef run(ctx):\n    time.sleep(0.5)\n    return os.getpid()\n")
    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.model.plan import RunOptions

    began = time.time()
    summary = Runner(load_settings(env={})).run("pids", RunOptions(isolation="process", concurrency=4, keep_runs=True))
    assert time.time() - began < 1.5  # one after another would take at least 2 s
    pids = [r.value for r in summary.runs]
    assert len(set(pids)) == 4 and os.getpid() not in pids


def test_retries_record_every_attempt_and_the_last_decides(tenant_project):
    tenant_project.job("flaky", '''
retries = 3
retry_backoff = 0
def run(ctx):
    if ctx.tenant.id == 2 and ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}")
    if ctx.tenant.id == 4:
        raise ValueError("always")
''')
    result = tenant_project.cli("run-background-job", "--name", "flaky", "--json")
    assert result.exit_code == 1
    runs = {r["tenant"]: r for r in json.loads(result.stdout)["runs"]}
    assert (runs[2]["status"], runs[2]["attempts"]) == ("succeeded", 3)
    assert (runs[4]["status"], runs[4]["attempts"]) == ("failed", 4)
    history = json.loads(tenant_project.cli("history", "--json", "--tenant", "2").stdout)["runs"]
    assert [(r["attempt"], r["status"]) for r in history] == [(3, "succeeded"), (2, "failed"), (1, "failed")]
    result = tenant_project.cli("run-background-job", "--name", "flaky", "--retries", "0", "--tenant", "2", "--json")
    assert json.loads(result.stdout)["runs"][0]["status"] == "failed"


def test_backoff_is_exponential_with_jitter():
    from pinstripe_jobs.execution.attempts import backoff_delay

    assert backoff_delay(1.0, 1, lambda: 0.5) == 1.0
    assert backoff_delay(1.0, 3, lambda: 0.5) == 4.0
    assert backoff_delay(2.0, 2, lambda: 0.0) == 2.0 and backoff_delay(2.0, 2, lambda: 0.99) == pytest.approx(5.96)


@pytest.mark.parametrize("counts, signal_number, already, code", [
    ({"succeeded": 3}, None, 0, 0),
    ({"succeeded": 2, "skipped": 1}, None, 1, 4),
    ({"timed_out": 1, "skipped": 1}, None, 1, 124),
    ({"failed": 1, "timed_out": 1}, None, 0, 1),
    ({"failed": 1}, signal.SIGINT, 0, 130),
    ({"succeeded": 1}, signal.SIGTERM, 0, 143),
])
def test_exit_code_precedence(counts, signal_number, already, code):
    summary = Summary("job", signal=signal_number)
    for status, n in counts.items():
        for _ in range(n):
            summary.add(RunResult(1, status, reason="already running" if status == "skipped" and already else None))
    assert int(summary.exit_code) == code


def test_junit_xml_report(tenant_project):
    tenant_project.job("mixed", "def run(ctx):\n    if ctx.tenant.id == 2:\n"
                                "        raise ValueError('bad <data> & more')\n")
    report = tenant_project.root / "reports" / "junit.xml"
    result = tenant_project.cli("run-background-job", "--name", "mixed", "--junit-xml", str(report), "--fail-fast")
    assert result.exit_code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "2")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["tenant 1", "tenant 2", "tenant 3", "tenant 4"]
    failure = cases[1].find("failure")
    assert failure.get("message") == "ValueError: bad <data> & more"
    assert 'mixed.py", line 3, in run' in failure.text
    assert cases[2].find("skipped").get("message") == "fail-fast: an earlier tenant failed"
    assert not (tenant_project.root / "reports" / "junit.xml.part").exists()


def test_github_actions_annotations_and_step_summary(tenant_project, monkeypatch):
    summary_file = tenant_project.root / "step_summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    tenant_project.job("mixed", "def run(ctx):\n    if ctx.tenant.id == 3:\n"
                                "        raise ValueError('line one\\nline two')\n")
    result = tenant_project.cli("run-background-job", "--name", "mixed")
    assert result.exit_code == 1
    assert "::error title=mixed tenant 3%3A failed::ValueError: line one%0Aline two" in result.stdout
    text = summary_file.read_text()
    assert "### ❌ `mixed`: failed" in text and "| 3 | failed | ValueError: line one\\nline two |" in text
    result = tenant_project.cli("run-background-job", "--name", "mixed", "--json")
    json.loads(result.stdout)  # annotations go to stderr under --json
    assert "::error title=mixed tenant 3" in result.stderr


def test_log_format_json(tenant_project):
    tenant_project.job("logs", "def run(ctx):\n    ctx.log.warning('hello %s', ctx.tenant.name)\n")
    result = tenant_project.cli("run-background-job", "--name", "logs", "--log-format", "json", "--tenant", "2")
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines == [{"level": "warning", "message": "hello Globex", "job": "logs", "tenant": 2, "attempt": 1,
                      "logger": "pinstripe.job"}]


def test_passwords_are_masked_everywhere(tenant_project):
    url = "postgresql://app:s3cr3t-pw@db.internal/prod"
    tenant_project.job("leak", f'''
def run(ctx):
    ctx.log.error("connecting to {url}")
    raise ConnectionError("cannot reach {url}")
''')
    report = tenant_project.root / "junit.xml"
    result = tenant_project.cli("run-background-job", "--name", "leak", "--tenant", "1", "--junit-xml", str(report))
    json_result = tenant_project.cli("run-background-job", "--name", "leak", "--tenant", "1", "--json")
    history = tenant_project.cli("history", "--json")
    for text in (result.stdout, result.stderr, json_result.stdout, json_result.stderr, report.read_text(),
                 history.stdout):
        assert "s3cr3t-pw" not in text
    assert "app:***@db.internal" in result.stdout and "app:***@db.internal" in result.stderr


def test_sigkill_of_the_runner_keeps_finished_tenants_and_shows_the_running_one_abandoned(tenant_project):
    tenant_project.job("slow3", '''
import time
from pathlib import Path
def run(ctx):
    if ctx.tenant.id == 3:
        (Path(__file__).parent.parent / "started-3").write_text("")
        time.sleep(60)
''')
    proc = start(tenant_project, "run-background-job", "--name", "slow3")
    wait_for(tenant_project.root / "started-3")
    proc.kill()
    proc.wait()
    runs = json.loads(subprocess.run([str(SCRIPT), "history", "--json"], cwd=tenant_project.root,
                                     capture_output=True, text=True).stdout)["runs"]
    assert [(r["tenant"], r["status"]) for r in runs] == [(3, "abandoned"), (2, "succeeded"), (1, "succeeded")]


def test_process_isolation_contains_a_memory_blow_up(tenant_project):
    tenant_project.job("hungry", '''
import resource
def run(ctx):
    if ctx.tenant.id == 3:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # stays in this child process
        hoard = bytearray(4 << 30)
    return ctx.tenant.id
''')
    import resource

    limit_before = resource.getrlimit(resource.RLIMIT_AS)
    result = tenant_project.cli("run-background-job", "--name", "hungry", "--isolation", "process", "--json")
    assert result.exit_code == 1
    runs = json.loads(result.stdout)["runs"]
    assert [(r["tenant"], r["status"]) for r in runs] == [
        (1, "succeeded"), (2, "succeeded"), (3, "failed"), (4, "succeeded")]
    assert runs[2]["error"].startswith("MemoryError")
    assert resource.getrlimit(resource.RLIMIT_AS) == limit_before  # the parent was not touched
