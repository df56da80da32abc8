"""Invocations end to end, with real processes on both stores, counting what ran from the job's own log:
kill -9 mid-run then ``resume`` (or the same ``--key``) covers every tenant once, except the abandoned ones it
reports; a finished key runs nothing; a replaced Kubernetes pod resumes its shard; ``unique`` holds for two
processes started at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter

import pytest

from tests.procs import SCRIPT, STARTED, clean_env, run, start, wait_until
from tests.test_fleet import _stop_workers, broker, fleet  # noqa: F401  (the fleet's fixtures)

N = 20_000
FAST_JOB = '''
import os
from pathlib import Path

multi_tenant = True
LOG = str(Path(__file__).parent.parent / "calls.log")

def run(ctx):
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{ctx.tenant.id}\\n".encode())
    os.close(fd)
'''
HOLDING_JOB = '''
import os, time
from pathlib import Path

unique = True
ROOT = Path(__file__).parent.parent

def run(ctx, *args):
    fd = os.open(str(ROOT / "calls.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()}\\n".encode())
    os.close(fd)
    deadline = time.monotonic() + 60
    while not (ROOT / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
'''


@pytest.fixture
def big(project, state_url):
    project.sqlite_tenants([{"id": i, "name": "t", "active": True, "plan": "free"} for i in range(1, N + 1)])
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')
    project.job("fast", FAST_JOB)
    return project


def start_quiet(project, *args, env=None) -> subprocess.Popen:
    """``pinstripe`` with its output discarded (20,000 result lines would fill a pipe nobody reads)."""
    proc = subprocess.Popen([str(SCRIPT), *args], cwd=project.root, env=clean_env(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    STARTED.append(proc)
    return proc


def lines(project) -> Counter:
    return Counter(project.log())


def kill_midway(project, proc, at_least: int = 2000) -> None:
    wait_until(lambda: len(project.log()) >= at_least or proc.poll() is not None, timeout=120, what="runs logged")
    assert proc.poll() is None, "the run ended before it could be killed: make it bigger"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def invocations(project, *args) -> list[dict]:
    result = run(project, "invocations", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["invocations"]


def shown(project, invocation: str) -> dict:
    result = run(project, "invocation", invocation, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_covered_once(project, record: dict, tenants: set[str]) -> None:
    """Every tenant ran exactly once, except the abandoned ones reported (at most once: killed mid-run)."""
    abandoned = set(record["abandoned"]["first"])
    assert record["abandoned"]["count"] == len(abandoned) <= 20  # a handful: the runs going at the kill
    ran = lines(project)
    assert {t for t, n in ran.items() if n > 1} == set()  # nothing twice
    assert set(ran) | abandoned == tenants and set(ran) <= tenants
    assert record["not_run"]["count"] == 0


def test_kill_9_midway_then_resume_runs_every_tenant_once(big):
    proc = start_quiet(big, "run-background-job", "--name", "fast", "--concurrency", "4")
    kill_midway(big, proc)
    [crashed] = invocations(big, "--status", "crashed")
    before = shown(big, crashed["id"])
    assert before["status"] == "crashed" and before["not_run"]["count"] > 0
    assert before["resume_command"] == f"pinstripe resume {crashed['id']}"
    assert before["selection"]["source"].endswith("tenants.db") and before["started_by"]
    result = run(big, "resume", crashed["id"], "--json", timeout=300)
    document = json.loads(result.stdout)
    assert document["invocation"] == crashed["id"]
    after = shown(big, crashed["id"])
    assert_covered_once(big, after, {str(i) for i in range(1, N + 1)})
    whole = after["counts"]
    assert whole.get("succeeded", 0) + whole.get("abandoned", 0) == N and after["resumed"] == 1
    expected = 1 if after["abandoned"]["count"] else 0  # the whole: an abandoned tenant is not a success
    assert (result.returncode, after["exit_code"], after["status"]) == (
        expected, expected, "failed" if expected else "succeeded")
    assert invocations(big, "--job", "fast")[0]["id"] == crashed["id"]  # no second invocation recorded


def test_the_same_key_resumes_and_a_finished_key_runs_nothing(big):
    args = ("run-background-job", "--name", "fast", "--concurrency", "4")
    proc = start_quiet(big, *args, env={"PINSTRIPE_INVOCATION_KEY": "pipeline-42"})
    kill_midway(big, proc)
    again = run(big, *args, "--key", "pipeline-42", timeout=300)
    [record] = invocations(big)
    after = shown(big, record["id"])
    assert_covered_once(big, after, {str(i) for i in range(1, N + 1)})
    assert after["idem_key"] == "pipeline-42" and again.returncode == after["exit_code"]
    count = len(big.log())
    third = run(big, *args, "--json", env={"PINSTRIPE_INVOCATION_KEY": "pipeline-42"})
    assert third.returncode == after["exit_code"] and len(big.log()) == count  # ran nothing
    document = json.loads(third.stdout)
    assert document["invocation"] == record["id"] and "already finished" in document["note"]
    assert document["runs"] == []


def test_a_replaced_kubernetes_pod_resumes_its_shard(big):
    import yaml

    doc = yaml.safe_load(run(big, "kubernetes-manifest", "--name", "fast", "--shards", "2", "--image",
                             "app").stdout)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert {"name": "PINSTRIPE_JOB_UID", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}} in container["env"]
    pod_env = clean_env({**env, "PINSTRIPE_JOB_UID": "0b6f7c1e-uid", "JOB_COMPLETION_INDEX": "1",
                         "PATH": f"{SCRIPT.parent}:{os.environ['PATH']}"})
    command = [*container["command"], *container["args"]]
    first = subprocess.Popen(command, cwd=big.root, env=pod_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    STARTED.append(first)
    kill_midway(big, first, 1000)  # `exec`: the pod's process is pinstripe itself
    second = subprocess.run(command, cwd=big.root, env=pod_env, capture_output=True, text=True, timeout=300)
    [record] = invocations(big)
    after = shown(big, record["id"])
    assert after["idem_key"] == "k8s-0b6f7c1e-uid-1" and after["resumed"] == 1
    assert second.returncode == after["exit_code"]
    from pinstripe_jobs.model.plan import shard_of

    assert_covered_once(big, after, {str(i) for i in range(1, N + 1) if shard_of(i, 2) == 1})


def test_a_unique_job_runs_once_for_two_processes_started_at_once(tenant_project, state_url):
    tenant_project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')
    tenant_project.job("hold", HOLDING_JOB)
    a = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1")
    b = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "1")
    loser = wait_until(lambda: next((p for p in (a, b) if p.poll() is not None), None), timeout=60,
                       what="one of the two to give up")
    out, err = loser.communicate()
    [live] = invocations(tenant_project, "--status", "running")
    assert loser.returncode == 4 and live["id"] in out + err and "still running" in out + err
    other = start(tenant_project, "run-background-job", "--name", "hold", "--tenant", "2", "--arg", "x")
    wait_until(lambda: len(tenant_project.log()) == 2, what="another arguments' invocation running")
    (tenant_project.root / "release").write_text("1")
    winner = b if loser is a else a
    assert winner.wait(60) == 0 and other.wait(60) == 0
    assert len(tenant_project.log()) == 2  # the loser ran nothing
    waiting = start(tenant_project, "run-background-job", "--name", "hold", "--unique", "--wait", "--tenant", "1")
    assert waiting.wait(60) == 0 and len(tenant_project.log()) == 3  # nothing live: it ran


def test_resume_on_the_fleet_runs_the_rest_once(fleet):  # noqa: F811  (the fixture imported above)
    """SIGTERM stops an invocation on the fleet (the rest never started); `resume` runs exactly the rest there."""
    from tests.test_fleet import calls, worker

    (fleet.root / "hold").write_text("1 3")
    worker(fleet, "--concurrency", "2")
    cli = subprocess.Popen([str(SCRIPT), "run-background-job", "--name", "work", "--executor", "celery", "--json",
                            "--grace", "1"], cwd=fleet.root, env=clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    STARTED.append(cli)
    wait_until(lambda: (fleet.root / "holding-1").exists() and (fleet.root / "holding-3").exists(), timeout=60,
               what="two tenants held on the workers")
    cli.send_signal(signal.SIGTERM)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 143, err
    invocation = json.loads(out)["invocation"]
    (fleet.root / "hold").unlink()
    (fleet.root / "release").write_text("1")
    wait_until(lambda: {"1", "3"} <= {c[1] for c in calls(fleet) if c[0] == "end"}, timeout=60,
               what="the held tenants to finish")
    wait_until(lambda: not json.loads(run(fleet, "history", "--json", "--status", "running").stdout)["runs"],
               timeout=60, what="the workers to finish their batches")
    assert shown(fleet, invocation)["status"] == "interrupted"
    result = run(fleet, "resume", invocation, "--json", timeout=120)
    assert json.loads(result.stdout)["invocation"] == invocation, result.stderr
    starts = Counter(c[1] for c in calls(fleet) if c[0] == "start")
    assert starts == {str(i): 1 for i in range(1, 9)}, result.stdout  # every tenant once, on the fleet
    after = shown(fleet, invocation)
    assert (result.returncode, after["status"], after["resumed"], after["not_run"]["count"]) == (1, "failed", 1, 0)
