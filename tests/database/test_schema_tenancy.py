"""``[database] tenancy = "schema"`` on the real PostgreSQL: 50 schemas with different rows, the installed
``pinstripe`` script, threads, asyncio, retries, child processes, rollbacks and the pool's bound."""
from __future__ import annotations

import json
import os

import pytest

from tests.database.helpers import Folder, runs

TENANTS = 50
POOL = 3
PREFIX = f"pst_{os.getpid()}_"
APP = f"pst-{os.getpid()}"

CONFIG = """
jobs_dir = "jobs"
tenants = "tenants.json"

[database]
tenancy = "schema"
url = "{url}?application_name={app}"
pool_size = {pool}
pool_timeout = 60
"""

# Reads its tenant's rows, counts this application's connections, writes a note in the run's transaction,
# and fails (after writing) where asked.
PEEK = '''
import json, os
from pathlib import Path
from sqlalchemy import text

def run(ctx, fail_every="0", fail_first_attempt="no"):
    owners = ctx.db.execute(text("SELECT owner, count(*) FROM items GROUP BY owner")).all()
    conns = ctx.db.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                           {"a": os.environ.get("PST_APP", "%(app)s")}).scalar()
    path = ctx.db.execute(text("SHOW search_path")).scalar()
    ctx.db.execute(text("INSERT INTO notes (attempt) VALUES (:a)"), {"a": ctx.attempt})
    with open(Path(__file__).parent.parent / "seen.jsonl", "a") as fh:
        fh.write(json.dumps({"tenant": ctx.tenant.id, "owners": [[o, c] for o, c in owners], "conns": conns,
                             "path": path, "attempt": ctx.attempt, "pid": os.getpid()}) + "\\n")
    index = int(ctx.tenant.id.rsplit("_", 1)[1])
    if int(fail_every) and index %% int(fail_every) == 0:
        raise RuntimeError("failing on purpose after writing")
    if fail_first_attempt == "yes" and ctx.attempt == 1 and index %% 2 == 0:
        raise RuntimeError("first attempt fails")
'''

APEEK = '''
import asyncio, json, os
from pathlib import Path
from sqlalchemy import text

async def run(ctx):
    await asyncio.sleep(0)
    owners = ctx.db.execute(text("SELECT owner, count(*) FROM items GROUP BY owner")).all()
    await asyncio.sleep(0.01)  # other tenants' tasks run while this one holds its session
    path = ctx.db.execute(text("SHOW search_path")).scalar()
    ctx.db.execute(text("INSERT INTO notes (attempt) VALUES (:a)"), {"a": ctx.attempt})
    with open(Path(__file__).parent.parent / "seen.jsonl", "a") as fh:
        fh.write(json.dumps({"tenant": ctx.tenant.id, "owners": [[o, c] for o, c in owners],
                             "path": path}) + "\\n")
'''


def schema(i: int) -> str:
    return f"{PREFIX}{i}"


def tenant_id(i: int) -> str:
    return f"t_{i}"


@pytest.fixture(scope="module")
def schemas(pg_url):
    import psycopg

    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TENANTS):
            conn.execute(f'CREATE SCHEMA "{schema(i)}"')
            conn.execute(f'CREATE TABLE "{schema(i)}".items (owner text, n int)')
            conn.execute(f'CREATE TABLE "{schema(i)}".notes (attempt int)')
            conn.execute(f'INSERT INTO "{schema(i)}".items SELECT %s, g FROM generate_series(1, %s) g',
                         (tenant_id(i), i + 1))
    yield dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TENANTS):
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema(i)}" CASCADE')


def notes(dsn: str) -> dict[str, list[int]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {tenant_id(i): [a for (a,) in conn.execute(f'SELECT attempt FROM "{schema(i)}".notes ORDER BY 1')]
                for i in range(TENANTS)}


def clear_notes(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(TENANTS):
            conn.execute(f'TRUNCATE "{schema(i)}".notes')


@pytest.fixture
def folder(tmp_path, schemas, pg_url):
    clear_notes(schemas)
    folder = Folder(tmp_path)
    folder.write("pinstripe.toml", CONFIG.format(url=pg_url, app=APP, pool=POOL))
    folder.write("pinstripe-async.toml", CONFIG.format(url=pg_url, app=APP, pool=10))
    rows = [{"id": tenant_id(i), "schema": schema(i)} for i in range(TENANTS)]
    folder.write("tenants.json", json.dumps(rows))
    folder.job("peek", PEEK % {"app": APP})
    folder.job("apeek", APEEK)
    return folder


def check_isolation(folder: Folder, expect_runs: int = TENANTS) -> list[dict]:
    seen = folder.records()
    assert len(seen) == expect_runs
    for record in seen:
        i = int(record["tenant"].rsplit("_", 1)[1])
        assert record["owners"] == [[record["tenant"], i + 1]], record  # its own rows, and only those
        assert record["path"] == f'"{schema(i)}"', record
    return seen


@pytest.mark.parametrize("concurrency", ["1", "10"])
def test_each_tenant_sees_only_its_rows_and_writes_are_committed(folder, schemas, concurrency):
    result = folder.run("--name", "peek", "--concurrency", concurrency)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(runs(result)) == TENANTS and {r["status"] for r in runs(result).values()} == {"succeeded"}
    seen = check_isolation(folder)
    assert max(r["conns"] for r in seen) <= POOL  # the pool's bound, counted by PostgreSQL itself
    assert notes(schemas) == {tenant_id(i): [1] for i in range(TENANTS)}


def test_asyncio_tasks_each_in_their_schema(folder, schemas):
    result = folder.run("--name", "apeek", "--concurrency", "10", config="pinstripe-async.toml")
    assert result.returncode == 0, result.stderr[-3000:]
    check_isolation(folder)
    assert notes(schemas) == {tenant_id(i): [1] for i in range(TENANTS)}


def test_failed_runs_are_rolled_back_and_the_others_committed(folder, schemas):
    result = folder.run("--name", "peek", "--concurrency", "10", "--param", "fail_every=7")
    assert result.returncode == 1
    statuses = {t: r["status"] for t, r in runs(result).items()}
    failing = {tenant_id(i) for i in range(TENANTS) if i % 7 == 0}
    assert {t for t, s in statuses.items() if s == "failed"} == failing
    check_isolation(folder)
    written = notes(schemas)
    assert {t for t, rows in written.items() if rows} == set(statuses) - failing  # failed tenants: no row left


def test_retries_start_from_a_clean_transaction(folder, schemas):
    result = folder.run("--name", "peek", "--concurrency", "10", "--retries", "1", "--param",
                        "fail_first_attempt=yes")
    assert result.returncode == 0, result.stderr[-3000:]
    check_isolation(folder, expect_runs=TENANTS + TENANTS // 2)
    written = notes(schemas)
    for i in range(TENANTS):  # the failed first attempt's row was rolled back; the retry's is kept
        assert written[tenant_id(i)] == ([2] if i % 2 == 0 else [1])


def test_isolation_process_children_open_their_own_connections(folder, schemas):
    result = folder.run("--name", "peek", "--concurrency", "4", "--isolation", "process")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = check_isolation(folder)
    assert len({r["pid"] for r in seen}) > 1  # really in children
    assert notes(schemas) == {tenant_id(i): [1] for i in range(TENANTS)}


def test_a_tenant_whose_schema_is_missing_fails_alone(folder, schemas):
    rows = [{"id": tenant_id(i), "schema": schema(i)} for i in range(TENANTS)]
    rows.append({"id": "t_999", "schema": f"{PREFIX}missing"})
    folder.write("tenants.json", json.dumps(rows))
    result = folder.run("--name", "peek", "--concurrency", "10")
    assert result.returncode == 1
    by_tenant = runs(result)
    assert by_tenant["t_999"]["status"] == "failed"
    assert f"Schema '{PREFIX}missing' of tenant 't_999' does not exist" in by_tenant["t_999"]["error"]
    assert "Traceback" not in by_tenant["t_999"]["error"]
    assert all(r["status"] == "succeeded" for t, r in by_tenant.items() if t != "t_999")
    check_isolation(folder)
