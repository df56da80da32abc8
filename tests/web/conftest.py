"""A project with history (4 tenants, 2 failing) and Starlette test clients over its dashboard."""
from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
from starlette.testclient import TestClient  # noqa: E402

from pinstripe_jobs.config import load_settings  # noqa: E402
from pinstripe_jobs.web.app import Dashboard, create_app  # noqa: E402
from tests.test_dashboard import SYNC_JOB, TOKEN  # noqa: E402

BEARER = {"Authorization": f"Bearer {TOKEN}"}
SAME_ORIGIN = {"Origin": "http://testserver"}

# A job whose run takes two arguments, the second an int; it records them in calls.log.
ARGS_JOB = '''
from pathlib import Path

multi_tenant = False

def run(ctx, who, times: int):
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"greet {who} {times}\\n")
    print(f"greeted {who} {times} times")
'''


def make_dashboard(project, *, allow_actions=False, allowed_hosts=None) -> Dashboard:
    settings = load_settings(project.root / "pinstripe.toml")
    return Dashboard(settings, token=TOKEN, allow_actions=allow_actions, allowed_hosts=allowed_hosts,
                     project_args=["--config", str(project.root / "pinstripe.toml")])


def client_for(project, *, allow_actions=False, allowed_hosts=None, raise_server_exceptions=True) -> TestClient:
    app = create_app(make_dashboard(project, allow_actions=allow_actions, allowed_hosts=allowed_hosts))
    return TestClient(app, raise_server_exceptions=raise_server_exceptions)


def with_history(project, state_url: str):
    project.config(f'tenants = "sqlite:///tenants.db"\nstate = "{state_url}"\n')
    project.job("sync", SYNC_JOB)
    project.job("greet", ARGS_JOB)
    result = project.cli("run-background-job", "--name", "sync")
    assert result.exit_code == 1, result.output
    return project


@pytest.fixture
def dash(tenant_project, state_url):
    """On SQLite and on PostgreSQL state."""
    return with_history(tenant_project, state_url)


@pytest.fixture
def sqlite_dash(tenant_project, tmp_path):
    return with_history(tenant_project, f"sqlite:///{tmp_path / 'state' / 'state.db'}")
