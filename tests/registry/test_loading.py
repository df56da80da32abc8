"""A job module that calls sys.exit() while importing is a broken module like any other import error,
never a silent exit of the command (issue #20 item 10); the same for a "module:callable" reference."""
from __future__ import annotations

import pytest

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.registry.loading import import_ref
from tests.conftest import RECORDING_JOB
from tests.procs import run


@pytest.mark.parametrize("exit_call, shown", [("SystemExit(5)", "SystemExit: 5"), ("sys.exit()", "SystemExit"),
                                              ("sys.exit('no config')", "SystemExit: no config")])
def test_sys_exit_at_import_is_a_broken_module_in_the_listing(project, exit_call, shown):
    project.job("exits", f"import sys\n\nraise {exit_call}\n" if exit_call.startswith("SystemExit")
                else f"import sys\n\n{exit_call}\n")
    project.job("fine", RECORDING_JOB)
    result = run(project, "list-background-jobs")
    assert result.returncode == 3, result.stdout + result.stderr  # broken modules: 3, never the module's code
    assert f"BROKEN exits: {project.jobs / 'exits.py'}:3: {shown}" in result.stdout
    assert "sys.exit() was called while importing" in result.stdout
    assert "fine" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_sys_exit_at_import_is_reported_by_run_and_does_not_stop_the_others(project):
    project.config("misfire_grace = 30\n")
    project.job("exits", "raise SystemExit(5)\n")
    project.job("fine", 'schedule = "* * * * *"\n' + RECORDING_JOB)
    ran = run(project, "run-background-job", "--name", "exits")
    assert ran.returncode == 3 and "Job 'exits' could not be loaded" in ran.stdout + ran.stderr
    assert "SystemExit: 5" in ran.stdout + ran.stderr
    due = run(project, "run-due-jobs", "--at", "2026-06-01T10:00:00+00:00")
    assert due.returncode == 3 and "BROKEN exits: not scheduled" in due.stderr
    assert project.log() == ["fine None [] {}"]


def test_sys_exit_in_a_referenced_module_is_a_config_error(project, monkeypatch):
    project.module("exits_on_import", "raise SystemExit(5)\n")
    monkeypatch.syspath_prepend(str(project.root))
    with pytest.raises(ConfigError) as raised:
        import_ref("exits_on_import:tenants", "tenant source")
    assert "failed while importing" in raised.value.message and "SystemExit: 5" in raised.value.message
