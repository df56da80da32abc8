"""Every numeric option has a documented range, checked before anything runs (exit 2, the option and the
range named), and options that cannot both apply are refused instead of one being silently ignored."""
from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("args, range_text", [
    (["--concurrency", "30000"], "1<=x<=1000"),
    (["--concurrency", "30000", "--tenant", "1"], "1<=x<=1000"),
    (["--max-failures", "99999999999999999999"], "1<=x<=1000000"),
    (["--retries", "101"], "0<=x<=100"),
    (["--timeout", "nan"], "not a number of seconds"),
    (["--timeout", "1e300"], "0<x<=31536000"),
    (["--grace", "inf"], "0<=x<=86400"),
    (["--deadline", "nan"], "not a number of seconds"),
    (["--shard", "0/10001"], "more than 10000 shards"),
    (["--spread", "8d"], "longer than 7 days"),
])
def test_run_options_outside_their_range_are_usage_errors(tenant_project, args, range_text):
    result = tenant_project.cli("run-background-job", "--name", "record", *args)
    assert result.exit_code == 2, result.output
    assert args[0] in result.output and range_text in result.output
    assert "Traceback" not in result.output and tenant_project.log() == []


def test_the_ranges_are_in_the_help(project):
    text = " ".join(project.cli("run-background-job", "--help").output.split())
    for shown in ("Tenants run in parallel. [1<=x<=1000]", "Retry a failed run N times. [0<=x<=100]",
                  "(the rest are skipped). [1<=x<=1000000]", "[0<x<=31536000]", "[default: 30; 0<=x<=86400]",
                  "(N <= 10000)", "at most 7 days"):
        assert shown in text, shown
    assert "At most this many runs. [default: 50; 1<=x<=1000000]" in " ".join(
        project.cli("history", "--help").output.split())
    assert "[1<=x<=1000]" in " ".join(project.cli("worker", "--help").output.split())


def test_history_limit_beyond_its_range_is_exit_2_and_its_top_works(tenant_project):
    result = tenant_project.cli("history", "--limit", "99999999999999999999")
    assert result.exit_code == 2 and "1<=x<=1000000" in result.output
    assert tenant_project.cli("run-background-job", "--name", "record").exit_code == 0
    result = tenant_project.cli("history", "--limit", "1000000", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["runs"]) == 4


@pytest.mark.parametrize("command, args, range_text", [
    ("worker", ["--concurrency", "5000"], "1<=x<=1000"),
    ("run-due-jobs", ["--grace", "1e9"], "0<=x<=86400"),
    ("start-bot", ["--grace", "nan"], "not a number of seconds"),
])
def test_other_commands_check_their_ranges(project, command, args, range_text):
    result = project.cli(command, *args)
    assert result.exit_code == 2 and args[0] in result.output and range_text in result.output


@pytest.mark.parametrize("args, message", [
    (["--fail-fast", "--max-failures", "3"], "--fail-fast and --max-failures both say when to stop; give one."),
    (["--tenant", "3", "--shard", "0/2"], "--tenant and --shard both choose the tenants; give one."),
    (["--param", "a=1", "--param", "b=2", "--param", "a=3"], "--param a is given more than once."),
    (["--deadline", "5"], "--deadline only applies to the celery executor; this run's is 'local' (the default: "
                          "'executor' is not set in"),
    (["--deadline", "5", "--executor", "local"], "this run's is 'local' (--executor)"),
])
def test_conflicting_options_are_usage_errors(tenant_project, args, message):
    result = tenant_project.cli("run-background-job", "--name", "record", *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Usage error: ") and message in " ".join(result.stderr.split())
    assert tenant_project.log() == []  # nothing ran
    result = tenant_project.cli("run-background-job", "--name", "record", "--json", *args)
    assert result.exit_code == 2 and json.loads(result.stdout)["exit_code"] == 2


def test_the_options_alone_still_work(tenant_project):
    for args in (["--fail-fast"], ["--max-failures", "3"], ["--tenant", "3"], ["--param", "a=1", "--param", "b=2"]):
        assert tenant_project.cli("run-background-job", "--name", "record", *args).exit_code == 0, args
    result = tenant_project.cli("run-background-job", "--name", "record", "--shard", "0/2", "--json")
    assert result.exit_code == 0 and {r["status"] for r in json.loads(result.stdout)["runs"]} == {"succeeded"}
