"""``RetryAfter`` with the inline executor (``--concurrency 1``, issue #22): the tenant is deferred, not slept
on, so the tenants after it run meanwhile; a stop reports every tenant once. Through the installed
``pinstripe`` in real processes; every attempt is counted from the job's own log (``time.time()``)."""
from __future__ import annotations

import json
import signal

import pytest

from tests.procs import run, start, wait_until

JOB = '''
import os, time
from pathlib import Path
from pinstripe_jobs import RetryAfter

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{{time.time()}} {{ctx.tenant.id}} {{ctx.attempt}}\\n")
    if ctx.tenant.id == 1 and ctx.attempt == 1:
        raise RetryAfter({delay}, "429 from the partner")
    if ctx.tenant.id == {blocker}:
        time.sleep(3)  # still running when the stop comes: finishes within the grace period
'''


def tenants(n: int) -> str:
    return "tenants = [" + ", ".join(f"{{id = {i}}}" for i in range(1, n + 1)) + "]\n"


def attempts(project) -> list[tuple[float, str, int]]:
    rows = [line.split() for line in project.log()]
    return sorted((float(t), tenant, int(attempt)) for t, tenant, attempt in rows)


def test_inline_defers_a_retry_after_and_runs_the_other_tenants_meanwhile(project):
    project.config(tenants(4))
    project.job("partner", JOB.format(delay=2, blocker=0))
    result = run(project, "run-background-job", "--name", "partner", "--concurrency", "1", "--json")
    assert result.returncode == 0, result.stderr
    made = attempts(project)
    first = [t for t, who, _ in made if who == "1"]
    others = {who: t for t, who, _ in made if who != "1"}
    assert len(first) == 2 and sorted(others) == ["2", "3", "4"]  # tried again once; the others once each
    assert max(others.values()) < first[1]  # tenants 2..4 started before tenant 1's second attempt
    assert first[1] - first[0] >= 2  # after the delay asked for
    runs = json.loads(result.stdout)["runs"]
    assert sorted(r["tenant"] for r in runs) == [1, 2, 3, 4]  # each reported once
    one = next(r for r in runs if r["tenant"] == 1)
    assert one["status"] == "succeeded" and one["attempts"] == 2


@pytest.mark.parametrize("blocker", [0, 3], ids=["waiting-after-the-last-tenant", "while-another-tenant-runs"])
def test_a_stop_reports_a_deferred_tenant_once_with_its_retry_after_failure(project, blocker):
    project.config(tenants(4))
    project.job("partner", JOB.format(delay=60, blocker=blocker))
    proc = start(project, "run-background-job", "--name", "partner", "--concurrency", "1", "--json")
    expected = 3 if blocker else 4  # tenant 1, 2 (and 3, blocking, when blocker); or all four
    wait_until(lambda: len(project.log()) == expected, what="tenant 1 deferred and the others reached")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, out + err
    assert len(project.log()) == expected  # tenant 1 was not tried again
    runs = json.loads(out)["runs"]
    assert sorted(r["tenant"] for r in runs) == [1, 2, 3, 4]  # every tenant reported exactly once
    one = next(r for r in runs if r["tenant"] == 1)
    assert one["status"] == "failed" and "retry after 60s: 429 from the partner" in one["error"]
    if blocker:
        status = {r["tenant"]: r["status"] for r in runs}
        assert status[3] == "succeeded" and status[4] != "succeeded"  # 4 never started (not in the log)
