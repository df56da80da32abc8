"""generate-background-job refuses a name that would not dasherize cleanly (it used to make `count_` the
job `count-`)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("raw", ["count_", "count-", "a__b", "send-_mail", "x_-y"])
def test_a_name_with_a_dangling_or_doubled_separator_is_refused(project, raw):
    result = project.cli("generate-background-job", raw)
    assert result.exit_code == 2, result.output
    assert f"Invalid job name {raw!r}: it would become the job" in result.output
    assert "Join words with one '-' or '_'" in result.output
    assert list(project.jobs.iterdir()) == []


@pytest.mark.parametrize("raw, file, job", [("count", "count.py", "count"), ("SendMail", "send_mail.py", "send-mail"),
                                            ("send_mail2", "send_mail2.py", "send-mail2"),
                                            ("HTTPPing", "http_ping.py", "http-ping")])
def test_clean_names_are_created_and_run(project, raw, file, job):
    result = project.cli("generate-background-job", raw)
    assert result.exit_code == 0 and (project.jobs / file).is_file()
    assert project.cli("run-background-job", "--name", job).exit_code == 0
