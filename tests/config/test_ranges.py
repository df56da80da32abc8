"""Every numeric setting has a range checked at load: a value outside it is exit 3 naming the key, the value
and the range, instead of passing validation and crashing later (an OverflowError in the daily prune, a
thread per unit of concurrency). A notify webhook must be an http(s) URL."""
from __future__ import annotations

import pytest

from pinstripe_jobs.config import load_settings
from tests.conftest import RECORDING_JOB


@pytest.mark.parametrize("setting, shown, range_text", [
    ("history_days = 99999999999", "'history_days' in {path} must be at least 0 and at most 36500 days (0 keeps "
                                   "history forever), got 99999999999.", ""),
    ("history_days = 1e300", "'history_days' in {path} must be", "got 1e+300."),
    ("history_days = nan", "'history_days' in {path} must be", "got nan."),
    ("history_days = inf", "'history_days' in {path} must be", "got inf."),
    ("history_days = -1", "'history_days' in {path} must be", "got -1."),
    ("misfire_grace = 1e300", "'misfire_grace' in {path} must be at least 0 and at most 31536000 seconds", ""),
    ("state_retry_s = 86401", "'state_retry_s' in {path} must be at least 0 and at most 86400 seconds", ""),
    ("lock_stale_s = nan", "'lock_stale_s' in {path} must be at least 0 and at most 86400 seconds", "got nan."),
    ("tenant_concurrency = 0", "'tenant_concurrency' in {path} must be at least 1 and at most 1000 runs", ""),
    ("tenant_concurrency = 20000", "'tenant_concurrency' in {path} must be at least 1 and at most 1000 runs", ""),
    ('[celery]\nbroker = "redis://x"\nbatch_size = 1000000', "[celery] in {path}: batch_size must be at least 1 "
                                                            "and at most 10000 tenants, got 1000000.", ""),
    ('[celery]\nbroker = "redis://x"\nvisibility_timeout = 0', "[celery] in {path}: visibility_timeout must be "
                                                             "more than 0 and at most 31536000 seconds", ""),
    ('[notify]\nwebhook = "https://hooks.example/x"\ntimeout = 1e9', "[notify] in {path}: timeout must be more "
                                                                    "than 0 and at most 600 seconds", ""),
])
def test_a_setting_outside_its_range_is_exit_3_naming_it(tenant_project, setting, shown, range_text):
    path = tenant_project.config(f'tenants = "sqlite:///tenants.db"\n{setting}\n')
    for command in (["run-background-job", "--name", "record"], ["history"], ["list-background-jobs"]):
        result = tenant_project.cli(*command)
        assert result.exit_code == 3, (command, result.output)
        assert result.stderr.startswith(f"Configuration error: {shown.format(path=path)}")
        assert range_text in result.stderr
        assert "Traceback" not in result.output
    assert tenant_project.log() == []


def test_the_ends_of_the_ranges_load_and_run(tenant_project):
    """history_days = 36500 is the longest: the daily prune's cutoff (a century back) is computed fine."""
    tenant_project.config('tenants = "sqlite:///tenants.db"\nhistory_days = 36500\nmisfire_grace = 31536000\n'
                          'state_retry_s = 86400\nlock_stale_s = 0\ntenant_concurrency = 1000\n')
    result = tenant_project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 0, result.output
    assert len(tenant_project.log()) == 4
    tenant_project.config('tenants = "sqlite:///tenants.db"\nhistory_days = 0\ntenant_concurrency = 1\n')
    assert tenant_project.cli("run-background-job", "--name", "record").exit_code == 0


@pytest.mark.parametrize("webhook", ["not a url", "ftp://hooks.example/x", "https://", "hooks.example/x",
                                     "http://exa mple.com/x", "http://host:notaport/x"])
def test_a_webhook_that_is_not_an_http_url_is_refused_at_load(project, webhook):
    path = project.config(f'[notify]\nwebhook = "{webhook}"\n')
    project.job("record", RECORDING_JOB)
    result = project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3
    assert f"Configuration error: [notify] webhook in {path} is not an http(s) URL: {webhook!r}." in result.stderr
    assert project.log() == []


@pytest.mark.parametrize("webhook", ["https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:8080/hook"])
def test_http_webhooks_load(project, webhook):
    project.config(f'[notify]\nwebhook = "{webhook}"\n')
    assert load_settings(env={}).notify["webhook"] == webhook
