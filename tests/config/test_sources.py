"""Messages say where a setting came from: an option, a variable, the config file, or the default (the
celery executor's error blamed `'state' in pinstripe.toml` when the file had no `state`)."""
from __future__ import annotations

import subprocess

from pinstripe_jobs.config import load_settings
from tests.conftest import RECORDING_JOB
from tests.procs import SCRIPT


def test_source_of_names_the_option_variable_file_or_default(project):
    path = project.config('state = "sqlite:///s.db"\n')
    settings = load_settings(env={"PINSTRIPE_TIMEZONE": "UTC"}, jobs_dir="jobs")
    assert settings.source_of("state") == f"'state' in {path}"
    assert settings.source_of("timezone") == "PINSTRIPE_TIMEZONE" and settings.source_of("jobs_dir") == "--jobs-dir"
    assert settings.source_of("executor") == f"the default: 'executor' is not set in {path}"
    path.unlink()
    assert load_settings(env={}).source_of("state") == "the default (no pinstripe.toml found)"


def test_the_celery_executor_says_the_sqlite_state_is_the_default(project):
    path = project.config('tenants = "t.json"\n[celery]\nbroker = "redis://127.0.0.1:6379/0"\n')
    project.json_tenants([{"id": 1}], "t.json")
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record", "--executor", "celery")
    assert result.exit_code == 3
    assert f"this run's is SQLite (the default: 'state' is not set in {path})." in result.stderr
    assert project.log() == []


def test_a_missing_jobs_folder_is_exit_3_from_the_option_and_the_variable_alike(project):
    project.job("record", RECORDING_JOB)
    by_option = project.cli("run-background-job", "--name", "record", "--jobs-dir", "/nonexistent")
    by_variable = subprocess.run([str(SCRIPT), "run-background-job", "--name", "record"], cwd=project.root,
                                 env={"PATH": "/usr/bin:/bin", "PINSTRIPE_JOBS_DIR": "/nonexistent"},
                                 capture_output=True, text=True, timeout=60)
    assert by_option.exit_code == by_variable.returncode == 3
    assert by_option.stderr.replace("--jobs-dir)", "PINSTRIPE_JOBS_DIR)") == by_variable.stderr
    assert by_variable.stderr.startswith("Configuration error: The jobs folder /nonexistent does not exist (from "
                                         "PINSTRIPE_JOBS_DIR).")
