"""Concurrent tenants (threads and asyncio), sharding and streaming output."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.model.plan import RunOptions, shard_of

SCRIPT = Path(sys.executable).parent / "pinstripe"

# Records how many runs overlap, via a module global shared by the worker threads.
OVERLAP_JOB = '''
import threading, time{aimport}
from pathlib import Path
LOCK = threading.Lock()
STATE = {{"now": 0, "peak": 0}}
{adef}run(ctx):
    with LOCK:
        STATE["now"] += 1
        STATE["peak"] = max(STATE["peak"], STATE["now"])
    {sleep}
    with LOCK:
        STATE["now"] -= 1
    if ctx.tenant.id % 7 == 0:
        raise ValueError(f"tenant {{ctx.tenant.id}} fails")
    (Path(__file__).parent.parent / f"peak").write_text(str(STATE["peak"]))
    return ctx.tenant.id * 2
'''


def many_tenants(project, n):
    path = project.root / "many.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO tenants VALUES (?, ?)", [(i, f"t{i}") for i in range(1, n + 1)])
    project.config('tenants = "sqlite:///many.db"\n')


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_concurrent_results_equal_sequential_results(project, kind):
    many_tenants(project, 30)
    if kind == "thread":
        source = OVERLAP_JOB.format(aimport="", adef="def ", sleep="time.sleep(0.05)")
    else:
        source = OVERLAP_JOB.format(aimport="\nimport asyncio", adef="async def ", sleep="await asyncio.sleep(0.05)")
    project.job("overlap", source)
    runner = Runner(load_settings(cwd=project.root, env={}))
    sequential = runner.run("overlap", RunOptions(keep_runs=True))
    assert (project.root / "peak").read_text() == "1"
    runner = Runner(load_settings(cwd=project.root, env={}))
    parallel = runner.run("overlap", RunOptions(keep_runs=True, concurrency=8))
    assert int((project.root / "peak").read_text()) > 4  # really ran side by side
    outcome = lambda s: sorted((r.tenant, r.status, r.value, r.error) for r in s.runs)  # noqa: E731
    assert outcome(parallel) == outcome(sequential)
    assert parallel.counts == sequential.counts == {"succeeded": 26, "failed": 4}
    assert parallel.duration_s < sequential.duration_s / 3


def test_services_are_never_shared_between_tenants_under_threads(project):
    many_tenants(project, 40)
    project.module("svc_mod", '''
import itertools, threading
COUNT = itertools.count()
CLOSED = []
class Conn:
    def __init__(self, tenant):
        self.id = next(COUNT)
        self.tenant = tenant
        self.owner = threading.get_ident()
    def close(self):
        CLOSED.append(self.id)
def conn(ctx):
    return Conn(ctx.tenant.id)
''')
    project.config('tenants = "sqlite:///many.db"\n[services]\nconn = "svc_mod:conn"\n')
    project.job("use", '''
import time
def run(ctx):
    first = ctx.conn
    time.sleep(0.01)
    assert ctx.conn is first and first.tenant == ctx.tenant.id
    return first.id
''')
    summary = Runner(load_settings(cwd=project.root, env={})).run("use", RunOptions(keep_runs=True, concurrency=8))
    assert summary.counts == {"succeeded": 40}
    ids = [r.value for r in summary.runs]
    assert len(set(ids)) == 40  # one instance per workspace
    import svc_mod

    assert sorted(svc_mod.CLOSED) == sorted(ids)  # and each one closed


@pytest.mark.parametrize("concurrency", [1, 4])
def test_fail_fast_cancels_what_has_not_started(project, concurrency):
    many_tenants(project, 50)
    project.job("early", '''
import time
def run(ctx):
    time.sleep(0.02)
    if ctx.tenant.id == 3:
        raise ValueError("three")
''')
    summary = Runner(load_settings(cwd=project.root, env={})).run(
        "early", RunOptions(keep_runs=True, concurrency=concurrency, fail_fast=True))
    assert summary.total == 50  # every tenant reported
    started = [r for r in summary.runs if r.status != "skipped"]
    assert len(started) <= 3 + concurrency
    skipped = [r for r in summary.runs if r.status == "skipped"]
    assert skipped and all(r.reason == "fail-fast: an earlier tenant failed" for r in skipped)
    assert summary.exit_code == 1


def test_max_failures_stops_starting_tenants(project):
    many_tenants(project, 20)
    project.job("bad", "def run(ctx):\n    if ctx.tenant.id in (2, 5, 9):\n        raise ValueError('x')\n")
    result = project.cli("run-background-job", "--name", "bad", "--max-failures", "2", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 1
    statuses = [(r["tenant"], r["status"]) for r in doc["runs"]]
    assert statuses[:5] == [(1, "succeeded"), (2, "failed"), (3, "succeeded"), (4, "succeeded"), (5, "failed")]
    assert all(s == "skipped" for _, s in statuses[5:]) and len(statuses) == 20
    assert doc["runs"][5]["reason"] == "max failures (2) reached"


def test_shards_cover_every_tenant_exactly_once(project):
    many_tenants(project, 200)
    project.job("record", "def run(ctx):\n    return ctx.tenant.id\n")
    seen = []
    for k in range(4):
        summary = Runner(load_settings(cwd=project.root, env={})).run(
            "record", RunOptions(keep_runs=True, shard=(k, 4)))
        seen.append({r.value for r in summary.runs})
    assert sorted(x for shard in seen for x in shard) == list(range(1, 201))
    assert all(len(shard) > 25 for shard in seen)  # roughly even
    # Stable across processes and machines (not Python's salted hash): fixed values.
    assert [shard_of(i, 4) for i in (1, 2, 3, "acme")] == [shard_of(str(i), 4) for i in (1, 2, 3, "acme")]
    code = "from pinstripe_jobs.model.plan import shard_of; print([shard_of(i, 7) for i in range(20)])"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and runs.pop().strip() == str([shard_of(i, 7) for i in range(20)])


def test_shard_dry_run_via_cli(project):
    many_tenants(project, 10)
    project.job("record", "def run(ctx):\n    pass\n")
    ids = []
    for k in range(3):
        result = project.cli("run-background-job", "--name", "record", "--shard", f"{k}/3", "--dry-run", "--json")
        ids += json.loads(result.stdout)["tenants"]
    assert sorted(ids) == list(range(1, 11))


def test_concurrent_output_has_whole_lines(tenant_project):
    many_tenants(tenant_project, 40)
    tenant_project.job("chatty", '''
import time
def run(ctx):
    for i in range(20):
        print(f"tenant={ctx.tenant.id} line={i} " + "x" * 50)
        time.sleep(0.0005)
''')
    result = subprocess.run([str(SCRIPT), "run-background-job", "--name", "chatty", "--concurrency", "8"],
                            cwd=tenant_project.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "line=" in line]
    assert len(lines) == 800
    assert all(re.fullmatch(r"tenant=\d+ line=\d+ x{50}", line) for line in lines)
    results = [line for line in result.stdout.splitlines() if line.strip().startswith("SUCCEEDED")]
    assert len(results) == 40


def test_json_runs_are_streamed_as_they_finish(tenant_project):
    tenant_project.job("gate", '''
import time
from pathlib import Path
def run(ctx):
    if ctx.tenant.id == 3:
        gate = Path(__file__).parent.parent / "open"
        while not gate.exists():
            time.sleep(0.02)
''')
    proc = subprocess.Popen([str(SCRIPT), "run-background-job", "--name", "gate", "--json"], cwd=tenant_project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    head = ""
    deadline = time.time() + 20
    while '"tenant": 2' not in head and time.time() < deadline:
        head += os.read(proc.stdout.fileno(), 4096).decode()
    assert '"tenant": 1' in head and '"tenant": 2' in head and '"tenant": 3' not in head
    (tenant_project.root / "open").write_text("")
    rest, _ = proc.communicate(timeout=30)
    doc = json.loads(head + rest)
    assert [r["tenant"] for r in doc["runs"]] == [1, 2, 3, 4] and doc["status"] == "succeeded"


@pytest.mark.parametrize("kind", ["thread", "async"])
def test_a_bug_of_ours_in_one_tenant_fails_that_tenant_and_loses_none(project, kind, monkeypatch):
    """An internal error on the per-tenant path (here: taking the lease) is that tenant's failure, and
    every other tenant still runs and is reported."""
    from pinstripe_jobs.execution.leases import Leases

    many_tenants(project, 6)
    body = ("async def run(ctx):\n    return ctx.tenant.id\n" if kind == "async"
            else "def run(ctx):\n    return ctx.tenant.id\n")
    project.job("work", body)
    real = Leases.acquire

    def acquire(self, plan, tenant, attempt, told, observer):
        if tenant.id == 3:
            raise RuntimeError("a bug of ours")
        return real(self, plan, tenant, attempt, told, observer)

    monkeypatch.setattr(Leases, "acquire", acquire)
    runner = Runner(load_settings(cwd=project.root, env={}))
    summary = runner.run("work", RunOptions(keep_runs=True, concurrency=3))
    runner.close()
    outcome = {r.tenant: (r.status, r.error) for r in summary.runs}
    assert sorted(outcome) == [1, 2, 3, 4, 5, 6]
    assert outcome[3] == ("failed", "internal error: RuntimeError: a bug of ours")
    assert all(status == "succeeded" for t, (status, _) in outcome.items() if t != 3)
