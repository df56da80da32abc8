"""list-background-jobs reports each job's last invocation, not the last tenant's run: a per-tenant job
whose last invocation failed 10 of 20 tenants read "succeeded" when its last tenant did."""
from __future__ import annotations

import json

JOB = '''
def run(ctx):
    if ctx.tenant.id <= 10:
        raise ValueError("half of them fail")
'''


def test_the_last_status_is_the_last_invocations(project):
    project.json_tenants([{"id": n} for n in range(1, 21)])
    project.config('tenants = "tenants.json"\n')
    project.job("half", JOB)
    assert project.cli("run-background-job", "--name", "half").exit_code == 1
    runs = json.loads(project.cli("history", "--json", "--limit", "1").stdout)["runs"]
    assert (runs[0]["tenant"], runs[0]["status"]) == (20, "succeeded")  # the newest run alone says all is well
    job = json.loads(project.cli("list-background-jobs", "--json").stdout)["jobs"][0]
    assert job["last_status"] == "failed" and job["last_run"].startswith("20")
    assert "last run: failed" in project.cli("list-background-jobs").output
    assert project.cli("run-background-job", "--name", "half", "--tenant", "15").exit_code == 0
    job = json.loads(project.cli("list-background-jobs", "--json").stdout)["jobs"][0]
    assert job["last_status"] == "succeeded"


def test_a_job_never_run_has_no_last_status(project):
    project.job("fresh", "def run(ctx):\n    pass\n")
    job = json.loads(project.cli("list-background-jobs", "--json").stdout)["jobs"][0]
    assert job["last_status"] is None and job["last_run"] is None
