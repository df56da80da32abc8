"""``invocations``, ``invocation ID``, ``resume ID`` and ``history --invocation/--since``, through the installed
``pinstripe`` command on both stores."""
from __future__ import annotations

import json
import time

from tests.procs import run


def _setup(project, state_url):
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')


def test_invocations_and_one_invocation_show_what_ran(tenant_project, state_url):
    _setup(tenant_project, state_url)
    first = run(tenant_project, "run-background-job", "--name", "record", "--tenant", "1", "--arg", "x", "--json")
    assert first.returncode == 0, first.stderr
    invocation = json.loads(first.stdout)["invocation"]
    assert run(tenant_project, "run-background-job", "--name", "record").returncode == 0
    listed = json.loads(run(tenant_project, "invocations", "--json").stdout)["invocations"]
    assert [i["status"] for i in listed] == ["succeeded", "succeeded"] and listed[1]["id"] == invocation
    assert listed[0]["done"] == listed[0]["total"] == 4  # every tenant of the source
    assert json.loads(run(tenant_project, "invocations", "--json", "--limit", "1").stdout)["invocations"] == \
        listed[:1]
    assert json.loads(run(tenant_project, "invocations", "--json", "--status", "crashed").stdout) == \
        {"invocations": []}
    text = run(tenant_project, "invocations").stdout
    assert invocation in text and "succeeded" in text and "1/1" in text
    shown = json.loads(run(tenant_project, "invocation", invocation, "--json").stdout)
    assert shown["args"] == {"args": ["x"], "params": {}} and shown["selection"]["tenants"] == ["1"]
    assert shown["counts"] == {"succeeded": 1} and shown["not_run"] == {"count": 0, "first": []}
    assert shown["exit_code"] == 0 and shown["executor"] == "local" and "@" in shown["started_by"]
    text = run(tenant_project, "invocation", invocation).stdout
    assert f"invocation {invocation}: record - succeeded" in text and "tenants not yet run: 0" in text
    missing = run(tenant_project, "invocation", "nope")
    assert missing.returncode == 2 and "No invocation 'nope'" in missing.stderr
    assert run(tenant_project, "resume", "nope").returncode == 2
    assert run(tenant_project, "invocations", "--status", "bogus").returncode == 2


def test_history_of_one_invocation_and_since(tenant_project, state_url):
    _setup(tenant_project, state_url)
    first = json.loads(run(tenant_project, "run-background-job", "--name", "record", "--json").stdout)
    between = time.time()
    while time.time() - between < 0.01:  # the next run starts strictly later (timestamps are microseconds)
        pass
    from datetime import UTC, datetime

    since = datetime.fromtimestamp(between, UTC).isoformat()
    second = json.loads(run(tenant_project, "run-background-job", "--name", "record", "--tenant", "2", "--json")
                        .stdout)
    rows = json.loads(run(tenant_project, "history", "--invocation", first["invocation"], "--json").stdout)["runs"]
    assert sorted(r["tenant"] for r in rows) == [1, 2, 3, 4] and {r["invocation"] for r in rows} == \
        {first["invocation"]}
    rows = json.loads(run(tenant_project, "history", "--since", since, "--json").stdout)["runs"]
    assert [(r["tenant"], r["invocation"]) for r in rows] == [(2, second["invocation"])]
    bad = run(tenant_project, "history", "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday' is not an ISO 8601" in bad.stderr


def test_a_bad_key_is_a_usage_error(tenant_project):
    result = run(tenant_project, "run-background-job", "--name", "record", "--key", " padded")
    assert result.returncode == 2 and "is not a key" in result.stderr
