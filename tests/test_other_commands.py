"""list-background-jobs, generate-background-job, --version, --help and completion."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pinstripe_jobs import __version__
from pinstripe_jobs.cli import main

from .conftest import RECORDING_JOB


def test_every_command_has_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    commands = list(main.commands)
    assert {"run-background-job", "list-background-jobs", "generate-background-job", "history", "run-due-jobs",
            "start-bot"} <= set(commands)
    for name in commands:
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage: main " + name in result.output or f"Usage: pinstripe {name}" in result.output
        assert " ".join(main.commands[name].help.split()[:4]) in " ".join(result.output.split())


@pytest.mark.parametrize("command", ["run-background-job", "list-background-jobs", "generate-background-job",
                                     "history", "run-due-jobs", "start-bot"])
def test_every_help_teaches_examples_exit_codes_and_environment(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.splitlines()]
    examples = lines[lines.index("Examples:") + 1]
    assert examples.startswith(("pinstripe ", "* * * * *"))
    assert lines[lines.index("Exit codes:") + 1].startswith("0 ") and "PINSTRIPE_CONFIG" in result.output
    assert "FLOAT RANGE" not in result.output and "INTEGER RANGE" not in result.output and " TEXT " not in result.output


def test_run_help_lists_the_exit_codes():
    text = CliRunner().invoke(main, ["run-background-job", "--help"]).output
    for line in ("4   skipped: the job was already running for a tenant", "124 a run timed out (and none failed)",
                 "130 interrupted by SIGINT", "143 stopped by SIGTERM"):
        assert f"    {line}\n" in text


def test_the_command_list_shows_whole_descriptions_and_a_typo_gets_a_suggestion():
    listing = CliRunner().invoke(main, ["--help"]).output
    assert "..." not in listing.split("Commands:")[1] and "Run a job now, once per matching tenant." in listing
    typo = CliRunner().invoke(main, ["run"])
    assert typo.exit_code == 2 and "Did you mean 'run-background-job' or 'run-due-jobs'?" in typo.output
    typo = CliRunner().invoke(main, ["histroy"])
    assert "Did you mean 'history'?" in typo.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_list_shows_description_schedules_next_run_and_tenancy(tenant_project):
    tenant_project.job("hourly", '"""Runs every hour."""\nschedule = ["0 * * * *", ("30 6 * * 1", "weekly")]\n'
                                 "def run(ctx, kind='hourly'):\n    pass\n")
    tenant_project.job("solo", "description = 'Just once'\nmulti_tenant = False\ndef run(ctx):\n    pass\n")
    result = tenant_project.cli("list-background-jobs", "--json")
    assert result.exit_code == 0, result.output
    jobs = {j["name"]: j for j in json.loads(result.stdout)["jobs"]}
    assert set(jobs) == {"hourly", "record", "solo"}
    assert jobs["hourly"]["description"] == "Runs every hour."
    assert jobs["hourly"]["multi_tenant"] is True and jobs["solo"]["multi_tenant"] is False
    assert [s["cron"] for s in jobs["hourly"]["schedules"]] == ["0 * * * *", "30 6 * * 1"]
    assert jobs["hourly"]["schedules"][1]["args"] == ["weekly"]
    assert jobs["hourly"]["next_run"].endswith(":00:00+00:00")
    assert jobs["solo"]["description"] == "Just once" and jobs["solo"]["next_run"] is None
    plain = tenant_project.cli("list-background-jobs")
    assert "hourly\n  description: Runs every hour.\n  per tenant: yes\n  schedule: 0 * * * *, 30 6 * * 1 ['weekly']" \
        in plain.output


def test_list_next_run_is_in_the_configured_timezone(project):
    project.config('timezone = "Asia/Kolkata"\n')
    project.job("daily", "schedule = '@daily'\ndef run(ctx):\n    pass\n")
    job = json.loads(project.cli("list-background-jobs", "--json").stdout)["jobs"][0]
    assert job["next_run"].endswith("T00:00:00+05:30") and job["timezone"] == "Asia/Kolkata"


def test_list_reports_broken_modules_and_exits_3(project):
    project.job("good", RECORDING_JOB)
    path = project.job("bad", "x = 1\nraise ImportError('cannot import thing')\n")
    result = project.cli("list-background-jobs")
    assert result.exit_code == 3
    assert "good\n" in result.output
    assert f"BROKEN bad: {path}:2: ImportError: cannot import thing" in result.output
    doc = json.loads(project.cli("list-background-jobs", "--json").stdout)
    assert doc["broken"] == [{"name": "bad", "file": str(path), "line": 2, "error": "ImportError: cannot import thing"}]


def test_generate_writes_a_runnable_job_and_refuses_to_overwrite(project):
    result = project.cli("generate-background-job", "SyncInvoices")
    assert result.exit_code == 0
    path = project.jobs / "sync_invoices.py"
    assert path.exists() and f"Created {path}" in result.output
    assert project.cli("run-background-job", "--name", "sync-invoices").exit_code == 0
    result = project.cli("generate-background-job", "sync-invoices")
    assert result.exit_code == 2 and "already exists; not overwriting" in result.output
    result = project.cli("generate-background-job", "../escape")
    assert result.exit_code == 2 and "Invalid job name" in result.output


def test_shell_completion_of_job_names(project, monkeypatch):
    project.job("send_email", RECORDING_JOB)
    project.job("send_newsletter", RECORDING_JOB)
    project.job("deliver", RECORDING_JOB)
    monkeypatch.setenv("_PINSTRIPE_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "pinstripe run-background-job --name sen")
    monkeypatch.setenv("COMP_CWORD", "3")
    result = CliRunner().invoke(main, [], prog_name="pinstripe", complete_var="_PINSTRIPE_COMPLETE")
    assert "plain,send-email" in result.output and "plain,send-newsletter" in result.output
    assert "deliver" not in result.output


@pytest.mark.parametrize("value", ["3", "1/0", "5/4", "a/b"])
def test_bad_shard_is_a_usage_error(tenant_project, value):
    result = tenant_project.cli("run-background-job", "--name", "record", "--shard", value)
    assert result.exit_code == 2 and "--shard" in result.output
