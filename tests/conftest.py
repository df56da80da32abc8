from __future__ import annotations

import json
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from pinstripe_jobs.cli import main

PG_URL = os.environ.get("PINSTRIPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Project:
    """A throwaway project folder: pinstripe.toml, jobs/, and a CLI runner that runs inside it."""

    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.jobs = root / "jobs"
        self.jobs.mkdir()
        self.monkeypatch = monkeypatch
        monkeypatch.chdir(root)

    def config(self, text: str) -> Path:
        path = self.root / "pinstripe.toml"
        path.write_text(textwrap.dedent(text))
        return path

    def job(self, name: str, source: str) -> Path:
        path = self.jobs / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def module(self, name: str, source: str) -> Path:
        path = self.root / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def sqlite_tenants(self, rows, name="tenants.db", table="tenants") -> Path:
        path = self.root / name
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN, plan TEXT)")
            db.executemany(f"INSERT INTO {table} VALUES (:id, :name, :active, :plan)", rows)
        return path

    def json_tenants(self, rows, name="tenants.json") -> Path:
        path = self.root / name
        path.write_text(json.dumps(rows))
        return path

    def cli(self, *args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    def log(self) -> list[str]:
        path = self.root / "calls.log"
        return path.read_text().splitlines() if path.exists() else []


TENANTS = [
    {"id": 1, "name": "Acme", "active": True, "plan": "pro"},
    {"id": 2, "name": "Globex", "active": True, "plan": "free"},
    {"id": 3, "name": "Initech", "active": False, "plan": "free"},
    {"id": 4, "name": "Umbrella", "active": True, "plan": "enterprise"},
]

# A job that appends "job tenant args" to calls.log in the project folder, so tests see what ran.
RECORDING_JOB = '''
from pathlib import Path

def run(ctx, *args, **params):
    tenant = ctx.tenant.id if ctx.tenant is not None else None
    with open(Path(__file__).parent.parent / "calls.log", "a") as fh:
        fh.write(f"{ctx.job} {tenant} {list(args)} {params}\\n")
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("PINSTRIPE_") and key != "PINSTRIPE_TEST_PG_URL":
            monkeypatch.delenv(key)
    before = set(sys.modules)
    yield Project(tmp_path, monkeypatch)
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules.get(name), "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def tenant_project(project):
    """A project with four tenants in a SQLite file and a recording job."""
    project.sqlite_tenants(TENANTS)
    project.config('tenants = "sqlite:///tenants.db"\n')
    project.job("record", RECORDING_JOB)
    return project


def postgres_available() -> str | None:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@pytest.fixture(scope="session")
def pg_url():
    problem = postgres_available()
    if problem:
        from tests.procs import unavailable

        unavailable(f"PostgreSQL not reachable at {PG_URL}: {problem}", "PINSTRIPE_REQUIRE_POSTGRES")
    return PG_URL


@pytest.fixture
def pg_table(pg_url, request):
    """A fresh tenants table in PostgreSQL, dropped afterwards; returns (url, table name)."""
    import sqlalchemy as sa

    table = f"tenants_{abs(hash(request.node.nodeid)) % 10**8}_{os.getpid()}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN, plan TEXT)"))
    yield engine, table
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.fixture
def pg_schema_url(pg_url, request):
    """A PostgreSQL URL whose search_path is a fresh schema (dropped afterwards)."""
    import sqlalchemy as sa

    schema = f"pinstripe_test_{abs(hash(request.node.nodeid)) % 10**8}_{os.getpid()}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{pg_url}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path):
    """Every state-store test runs against the embedded SQLite store and a real PostgreSQL one."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture(autouse=True)
def _no_stray_processes():
    """Whatever a test started with tests.procs.start is killed when it ends, pass or fail."""
    yield
    from tests.procs import kill_started

    kill_started()


@pytest.fixture
def throwaway_pg():
    """A PostgreSQL server of the test's own, to stop and restart (never the shared one)."""
    from tests.procs import ThrowawayPostgres, unavailable

    try:
        server = ThrowawayPostgres()
    except Exception as exc:  # pragma: no cover - depends on the machine
        unavailable(f"no throwaway PostgreSQL server: {exc}", "PINSTRIPE_REQUIRE_POSTGRES")
    yield server
    server.remove()


@pytest.fixture
def pg_app(pg_schema_url, request):
    """A state URL on the shared server (its own schema) whose connections carry an application name of
    their own, so a test can terminate exactly the tool's backends: returns (url, application name)."""
    name = f"pst{abs(hash(request.node.nodeid)) % 10**8}p{os.getpid()}"
    return f"{pg_schema_url}&application_name={name}", name


# Markers by where a test lives, so `make test` runs everything and a subset is one -m away:
# `pytest -m unit` (tests/<folder>/: one module of the package), `pytest -m "system and not browser"`.
SYSTEM_KINDS = {"test_faults.py": "faults", "test_claims.py": "faults", "test_processes.py": "processes",
                "test_fleet.py": "fleet", "test_fleet_telemetry.py": "fleet", "test_dashboard_browser.py": "browser"}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.fspath)).resolve()
        item.add_marker("system" if path.parent == tests else "unit")
        kind = SYSTEM_KINDS.get(path.name)
        if kind:
            item.add_marker(kind)
