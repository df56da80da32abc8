"""The dashboard's view of the named limits (issue #22): ``/api/limits`` lists ``[limits]`` with the tokens
granted in each one's current window, read from the real store after a real run."""
from __future__ import annotations

import pytest

from tests.procs import run
from tests.web.conftest import BEARER, client_for

pytest.importorskip("starlette", reason="the dashboard extra is not installed")


def test_the_api_lists_the_limits_with_the_tokens_used_in_their_window(project, state_url):
    project.config(f'state = "{state_url}"\ntenants = [{{id = 1}}]\n[limits]\napi = "1000/h"\n'
                   "smtp = { concurrency = 3 }\n")
    project.job("calls", 'def run(ctx):\n    for _ in range(7):\n        with ctx.limit("api"):\n            pass\n')
    assert run(project, "run-background-job", "--name", "calls").returncode == 0
    client = client_for(project)
    response = client.get("/api/limits", headers=BEARER)
    assert response.status_code == 200
    limits = {row["name"]: row for row in response.json()["limits"]}
    assert limits["api"]["limit"] == "1000/h" and limits["api"]["window_s"] == 3600
    assert limits["api"]["used_in_window"] == 7  # unused tokens of a block were given back at the end
    assert limits["smtp"]["concurrency"] == 3 and limits["smtp"]["used_in_window"] is None
