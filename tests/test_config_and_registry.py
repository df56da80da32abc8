"""Config discovery and validation; job modules: names, loading, broken modules, the jobs folder."""
from __future__ import annotations

import sys

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.registry.jobs import normalize_name

from .conftest import RECORDING_JOB


def test_config_is_found_walking_up_and_paths_resolve_against_it(project):
    project.config('jobs_dir = "tasks"\ntenants = "sqlite:///data/t.db"\n')
    nested = project.root / "a" / "b"
    nested.mkdir(parents=True)
    settings = load_settings(cwd=nested, env={})
    assert settings.config_path == project.root / "pinstripe.toml"
    assert settings.jobs_dir == project.root / "tasks"
    assert settings.tenants == f"sqlite:///{project.root / 'data' / 't.db'}"
    assert str(project.root) in sys.path


def test_pyproject_tool_table_and_precedence(project):
    (project.root / "pyproject.toml").write_text('[project]\nname="x"\n[tool.pinstripe]\njobs_dir = "pj"\n')
    assert load_settings(cwd=project.root, env={}).jobs_dir == project.root / "pj"
    project.config('jobs_dir = "pt"\n')  # pinstripe.toml wins in the same folder
    assert load_settings(cwd=project.root, env={}).jobs_dir == project.root / "pt"
    other = project.root / "other.toml"
    other.write_text('jobs_dir = "o"\n')
    assert load_settings(cwd=project.root, env={"PINSTRIPE_CONFIG": str(other)}).jobs_dir == project.root / "o"
    settings = load_settings(cwd=project.root, env={"PINSTRIPE_JOBS_DIR": "envjobs", "PINSTRIPE_TENANTS": "t.csv"})
    assert settings.jobs_dir == project.root / "envjobs" and settings.tenants == str(project.root / "t.csv")
    assert load_settings(jobs_dir="argjobs", cwd=project.root,
                         env={"PINSTRIPE_JOBS_DIR": "envjobs"}).jobs_dir == project.root / "argjobs"


@pytest.mark.parametrize("text, message", [
    ('tenant = "x.json"\n', "Unknown key 'tenant'"),
    ("jobs_dir = 3\n", "'jobs_dir' in"),
    ('tenants = "whatever"\n', "Cannot tell what kind of tenant source 'whatever' is"),
    ('timezone = "Mars/Olympus"\n', "Unknown time zone 'Mars/Olympus'"),
    ('tenants_table = "x; drop"\n', "is not a table name"),
    ("[services]\nmailer = 3\n", "must be a \"module:factory\" string"),
    ("jobs_dir = \n", "is not valid TOML"),
    ("tenants = [1, 2]\n", "must be an array of tables"),
])
def test_bad_config_exits_3_with_a_clear_message(project, text, message):
    project.config(text)
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3, result.output
    assert message in result.output
    assert "pinstripe.toml" in result.output or "Unknown time zone" in result.output
    assert "Traceback" not in result.output


def test_unknown_key_suggests_the_right_one(project):
    project.config('tenant = "x.json"\n')
    result = project.cli("list-background-jobs")
    assert "Did you mean 'tenants'?" in result.output


def test_missing_config_file_and_missing_jobs_folder(project):
    result = project.cli("run-background-job", "--name", "x", "--config", "nope.toml")
    assert result.exit_code == 3 and "nope.toml does not exist" in result.output
    (project.root / "jobs").rmdir()
    result = project.cli("run-background-job", "--name", "x")
    assert result.exit_code == 3 and "The jobs folder" in result.output and "does not exist" in result.output


@pytest.mark.parametrize("raw, name", [("send-newsletter", "send-newsletter"), ("send_newsletter", "send-newsletter"),
                                       ("SendNewsletter", "send-newsletter"), ("sendNewsletter", "send-newsletter"),
                                       ("HTTPPing", "http-ping"), ("job2go", "job2go")])
def test_normalize_name(raw, name):
    assert normalize_name(raw) == name


@pytest.mark.parametrize("bad", ["../x", "pkg.mod", "/etc/passwd", "a/b", "", "-x"])
def test_names_can_never_reach_outside_the_jobs_folder(project, bad):
    project.module("evil", "raise SystemExit('imported!')\n")
    result = project.cli("run-background-job", "--name", bad)
    assert result.exit_code == 2
    assert "imported!" not in result.output


def test_unknown_job_suggests_and_lists(project):
    project.job("deliver_notifications", RECORDING_JOB)
    project.job("send_email", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "deliver-notification")
    assert result.exit_code == 2
    assert "No background job named 'deliver-notification'. Did you mean 'deliver-notifications'?" in result.output
    assert "deliver-notifications, send-email" in result.output
    assert "pinstripe list-background-jobs" in result.output


def test_only_the_named_module_is_imported(project):
    project.job("broken", "raise RuntimeError('should never be imported')\n")
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 0, result.output
    assert "should never be imported" not in result.output


def test_underscore_files_are_not_jobs(project):
    project.job("_helpers", "X = 1\n")
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "_helpers")
    assert result.exit_code == 2


@pytest.mark.parametrize("source, message, line", [
    ("import os\n\nraise ValueError('bad setting')\n", "ValueError: bad setting", 3),
    ("def run(ctx)\n    pass\n", "SyntaxError", 1),
    ("import no_such_module_xyz\n", "ModuleNotFoundError: No module named 'no_such_module_xyz'", 1),
    ("x = 1\n", "the module defines no run(ctx, ...) function", None),
    ("def run():\n    pass\n", "run() must take the workspace `ctx`", 1),
    ("schedule = '61 * * * *'\ndef run(ctx):\n    pass\n", "invalid cron expression '61 * * * *'", 1),
    ("schedule = ['@often']\ndef run(ctx):\n    pass\n", "unknown alias", 1),
    ("schedule = 5\ndef run(ctx):\n    pass\n", "schedule must be a cron string or a list", 1),
    ("\noverlap = 'never'\ndef run(ctx):\n    pass\n", "overlap must be one of", 2),
    ("concurrency = 0\ndef run(ctx):\n    pass\n", "concurrency must be a whole number >= 1", 1),
    ("multi_tenant = 'yes'\ndef run(ctx):\n    pass\n", "multi_tenant must be a bool", 1),
    ("timezone = 'Nowhere/City'\ndef run(ctx):\n    pass\n", "Unknown time zone", 1),
])
def test_broken_job_module_is_reported_with_file_line_and_error(project, source, message, line):
    path = project.job("bad", source)
    result = project.cli("run-background-job", "--name", "bad")
    assert result.exit_code == 3, result.output
    assert message in result.output
    where = f"{path}:{line}" if line else str(path)
    assert f"Job 'bad' could not be loaded: {where}" in result.output
    assert "Traceback" not in result.output


def test_multi_tenant_without_a_source_is_a_config_error(project):
    project.job("per_tenant", RECORDING_JOB + "\nmulti_tenant = True\n")
    result = project.cli("run-background-job", "--name", "per-tenant")
    assert result.exit_code == 3
    assert "multi_tenant = True but no tenant source is configured" in result.output
    assert "Set `tenants`" in result.output
    assert project.log() == []


def test_tenants_filter_that_raises_or_returns_junk(tenant_project):
    tenant_project.job("f1", RECORDING_JOB + "\ndef tenants_filter(t):\n    return t.where(nonexistent=1)\n")
    result = tenant_project.cli("run-background-job", "--name", "f1")
    assert result.exit_code == 3 and "names a column 'nonexistent'" in result.output
    tenant_project.job("f2", RECORDING_JOB + "\ndef tenants_filter(t):\n    return [1, 2]\n")
    result = tenant_project.cli("run-background-job", "--name", "f2")
    assert result.exit_code == 3 and "returned list, not the tenant query" in result.output
    tenant_project.job("f3", RECORDING_JOB + "\ndef tenants_filter(t):\n    raise RuntimeError('nope')\n")
    result = tenant_project.cli("run-background-job", "--name", "f3")
    assert result.exit_code == 3 and "f3.py:10: RuntimeError: nope" in result.output


def test_config_errors_are_raised_not_exited():
    with pytest.raises(ConfigError):
        load_settings(config="/nonexistent/pinstripe.toml", env={})


@pytest.mark.parametrize("key, value", [("jobs_dir", "jobs\x00"), ("tenants", "t\x00.json"),
                                        ("state", "sqlite:///s\x00.db"), ("timezone", "UTC\x00")])
def test_a_nul_character_in_a_config_value_is_a_config_error(tmp_path, key, value):
    """Found by the property test: a NUL in a path used to escape as a raw ValueError."""
    from pinstripe_jobs.config import _from_table
    from pinstripe_jobs.errors import ConfigError

    with pytest.raises(ConfigError, match=f"'{key}' in .* contains a NUL character"):
        _from_table(tmp_path / "pinstripe.toml", {key: value})
