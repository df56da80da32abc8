"""CI reports: a --junit-xml path that cannot be written is found before anything runs, and a write that
fails at the end is reported truthfully (#20 item 7)."""
from __future__ import annotations

import json

import pytest

from tests.procs import run

WANDERER = '''
import shutil
from pathlib import Path

def run(ctx):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"ran {ctx.tenant.id}\\n")
    if ctx.tenant.id == 4:  # the last tenant removes the report's folder before the report is written
        shutil.rmtree(Path(__file__).parent.parent / "reports", ignore_errors=True)
'''


@pytest.mark.parametrize("where, why", [("reports", "is a directory, not a file"),
                                        ("/proc/pinstripe-junit.xml", "cannot be written: ")])
def test_an_unwritable_junit_path_is_a_usage_error_before_anything_runs(tenant_project, where, why):
    (tenant_project.root / "reports").mkdir()
    for flags in ([], ["--json"]):
        result = run(tenant_project, "run-background-job", "--name", "record", "--junit-xml", where, *flags)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        text = result.stdout + result.stderr
        assert "--junit-xml" in text and why in text and "e.g. --junit-xml reports/pinstripe.xml" in text
    assert tenant_project.log() == []  # nothing ran
    assert not (tenant_project.root / "reports.part").exists()


def test_a_junit_report_that_cannot_be_written_at_the_end_is_the_runs_error(tenant_project):
    tenant_project.job("wander", WANDERER)
    result = run(tenant_project, "run-background-job", "--name", "wander", "--junit-xml", "reports/junit.xml",
                 "--json")
    assert "Traceback" not in result.stdout + result.stderr
    assert [line.split()[1] for line in tenant_project.log()] == ["1", "2", "3", "4"]  # every tenant ran
    document = json.loads(result.stdout)
    assert result.returncode == document["exit_code"] == 3, result.stderr
    assert document["status"] == "error" and document["counts"] == {"succeeded": 4}
    assert document["report_error"].startswith("Could not write the JUnit report ")
    assert "reports/junit.xml: No such file or directory." in document["report_error"]
    plain = run(tenant_project, "run-background-job", "--name", "wander", "--junit-xml", "reports/junit.xml")
    assert plain.returncode == 3 and "Traceback" not in plain.stdout + plain.stderr
    assert "wander: error - 4 succeeded" in plain.stdout and "Could not write the JUnit report" in plain.stdout
    history = json.loads(run(tenant_project, "history", "--json", "--limit", "20").stdout)["runs"]
    assert {row["status"] for row in history} == {"succeeded"}  # the tenants' own outcomes stay true
