"""``tenancy = "database"`` (one SQLite file or PostgreSQL database per tenant), ``"shared"``, the engine
LRU, ``transaction = "manual"``, and a job that never touches ctx.db (no SQLAlchemy imported)."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from pinstripe_jobs.database.engines import EngineCache
from tests.database.helpers import Folder, runs

WRITE = '''
import json, sys
from pathlib import Path
from sqlalchemy import text

def run(ctx, fail="none"):
    names = [n for (n,) in ctx.db.execute(text("SELECT name FROM users ORDER BY name"))]
    ctx.db.execute(text("INSERT INTO outbox (body) VALUES (:b)"), {"b": f"hello {ctx.tenant.id}"})
    with open(Path(__file__).parent.parent / "seen.jsonl", "a") as fh:
        fh.write(json.dumps({"tenant": ctx.tenant.id, "names": names}) + "\\n")
    if str(ctx.tenant.id) == fail:
        raise RuntimeError("fails after writing")
'''


def make_sqlite(folder: Folder, ids: list[int]) -> None:
    (folder.root / "data").mkdir()
    for i in ids:
        with sqlite3.connect(folder.root / "data" / f"tenant_{i}.db") as db:
            db.execute("CREATE TABLE users (name TEXT)")
            db.execute("CREATE TABLE outbox (body TEXT)")
            db.executemany("INSERT INTO users VALUES (?)", [(f"user{i}_{k}",) for k in range(i % 3 + 1)])


def outbox(folder: Folder, i: int) -> list[str]:
    with sqlite3.connect(folder.root / "data" / f"tenant_{i}.db") as db:
        return [b for (b,) in db.execute("SELECT body FROM outbox")]


@pytest.fixture
def sqlite_folder(tmp_path):
    folder = Folder(tmp_path)
    ids = list(range(1, 13))
    make_sqlite(folder, ids)
    folder.write("tenants.json", json.dumps([{"id": i} for i in ids] + [{"id": 99}]))  # 99 has no file
    folder.write("pinstripe.toml", 'tenants = "tenants.json"\n[database]\ntenancy = "database"\n'
                                   'url = "sqlite:///data/tenant_{tenant.id}.db"\nmax_engines = 4\npool_size = 2\n')
    folder.job("write", WRITE)
    return folder


def test_sqlite_database_per_tenant(sqlite_folder):
    result = sqlite_folder.run("--name", "write", "--concurrency", "6", "--param", "fail=5")
    assert result.returncode == 1
    statuses = {t: r["status"] for t, r in runs(result).items()}
    assert statuses.pop("5") == "failed" and statuses.pop("99") == "failed"
    assert set(statuses.values()) == {"succeeded"}
    error = runs(result)["99"]["error"]
    assert "database file of tenant 99 does not exist" in error and "tenant_99.db" in error
    assert not (sqlite_folder.root / "data" / "tenant_99.db").exists()  # not created empty
    for record in sqlite_folder.records():
        i = record["tenant"]
        assert record["names"] == [f"user{i}_{k}" for k in range(i % 3 + 1)]
    for i in range(1, 13):
        assert outbox(sqlite_folder, i) == ([] if i == 5 else [f"hello {i}"])


def test_manual_transactions_are_the_jobs(sqlite_folder):
    text = (sqlite_folder.root / "pinstripe.toml").read_text() + 'transaction = "manual"\n'
    sqlite_folder.write("pinstripe.toml", text)
    sqlite_folder.job("manual", '''
        from sqlalchemy import text

        def run(ctx):
            ctx.db.execute(text("INSERT INTO outbox VALUES ('committed')"))
            ctx.db.commit()
            ctx.db.execute(text("INSERT INTO outbox VALUES ('left open')"))  # never committed: dropped
    ''')
    result = sqlite_folder.run("--name", "manual", "--tenant", "1", "--tenant", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outbox(sqlite_folder, 1) == outbox(sqlite_folder, 2) == ["committed"]


def test_a_job_that_never_touches_ctx_db_imports_no_sqlalchemy(sqlite_folder):
    sqlite_folder.job("probe", '''
        import sys

        def run(ctx):
            return "sqlalchemy" in sys.modules
    ''')
    sqlite_folder.job("probe2", '''
        import sys

        def run(ctx):
            assert "sqlalchemy" not in sys.modules, "imported before ctx.db"
            ctx.db
            assert "sqlalchemy" in sys.modules
    ''')
    assert sqlite_folder.run("--name", "probe", "--tenant", "1").returncode == 0
    result = sqlite_folder.run("--name", "probe2", "--tenant", "1")
    assert result.returncode == 0, result.stdout


def test_the_engine_lru_keeps_at_most_its_limit():
    made, disposed = [], []

    class Fake:
        def __init__(self, url):
            self.url = url

        def dispose(self, close=True):
            disposed.append(self.url)

    cache = EngineCache(lambda url: made.append(url) or Fake(url), limit=3)
    for url in ["a", "b", "c", "a", "d", "e", "a"]:
        assert cache.get(url).url == url
        assert len(cache) <= 3
    assert made == ["a", "b", "c", "d", "e"]  # "a" was reused while recent
    assert disposed == ["b", "c"] and "a" in cache
    with pytest.raises(ValueError):
        EngineCache(lambda url: Fake(url), limit=0)


def test_postgresql_database_per_tenant(tmp_path, pg_url):
    import psycopg

    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    names = [f"pst_{os.getpid()}_db{i}" for i in range(3)]
    base = pg_url.rsplit("/", 1)[0]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        for i, name in enumerate(names):
            with psycopg.connect(f"{admin.rsplit('/', 1)[0]}/{name}", autocommit=True) as conn:
                conn.execute("CREATE TABLE users (name text)")
                conn.execute("CREATE TABLE outbox (body text)")
                conn.execute("INSERT INTO users SELECT 'user' || %s || '_' || g FROM generate_series(0, %s) g",
                             (i, i % 3))
        folder = Folder(tmp_path)
        ids = [{"id": i, "db": name} for i, name in enumerate(names)] + [{"id": 9, "db": f"pst_{os.getpid()}_none"}]
        folder.write("tenants.json", json.dumps(ids))
        folder.write("pinstripe.toml", 'tenants = "tenants.json"\n[database]\ntenancy = "database"\n'
                                       f'url = "{base}/{{tenant.db}}"\nmax_engines = 2\n')
        folder.job("write", WRITE)
        result = folder.run("--name", "write", "--concurrency", "2", "--param", "fail=1")
        statuses = {t: r["status"] for t, r in runs(result).items()}
        assert statuses == {"0": "succeeded", "1": "failed", "2": "succeeded", "9": "failed"}
        assert "The database of tenant 9 cannot be used" in runs(result)["9"]["error"]
        assert "Traceback" not in runs(result)["9"]["error"]
        for record in folder.records():
            i = record["tenant"]
            assert record["names"] == [f"user{i}_{k}" for k in range(i % 3 + 1)]
        for i, name in enumerate(names):
            with psycopg.connect(f"{admin.rsplit('/', 1)[0]}/{name}") as conn:
                assert [b for (b,) in conn.execute("SELECT body FROM outbox")] == ([] if i == 1 else [f"hello {i}"])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_shared_database_carries_the_tenant(tmp_path):
    folder = Folder(tmp_path)
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("CREATE TABLE users (tenant_id INTEGER, name TEXT)")
        db.executemany("INSERT INTO users VALUES (?, ?)", [(1, "a"), (1, "b"), (2, "c")])
    folder.write("pinstripe.toml", 'tenants = [{id = 1}, {id = 2}]\n[database]\ntenancy = "shared"\n'
                                   'url = "sqlite:///app.db"\n')
    folder.job("names", '''
        import json
        from pathlib import Path
        from sqlalchemy import text

        def run(ctx):
            assert ctx.db.tenant is ctx.tenant
            rows = ctx.db.execute(text("SELECT name FROM users WHERE tenant_id = :t ORDER BY name"),
                                  {"t": ctx.db.tenant.id})
            with open(Path(__file__).parent.parent / "seen.jsonl", "a") as fh:
                fh.write(json.dumps({"tenant": ctx.tenant.id, "names": [n for (n,) in rows]}) + "\\n")
    ''')
    result = folder.run("--name", "names")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(folder.records(), key=lambda r: r["tenant"]) == [{"tenant": 1, "names": ["a", "b"]},
                                                                   {"tenant": 2, "names": ["c"]}]


def test_a_missing_driver_is_each_tenants_clear_failure(tmp_path):
    folder = Folder(tmp_path)
    folder.write("pinstripe.toml", 'tenants = [{id = 1}]\n[database]\ntenancy = "shared"\n'
                                   'url = "postgresql+nosuchdriver://app:secret@127.0.0.1/app"\n')
    folder.job("touch", "def run(ctx):\n    ctx.db\n")
    result = folder.run("--name", "touch")
    assert result.returncode == 1
    error = runs(result)["1"]["error"]
    assert "The database of tenant 1 cannot be used" in error and "nosuchdriver" in error
    assert "secret" not in result.stdout + result.stderr


def test_a_job_for_no_tenant_gets_a_clear_message_from_a_per_tenant_database(sqlite_folder):
    sqlite_folder.job("global_job", "multi_tenant = False\n\ndef run(ctx):\n    ctx.db\n")
    result = sqlite_folder.run("--name", "global-job")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert "ctx.db with tenancy = 'database' needs a tenant" in doc["runs"][0]["error"]
