"""``ctx.limit`` on the fleet (issue #22): real ``pinstripe worker`` processes over real brokers (Redis,
RabbitMQ) share one ``[limits]`` rate through the PostgreSQL state store. Every call is counted from the
job's own log (one line per call: its ``time.time()``, pid and tenant)."""
from __future__ import annotations

import json
import uuid

import pytest

from tests.execution.test_limits import most_in_any_window
from tests.procs import run
from tests.test_fleet import _stop_workers, broker, worker  # noqa: F401 - fixtures used by name

pytest.importorskip("celery", reason="the celery extra is not installed")

TENANTS = 20

JOB = '''
import os, time
from pathlib import Path

def run(ctx):
    with ctx.limit("api"):
        with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
            fh.write(f"{time.time()} {os.getpid()} {ctx.tenant.id}\\n")
'''


def test_a_rate_limit_holds_across_fleet_workers(project, broker, pg_schema_url):  # noqa: F811
    project.json_tenants([{"id": i} for i in range(1, TENANTS + 1)])
    queue = f"pst-{uuid.uuid4().hex[:10]}"
    project.config(f'tenants = "tenants.json"\nstate = "{pg_schema_url}"\n\n[limits]\napi = "5/s"\n\n'
                   f'[celery]\nbroker = "{broker}"\nqueue = "{queue}"\nbatch_size = 2\n')
    project.job("limited", JOB)
    for _ in range(2):  # two worker processes, one pool process each
        worker(project, "--concurrency", "1")
    result = run(project, "run-background-job", "--name", "limited", "--executor", "celery", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in project.log()]
    assert sorted(int(tenant) for _, _, tenant in rows) == list(range(1, TENANTS + 1))  # every tenant ran once
    assert len({pid for _, pid, _ in rows}) >= 2, rows  # the calls came from more than one process
    assert most_in_any_window([float(t) for t, _, _ in rows], 1.0) <= 5 + 1  # 5/s, one call of slack
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == TENANTS and {r["status"] for r in runs} == {"succeeded"}
