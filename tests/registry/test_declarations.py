"""The registry after its split (spec, declarations, the folder): the old imports still work, and each
module-level setting is checked with the line that set it."""
from __future__ import annotations

import pytest

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.registry import jobs, spec
from pinstripe_jobs.registry.jobs import JobRegistry


def test_the_old_imports_name_the_same_objects():
    for name in ("JobSpec", "ScheduleEntry", "entries_from", "normalize_name", "OVERLAP_MODES", "ISOLATION_MODES"):
        assert getattr(jobs, name) is getattr(spec, name)
    assert jobs.VALID_NAME is spec.VALID_NAME


@pytest.mark.parametrize("line, message", [
    ("timeout = 0", "timeout must be a number > 0 and <= 31536000, got 0"),
    ("timeout = float('nan')", "timeout must be a number > 0 and <= 31536000, got nan"),
    ("timeout = 1e300", "timeout must be a number > 0 and <= 31536000, got 1e+300"),
    ("retry_backoff = -1", "retry_backoff must be a number >= 0, got -1"),
    ("timeout = True", "timeout must be a number > 0 and <= 31536000, got True"),
    ("retries = 1.5", "retries must be a whole number >= 0 and <= 100, got 1.5"),
    ("retries = 1000", "retries must be a whole number >= 0 and <= 100, got 1000"),
    ("concurrency = True", "concurrency must be a whole number >= 1 and <= 1000, got True"),
    ("concurrency = 30000", "concurrency must be a whole number >= 1 and <= 1000, got 30000"),
    ("spread = 'soon'", "spread must be a duration"),
    ("schedule_for = 'daily'", "schedule_for must be a function"),
    ("catch_up = 1", "catch_up must be a bool, got 1"),
    ('schedule = "0 0 31 2 *"', "invalid cron expression '0 0 31 2 *' in schedule: it never fires"),
])
def test_a_bad_setting_is_reported_at_its_line(project, line, message):
    project.job("bad", f'"""Doc."""\n{line}\n\ndef run(ctx):\n    pass\n')
    specs, broken = JobRegistry(load_settings(cwd=project.root, env={})).load_all()
    assert specs == [] and [problem.line for problem in broken] == [2]
    assert message in broken[0].error


def test_good_settings_are_read_as_declared(project):
    project.job("good", '"""Sends the digest.\n\nMore."""\ntimeout = 2.5\nretries = 2\nretry_backoff = 0\n'
                        'concurrency = 3\nspread = "10m"\nschedule = ["0 9 * * *", ("0 18 * * *", "evening")]\n'
                        "def run(ctx, when='morning'):\n    pass\n")
    [good] = JobRegistry(load_settings(cwd=project.root, env={})).load_all()[0]
    assert (good.description, good.timeout, good.retries, good.retry_backoff, good.concurrency, good.spread) == \
        ("Sends the digest.", 2.5, 2, 0, 3, 600.0)
    assert [(entry.cron, entry.args) for entry in good.schedules] == [("0 9 * * *", ()), ("0 18 * * *", ("evening",))]
