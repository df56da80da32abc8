"""The celery executor against real brokers on loopback (Redis and RabbitMQ), with real ``pinstripe
worker`` processes and a real PostgreSQL state store. What ran is counted from the jobs' own log.
CI sets PINSTRIPE_REQUIRE_BROKERS=1: a broker that is down fails there instead of skipping."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.procs import SCRIPT, STARTED, clean_env, pid_alive, run, unavailable, wait_for, wait_until

pytest.importorskip("celery", reason="the celery extra is not installed")

BROKERS = {"redis": ("127.0.0.1", 6379, "redis://127.0.0.1:6379/0"),
           "rabbitmq": ("127.0.0.1", 5672, "amqp://guest:guest@127.0.0.1:5672//")}

# Appends "start T pid" and "end T pid" to calls.log; tenants listed in "hold" wait for the file "release".
FLEET_JOB = '''
import os, time
from pathlib import Path

ROOT = Path(__file__).parent.parent

def log(text):
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(text + "\\n")

def run(ctx):
    tenant = ctx.tenant.id
    log(f"start {tenant} {os.getpid()}")
    print(f"hello from {tenant}")
    try:  # the test may remove it at any moment
        hold = (ROOT / "hold").read_text().split()
    except FileNotFoundError:
        hold = []
    if str(tenant) in hold:
        (ROOT / f"holding-{tenant}").write_text(str(os.getpid()))
        deadline = time.time() + 60
        while not (ROOT / "release").exists() and time.time() < deadline:
            time.sleep(0.02)
    if tenant == 6:
        raise ValueError("six is broken")
    log(f"end {tenant} {os.getpid()}")
'''


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(params=list(BROKERS))
def broker(request):
    host, port, url = BROKERS[request.param]
    if not _reachable(host, port):
        unavailable(f"{request.param} not reachable at {host}:{port}", "PINSTRIPE_REQUIRE_BROKERS")
    return url


@pytest.fixture
def fleet(project, broker, pg_schema_url):
    """A project with 8 tenants, PostgreSQL state and the broker; its own queue (tests do not share one)."""
    project.json_tenants([{"id": i} for i in range(1, 9)])
    queue = f"pst-{uuid.uuid4().hex[:10]}"
    project.config(f'tenants = "tenants.json"\nstate = "{pg_schema_url}"\n\n[celery]\nbroker = "{broker}"\n'
                   f'queue = "{queue}"\nbatch_size = 2\n')
    project.job("work", FLEET_JOB)
    project.broker = broker
    return project


WORKERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_workers():
    yield
    while WORKERS:
        proc = WORKERS.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and its pool processes
        except ProcessLookupError:
            pass
        proc.wait()


def worker(project, *args, env=None) -> subprocess.Popen:
    log = open(project.root / f"worker-{len(WORKERS)}.log", "w")
    proc = subprocess.Popen([str(SCRIPT), "worker", "--loglevel", "INFO", *args], cwd=project.root,
                            env=clean_env(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    WORKERS.append(proc)
    wait_until(lambda: "ready." in (project.root / log.name).read_text() or proc.poll() is not None, timeout=60,
               what="the worker to be ready")
    assert proc.poll() is None, (project.root / log.name).read_text()
    return proc


def calls(project) -> list[list[str]]:
    return [line.split() for line in project.log()]


def as_json(result) -> dict:
    return json.loads(result.stdout)


def by_tenant(doc: dict) -> dict:
    return {run["tenant"]: run["status"] for run in doc["runs"]}


def test_a_fleet_run_reports_what_a_local_run_does(fleet):
    local = run(fleet, "run-background-job", "--name", "work", "--json")
    worker(fleet, "--concurrency", "2")
    junit = fleet.root / "fleet.xml"
    remote = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--json", "--junit-xml",
                 str(junit))
    assert remote.returncode == local.returncode == 1, remote.stderr
    assert by_tenant(as_json(remote)) == by_tenant(as_json(local)) == {i: "failed" if i == 6 else "succeeded"
                                                                      for i in range(1, 9)}
    assert as_json(remote)["status"] == as_json(local)["status"] == "failed"
    ran = [c for c in calls(fleet) if c[0] == "start"]
    assert sorted(int(c[1]) for c in ran) == sorted(list(range(1, 9)) * 2)  # each tenant once per run
    worker_pids = {int(c[2]) for c in ran[8:]}
    assert {run["pid"] for run in as_json(remote)["runs"]} == worker_pids and os.getpid() not in worker_pids
    assert all(run["host"] == os.uname().nodename for run in as_json(remote)["runs"])
    assert sorted(line for line in remote.stderr.splitlines() if line.startswith("hello")) == \
        sorted(line for line in local.stderr.splitlines() if line.startswith("hello"))  # the jobs' output
    failed = next(run for run in as_json(remote)["runs"] if run["tenant"] == 6)
    assert failed["error"] == "ValueError: six is broken" and "raise ValueError" in failed["traceback"]
    assert 'failures="1"' in junit.read_text() and 'tests="8"' in junit.read_text()
    history = json.loads(run(fleet, "history", "--json", "--limit", "100").stdout)["runs"]
    assert len(history) == 16 and {r["status"] for r in history} == {"succeeded", "failed"}


def test_the_fleet_runs_the_invocations_tenant_selection_not_the_workers_own_source(fleet):
    """#20: --tenants, --shard and --exclude-tenant travel with every batch, and workers resolve the batch's
    tenants against that source (they used to read their own config's, and skip them all)."""
    from pinstripe_jobs.model.plan import shard_of

    fleet.sqlite_tenants([{"id": i, "name": f"t{i}", "active": True, "plan": "pro"} for i in range(101, 131)],
                         name="other.db")
    in_shard = [i for i in range(101, 131) if shard_of(i, 3) == 1]
    excluded, expected = in_shard[0], in_shard[1:]
    worker(fleet, "--concurrency", "2")
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--tenants",
                 "sqlite:///other.db", "--shard", "1/3", "--exclude-tenant", str(excluded), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = as_json(result)
    assert by_tenant(doc) == {i: "succeeded" for i in expected}, doc
    assert doc["counts"] == {"succeeded": len(expected)}
    assert sorted(int(c[1]) for c in calls(fleet) if c[0] == "start") == expected  # ran on the workers, once each
    assert {r["pid"] for r in doc["runs"]}.isdisjoint({os.getpid()})


def test_a_tenants_long_output_on_the_fleet_is_cut_with_a_visible_marker(fleet):
    fleet.job("loud", "def run(ctx):\n    print('x' * 100_000)\n    print('the end')\n")
    worker(fleet, "--concurrency", "1")
    result = run(fleet, "run-background-job", "--name", "loud", "--executor", "celery", "--tenant", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "x" * 1000 in result.stdout and "the end" not in result.stdout
    cut = len("x" * 100_000 + "\n" + "the end\n") - 64 * 1024
    assert f"\n[output cut: {cut} more characters not shown; a tenant's output on the fleet is capped at 64 KiB]\n" \
        in result.stdout


def test_celery_own_command_runs_the_same_worker(fleet):
    """`celery -A pinstripe_jobs.fleet.worker worker` with PINSTRIPE_CONFIG: the app of that config."""
    queue = [line for line in (fleet.root / "pinstripe.toml").read_text().splitlines() if line.startswith("queue")]
    log = open(fleet.root / "celery.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "pinstripe_jobs.fleet.worker", "worker",
                             "--pool", "solo", "--loglevel", "INFO", "-Q", queue[0].split('"')[1]], cwd="/",
                            env=clean_env({"PINSTRIPE_CONFIG": str(fleet.root / "pinstripe.toml")}), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    WORKERS.append(proc)
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--json")
    assert result.returncode == 1, result.stderr + (fleet.root / "celery.log").read_text()
    assert by_tenant(as_json(result)) == {i: "failed" if i == 6 else "succeeded" for i in range(1, 9)}
    assert {run["pid"] for run in as_json(result)["runs"]} == {proc.pid}  # the solo pool runs in the worker


def test_the_plain_output_shows_each_tenant_as_its_result_arrives(fleet):
    worker(fleet, "--concurrency", "2", "--pool", "threads")
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery")
    assert result.returncode == 1
    assert result.stdout.count("SUCCEEDED") == 7 and result.stdout.count("FAILED") == 1
    assert "hello from 3" in result.stdout and "1 failed, 7 succeeded" in result.stdout


def test_a_sqlite_state_store_is_a_configuration_error(project, broker):
    project.json_tenants([{"id": 1}])
    project.config(f'tenants = "tenants.json"\n\n[celery]\nbroker = "{broker}"\nqueue = "pst-{uuid.uuid4().hex}"\n')
    project.job("work", FLEET_JOB)
    result = run(project, "run-background-job", "--name", "work", "--executor", "celery")
    assert result.returncode == 3
    assert "state store that every worker host shares" in result.stderr and "Traceback" not in result.stderr
    assert calls(project) == []


@pytest.mark.parametrize("scheme", ["redis://:secret@127.0.0.1:{port}/0", "amqp://guest:secret@127.0.0.1:{port}//"])
def test_a_broker_that_is_down_is_a_clear_error_before_anything_is_sent(project, pg_schema_url, scheme):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    project.json_tenants([{"id": 1}, {"id": 2}])
    project.config(f'tenants = "tenants.json"\nstate = "{pg_schema_url}"\n\n[celery]\n'
                   f'broker = "{scheme.format(port=port)}"\n')
    project.job("work", FLEET_JOB)
    result = run(project, "run-background-job", "--name", "work", "--executor", "celery", "--json")
    assert result.returncode == 3
    assert "cannot be reached" in result.stderr and "Nothing was sent" in result.stderr
    assert "secret" not in result.stderr + result.stdout
    assert json.loads(result.stdout)["exit_code"] == 3
    assert json.loads(run(project, "history", "--json").stdout)["runs"] == []


def test_a_worker_whose_broker_is_down_says_so_and_exits_3(project):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    project.config(f'[celery]\nbroker = "redis://:secret@127.0.0.1:{port}/0"\n')
    result = subprocess.run([str(SCRIPT), "worker"], cwd=project.root, env=clean_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 3
    assert "cannot be reached" in result.stderr and "secret" not in result.stderr and "Traceback" not in result.stderr


def test_a_job_module_missing_on_the_worker_is_a_configuration_error(fleet):
    (fleet.root / "other-jobs").mkdir()
    worker(fleet, "--concurrency", "1", "--jobs-dir", "other-jobs")
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--json")
    assert result.returncode == 3, result.stderr
    doc = as_json(result)
    assert len(doc["runs"]) == 8 and {r["status"] for r in doc["runs"]} == {"skipped"}  # every tenant reported
    assert "No job named 'work'" in result.stderr or "work" in doc.get("error", "")
    assert calls(fleet) == []


def test_a_worker_killed_mid_batch_is_redelivered_and_no_tenant_runs_twice(fleet):
    (fleet.root / "hold").write_text("4")  # batch [3, 4]: 3 finishes, then 4 holds
    worker(fleet, "--concurrency", "2")
    cli = subprocess.Popen([str(SCRIPT), "run-background-job", "--name", "work", "--executor", "celery", "--json"],
                           cwd=fleet.root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(cli)
    wait_for(fleet.root / "holding-4", timeout=60)
    victim = int(wait_until(lambda: (fleet.root / "holding-4").read_text(), what="the pid of tenant 4's process"))
    (fleet.root / "hold").unlink()  # the redelivered run of 4 does not hold
    os.kill(victim, signal.SIGKILL)  # kill -9 the pool process in the middle of batch [3, 4]
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, err  # tenant 6 fails, as always; nothing else
    doc = json.loads(out)
    assert by_tenant(doc) == {i: "failed" if i == 6 else "succeeded" for i in range(1, 9)}
    ends = [c for c in calls(fleet) if c[0] == "end"]
    assert sorted(int(c[1]) for c in ends) == [1, 2, 3, 4, 5, 7, 8]  # each finished exactly once
    starts = sorted(int(c[1]) for c in calls(fleet) if c[0] == "start")
    assert starts == [1, 2, 3, 4, 4, 5, 6, 7, 8]  # only the killed tenant started twice
    assert not pid_alive(victim)
    history = json.loads(run(fleet, "history", "--json", "--limit", "100", "--tenant", "4").stdout)["runs"]
    assert sorted(r["status"] for r in history) == ["abandoned", "succeeded"]


def test_sigterm_of_the_cli_cancels_the_rest_and_reports_every_tenant(fleet):
    (fleet.root / "hold").write_text("1 3")  # both pool processes hold: batches [1, 2] and [3, 4]
    worker(fleet, "--concurrency", "2")
    cli = subprocess.Popen([str(SCRIPT), "run-background-job", "--name", "work", "--executor", "celery", "--json",
                            "--grace", "1"], cwd=fleet.root, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    STARTED.append(cli)
    wait_for(fleet.root / "holding-1", timeout=60)
    wait_for(fleet.root / "holding-3", timeout=60)
    cli.send_signal(signal.SIGTERM)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 143, err
    doc = json.loads(out)
    assert sorted(r["tenant"] for r in doc["runs"]) == list(range(1, 9))  # every tenant reported
    assert {r["status"] for r in doc["runs"]} <= {"interrupted", "skipped"}
    (fleet.root / "release").write_text("1")
    # the held tenant finishes on its worker; every other tenant was cancelled: never started
    wait_until(lambda: {"1", "3"} <= {c[1] for c in calls(fleet) if c[0] == "end"}, timeout=60,
               what="the held tenants to finish")
    wait_until(lambda: not json.loads(run(fleet, "history", "--json", "--status", "running").stdout)["runs"],
               timeout=60, what="the workers to finish their batches")
    started = {int(c[1]) for c in calls(fleet) if c[0] == "start"}
    assert started == {1, 3}  # the cancel marker: no other tenant started
    statuses = {r["tenant"]: r["status"] for r in
                json.loads(run(fleet, "history", "--json", "--limit", "100").stdout)["runs"]}
    assert set(statuses) == set(range(1, 9))  # every tenant has a recorded status


def test_two_clis_at_once_never_overlap_a_tenant(fleet):
    fleet.job("slow", '''
import os, time
from pathlib import Path

ROOT = Path(__file__).parent.parent

def run(ctx):
    marker = ROOT / f"running-{ctx.tenant.id}"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        with open(ROOT / "calls.log", "a") as fh:
            fh.write(f"OVERLAP {ctx.tenant.id}\\n")
        return
    os.close(fd)
    with open(ROOT / "calls.log", "a") as fh:
        fh.write(f"ran {ctx.tenant.id}\\n")
    time.sleep(0.3)
    marker.unlink()
''')
    config = (fleet.root / "pinstripe.toml").read_text().replace("batch_size = 2", "batch_size = 1")
    (fleet.root / "pinstripe.toml").write_text(config)
    worker(fleet, "--concurrency", "8", "--pool", "threads")
    command = [str(SCRIPT), "run-background-job", "--name", "slow", "--executor", "celery", "--json"]
    first, second = (subprocess.Popen(command, cwd=fleet.root, env=clean_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2))
    STARTED.extend([first, second])
    docs = [json.loads(proc.communicate(timeout=120)[0]) for proc in (first, second)]
    assert not [c for c in calls(fleet) if c[0] == "OVERLAP"]
    for doc in docs:
        assert sorted(r["tenant"] for r in doc["runs"]) == list(range(1, 9))
    skipped = [r for doc in docs for r in doc["runs"] if r["status"] == "skipped"]
    assert all(r["reason"] == "already running" for r in skipped)
    ran = [c for c in calls(fleet) if c[0] == "ran"]
    assert len(ran) + len(skipped) == 16 and {int(c[1]) for c in ran} == set(range(1, 9))
    assert {first.returncode, second.returncode} <= {0, 4}


def test_the_bot_dispatches_due_ticks_through_the_fleet(fleet):
    fleet.job("nightly", 'schedule = "0 3 * * *"\n' + FLEET_JOB)
    config = (fleet.root / "pinstripe.toml").read_text().replace("[celery]", 'executor = "celery"\n\n[celery]')
    (fleet.root / "pinstripe.toml").write_text(config)
    worker(fleet, "--concurrency", "2")
    result = run(fleet, "run-due-jobs", "--at", "2026-11-29T03:00:20+00:00")
    assert result.returncode == 1, result.stdout + result.stderr  # tenant 6 fails, as it does locally
    assert "1 failed, 7 succeeded" in result.stdout
    starts = [c for c in calls(fleet) if c[0] == "start"]
    assert sorted(int(c[1]) for c in starts) == list(range(1, 9))
    history = json.loads(run(fleet, "history", "--json", "--job", "nightly", "--limit", "100").stdout)["runs"]
    assert len(history) == 8 and {r["trigger"] for r in history} == {"schedule"}
    assert {r["tick"][:19] for r in history} == {"2026-11-29T03:00:00"}
    again = run(fleet, "run-due-jobs", "--at", "2026-11-29T03:00:40+00:00")  # the tick is claimed: once
    assert again.returncode == 0, again.stdout + again.stderr
    assert len([c for c in calls(fleet) if c[0] == "start"]) == 8


def test_the_deadline_reports_tenants_that_never_come_back_as_interrupted(fleet):
    (fleet.root / "hold").write_text("1")
    worker(fleet, "--concurrency", "1")
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--json", "--deadline", "2")
    doc = as_json(result)
    assert result.returncode == 1, result.stderr
    statuses = by_tenant(doc)
    assert sorted(statuses) == list(range(1, 9)) and statuses[1] == "interrupted"
    assert "deadline" in next(r for r in doc["runs"] if r["tenant"] == 1)["error"]
    (fleet.root / "release").write_text("1")


def test_options_the_fleet_cannot_honour_are_refused(fleet):
    for option in (["--fail-fast"], ["--max-failures", "2"], ["--spread", "10m"]):
        result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", *option)
        assert result.returncode == 2, result.stderr
        assert "not supported with the celery executor" in result.stderr and "Traceback" not in result.stderr
    assert calls(fleet) == []


def test_a_batch_that_could_outlast_the_visibility_timeout_is_refused(fleet):
    config = (fleet.root / "pinstripe.toml").read_text() + "visibility_timeout = 60\n"
    (fleet.root / "pinstripe.toml").write_text(config)
    result = run(fleet, "run-background-job", "--name", "work", "--executor", "celery", "--timeout", "40")
    assert result.returncode == 3, result.stderr
    assert "longer than the broker's visibility_timeout (60s)" in result.stderr and "batch_size" in result.stderr
    assert calls(fleet) == []


def test_celery_settings_are_checked(project):
    project.json_tenants([{"id": 1}])
    project.config('tenants = "tenants.json"\nexecutor = "kubernetes"\n')
    project.job("work", FLEET_JOB)
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3 and "Unknown executor 'kubernetes'" in result.stderr
    project.config('tenants = "tenants.json"\n[celery]\nbroker = "redis://x"\nbatchsize = 5\n')
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3 and "Unknown key 'batchsize' in [celery]" in result.stderr
    project.config('tenants = "tenants.json"\n[celery]\nbroker = "redis://x"\nbatch_size = 0\n')
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3 and "batch_size must be at least 1" in result.stderr
    project.config('tenants = "tenants.json"\n[celery]\nbroker = "redis://x"\nqueue = 5\n')
    result = run(project, "run-background-job", "--name", "work")
    assert result.returncode == 3 and "'queue' in [celery]" in result.stderr and "wrong type" in result.stderr
    project.config('tenants = "tenants.json"\n')
    result = run(project, "run-background-job", "--name", "work", env={"PINSTRIPE_EXECUTOR": "fleet"})
    assert result.returncode == 3 and "Unknown executor 'fleet' (PINSTRIPE_EXECUTOR)" in result.stderr
    project.config('tenants = "tenants.json"\nstate = "postgresql://u@127.0.0.1:1/x"\n')
    result = run(project, "run-background-job", "--name", "work", "--executor", "celery")
    assert result.returncode == 3 and "Traceback" not in result.stderr
