"""pause_after_failures: after N failed invocations in a row the job pauses itself (recorded as pinstripe,
audited, announced through [notify]); the scheduler then records paused ticks and a manual run exits 4. Real
runs of the installed ``pinstripe``, on SQLite and PostgreSQL state; what ran is counted from the job's log."""
from __future__ import annotations

import json

from pinstripe_jobs.errors import ExitCode
from tests.procs import run

FAILING = '''
from pathlib import Path
pause_after_failures = 2

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"ran {ctx.tenant.id}\\n")
    if not (Path(__file__).parent.parent / "fixed").exists():
        raise ValueError("broken")
'''


def test_a_job_pauses_itself_after_n_failed_invocations_in_a_row(project, state_url):
    project.json_tenants([{"id": 1}, {"id": 2}])
    project.config(f'tenants = "tenants.json"\nstate = "{state_url}"\n\n[notify]\non = ["failure"]\n'
                   'command = "cat >> alerts.jsonl; echo >> alerts.jsonl"\n')
    project.job("flaky", FAILING)
    assert run(project, "run-background-job", "--name", "flaky").returncode == ExitCode.FAILED
    (project.root / "fixed").write_text("1")
    assert run(project, "run-background-job", "--name", "flaky").returncode == 0  # the streak is broken
    (project.root / "fixed").unlink()
    assert run(project, "run-background-job", "--name", "flaky").returncode == ExitCode.FAILED
    listing = json.loads(run(project, "list-background-jobs", "--json").stdout)["jobs"]
    assert listing[0]["paused"] is None  # one failure in a row: not yet
    assert run(project, "run-background-job", "--name", "flaky").returncode == ExitCode.FAILED
    listing = json.loads(run(project, "list-background-jobs", "--json").stdout)["jobs"]
    assert listing[0]["paused"]["who"] == "pinstripe (pause_after_failures)"
    assert "2 failed invocations in a row" in listing[0]["paused"]["reason"]

    alerts = [json.loads(line) for line in (project.root / "alerts.jsonl").read_text().splitlines() if line]
    assert [a["event"] for a in alerts].count("paused") == 1
    paused = next(a for a in alerts if a["event"] == "paused")
    assert paused["job"] == "flaky" and paused["unpause"] == "pinstripe unpause flaky"

    before = len(project.log())
    refused = run(project, "run-background-job", "--name", "flaky")
    assert refused.returncode == ExitCode.SKIPPED and "flaky is paused" in refused.stderr
    assert len(project.log()) == before  # nothing ran
    trail = json.loads(run(project, "audit", "--json", "--job", "flaky").stdout)["actions"]
    assert (trail[0]["action"], trail[0]["source"], trail[0]["who"]) == ("pause", "auto",
                                                                         "pinstripe (pause_after_failures)")


def test_a_bad_pause_after_failures_is_a_broken_module(project):
    project.job("bad", "pause_after_failures = 0\n\ndef run(ctx):\n    pass\n")
    result = run(project, "list-background-jobs")
    assert result.returncode == ExitCode.CONFIG
    assert "pause_after_failures must be a whole number from 1 to 1000" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
