"""One contract suite, run against every tenant source (APScheduler-style parametrised fixture)."""
from __future__ import annotations

import csv
import json
import sqlite3
import sys

import pytest

from pinstripe_jobs.errors import TenantSourceError
from pinstripe_jobs.tenants import Tenant, TenantQuery, open_source

from .conftest import TENANTS

ROWS = TENANTS + [{"id": 5, "name": "Hooli", "active": True, "plan": None}]
SOURCES = ["sqlite", "sqlite-sqlalchemy", "postgres", "postgres-sqlalchemy", "json", "jsonl", "csv", "callable",
           "inline"]


def make_source(kind, rows, tmp_path, request, table="tenants"):
    if kind in ("sqlite", "sqlite-sqlalchemy"):
        path = tmp_path / "t.db"
        with sqlite3.connect(path) as db:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN, plan TEXT)")
            db.executemany(f"INSERT INTO {table} VALUES (:id, :name, :active, :plan)", rows)
        if kind == "sqlite-sqlalchemy":
            from pinstripe_jobs.tenants.sql import SqlSource

            return SqlSource(f"sqlite:///{path}", table)
        return open_source(f"sqlite:///{path}", table)
    if kind in ("postgres", "postgres-sqlalchemy"):
        import sqlalchemy as sa

        engine, pg_table = request.getfixturevalue("pg_table")
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {pg_table} VALUES (:id, :name, :active, :plan)"), rows)
        url = str(engine.url.render_as_string(hide_password=False))
        if kind == "postgres-sqlalchemy":  # the same database through another driver name: SQLAlchemy
            from pinstripe_jobs.tenants.sql import SqlSource

            return SqlSource(url, pg_table)
        source = open_source(url, pg_table)
        assert type(source).__name__ == "PostgresSource"  # psycopg directly
        return source
    if kind == "json":
        path = tmp_path / "t.json"
        path.write_text(json.dumps(rows))
        return open_source(str(path))
    if kind == "jsonl":
        path = tmp_path / "t.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return open_source(str(path))
    if kind == "csv":
        path = tmp_path / "t.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["id", "name", "active", "plan"])
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
                                 for k, v in row.items()})
        return open_source(str(path))
    if kind == "callable":
        module = tmp_path / "tenant_rows_mod.py"
        module.write_text(f"ROWS = {rows!r}\n\ndef all_tenants():\n    return iter(ROWS)\n")
        sys.path.insert(0, str(tmp_path))
        sys.modules.pop("tenant_rows_mod", None)
        request.addfinalizer(lambda: (sys.path.remove(str(tmp_path)), sys.modules.pop("tenant_rows_mod", None)))
        return open_source("tenant_rows_mod:all_tenants")
    return open_source([dict(r) for r in rows])


@pytest.fixture(params=SOURCES)
def source(request, tmp_path):
    src = make_source(request.param, ROWS, tmp_path, request)
    yield src
    src.close()


def ids(query):
    return [t.id for t in query]


def test_default_order_is_by_id(source):
    assert ids(TenantQuery(source)) == [1, 2, 3, 4, 5]


def test_where_equality_and_in(source):
    q = TenantQuery(source)
    assert ids(q.where(active=True)) == [1, 2, 4, 5]
    assert ids(q.where(plan="free")) == [2, 3]
    assert ids(q.where(plan=["pro", "enterprise"])) == [1, 4]
    assert ids(q.where(active=True, plan="free")) == [2]
    assert ids(q.where(active=True).where(plan="free")) == [2]


def test_where_predicate_runs_in_python(source):
    q = TenantQuery(source).where(lambda t: t.name.endswith("x"))
    assert ids(q) == [2]
    assert ids(q.where(active=False)) == []


def test_exclude(source):
    q = TenantQuery(source)
    assert ids(q.exclude(plan="free")) == [1, 4, 5]  # a missing plan is not "free"
    assert ids(q.exclude(plan=["pro", "free"])) == [4, 5]
    assert ids(q.exclude(active=True, plan="free")) == [1, 3, 4, 5]


def test_order_by_and_limit(source):
    q = TenantQuery(source)
    assert ids(q.order_by("-id")) == [5, 4, 3, 2, 1]
    assert ids(q.order_by("name")) == [1, 2, 5, 3, 4]
    assert ids(q.order_by("plan", "-id")) == [4, 3, 2, 1, 5]  # missing values last
    assert ids(q.limit(2)) == [1, 2]
    assert ids(q.where(active=True).order_by("-id").limit(2)) == [5, 4]
    assert ids(q.where(lambda t: t.id % 2 == 1).limit(2)) == [1, 3]  # limit applies after the predicate


def test_count(source):
    q = TenantQuery(source)
    assert q.count() == 5
    assert q.where(active=True).limit(3).count() == 3
    assert q.where(lambda t: t.id > 3).count() == 2


def test_query_is_immutable(source):
    q = TenantQuery(source)
    q.where(active=False)
    q.limit(1)
    assert ids(q) == [1, 2, 3, 4, 5]


def test_tenant_is_read_only_with_attribute_and_item_access(source):
    tenant = next(iter(TenantQuery(source)))
    assert isinstance(tenant, Tenant)
    assert (tenant.id, tenant.name, tenant["plan"]) == (1, "Acme", "pro")
    with pytest.raises(AttributeError, match="read-only"):
        tenant.name = "x"
    with pytest.raises(TypeError):
        tenant["name"] = "x"
    with pytest.raises(AttributeError, match="no field 'nope'"):
        tenant.nope  # noqa: B018 - reading it is the test


def test_only_ids_matches_text_ids(source):
    q = TenantQuery(source)
    assert ids(q.only_ids(["4", "2"])) == [2, 4]
    assert ids(q.without_ids(["1", "5"])) == [2, 3, 4]


def test_values_keep_their_types(source):
    tenant = next(iter(TenantQuery(source).where(id=3)))
    assert tenant.id == 3 and isinstance(tenant.id, int)
    assert bool(tenant.active) is False


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "callable", "inline"])
def test_missing_id_is_a_clear_error(kind, tmp_path, request):
    src = make_source(kind, [{"id": 1, "name": "a"}, {"name": "no id"}], tmp_path, request)
    with pytest.raises(TenantSourceError, match="has no 'id'"):
        list(TenantQuery(src))


@pytest.mark.parametrize("kind", ["json", "jsonl", "csv", "callable", "inline"])
def test_duplicate_ids_are_a_clear_error(kind, tmp_path, request):
    src = make_source(kind, [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], tmp_path, request)
    with pytest.raises(TenantSourceError, match="Duplicate tenant id 1"):
        list(TenantQuery(src))


def test_csv_cells_are_typed(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,name,seats,ratio,active\n7,Acme,10,0.5,TRUE\n8,Beta,x,1e3,false\n")
    rows = list(TenantQuery(open_source(str(path))))
    assert [dict(r) for r in rows] == [
        {"id": 7, "name": "Acme", "seats": 10, "ratio": 0.5, "active": True},
        {"id": 8, "name": "Beta", "seats": "x", "ratio": 1000.0, "active": False},
    ]


def test_callable_may_return_objects(tmp_path, monkeypatch):
    (tmp_path / "objs_mod.py").write_text(
        "from dataclasses import dataclass\n"
        "@dataclass\nclass T:\n    id: int\n    name: str\n"
        "class P:\n    def __init__(self, i): self.id = i; self.name = 'p'; self._secret = 1\n"
        "def tenants():\n    return [T(2, 'two'), P(1)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = list(TenantQuery(open_source("objs_mod:tenants")))
    assert [dict(r) for r in rows] == [{"id": 1, "name": "p"}, {"id": 2, "name": "two"}]


def test_sql_pushes_keyword_filters_order_and_limit_into_sql(tmp_path, request):
    import sqlalchemy as sa

    src = make_source("sqlite-sqlalchemy", ROWS, tmp_path, request)
    statements = []
    sa.event.listen(src.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: statements.append(stmt))
    q = TenantQuery(src).where(plan=["free", "pro"]).exclude(active=False).order_by("name").limit(2)
    assert ids(q) == [1, 2]
    sql = statements[-1].upper()
    assert "WHERE" in sql and " IN (" in sql and "ORDER BY" in sql and "LIMIT" in sql


def test_sql_streams_in_pages(tmp_path, request):
    import sqlalchemy as sa

    rows = [{"id": i, "name": f"t{i}", "active": True, "plan": "free"} for i in range(1, 2501)]
    src = make_source("sqlite-sqlalchemy", rows, tmp_path, request)
    statements = []
    sa.event.listen(src.engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: statements.append(stmt))
    iterator = iter(TenantQuery(src))
    first = [next(iterator) for _ in range(10)]
    assert [t.id for t in first] == list(range(1, 11))
    pages = [s for s in statements if "FROM tenants" in s]
    assert len(pages) == 1 and "LIMIT" in pages[0]  # one page read so far, not the whole table
    assert sum(1 for _ in iterator) == 2490
    assert len([s for s in statements if "FROM tenants" in s]) == 3


@pytest.mark.parametrize("driver", ["psycopg", "sqlalchemy"])
def test_postgres_streams_and_pushes_down(pg_table, tmp_path, request, driver):
    import sqlalchemy as sa

    engine, table = pg_table
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} SELECT g, 't' || g, g % 2 = 0, 'free' "
                             "FROM generate_series(1, 2500) g"))
    url = engine.url.render_as_string(hide_password=False)
    statements = []
    if driver == "psycopg":
        src = open_source(url, table)
        src.trace = statements.append
    else:
        from pinstripe_jobs.tenants.sql import SqlSource

        src = SqlSource(url, table)
        sa.event.listen(src.engine, "before_cursor_execute",
                        lambda conn, cur, stmt, params, ctx, many: statements.append(stmt))
    q = TenantQuery(src).where(active=True).order_by("-name").limit(3)
    assert ids(q) == [998, 996, 994]  # 't998' > 't996' > ... as text
    assert "LIMIT" in statements[-1].upper() and "WHERE" in statements[-1].upper()
    assert TenantQuery(src).where(active=True).count() == 1250
    assert sum(1 for _ in TenantQuery(src)) == 2500


def test_missing_table_and_missing_file_are_config_errors(tmp_path):
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    with pytest.raises(TenantSourceError, match="Tenant table missing: table 'tenants'"):
        list(TenantQuery(open_source(f"sqlite:///{db}")))
    with pytest.raises(TenantSourceError, match="does not exist"):
        list(TenantQuery(open_source(f"sqlite:///{tmp_path}/nope.db")))
    with pytest.raises(TenantSourceError, match="does not exist"):
        open_source(str(tmp_path / "nope.json"))


def test_a_malformed_postgres_url_is_a_clear_error_at_once(tenant_project):
    tenant_project.config('tenants = "postgresql://app:s3cret@[::1/db"\n')
    result = tenant_project.cli("run-background-job", "--name", "record")
    assert result.exit_code == 3
    assert "is not a valid database URL" in result.output and "s3cret" not in result.output
    assert "Traceback" not in result.output


def test_unreachable_postgres_masks_the_password():
    src = open_source("postgresql+psycopg://app:s3cret@127.0.0.1:1/nodb")
    with pytest.raises(TenantSourceError) as info:
        list(TenantQuery(src))
    assert "unreachable" in str(info.value)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def traced(src, monkeypatch):
    """Capture the SQL the stdlib SQLite source sends."""
    import pinstripe_jobs.tenants.sqlite as native

    statements = []
    real_connect = native.sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(native.sqlite3, "connect", connect)
    return statements


def test_native_sqlite_pushes_down_and_streams_in_pages(tmp_path, request, monkeypatch):
    from pinstripe_jobs.tenants.sqlite import SqliteSource

    rows = [{"id": i, "name": f"t{i}", "active": i % 2 == 0, "plan": "free"} for i in range(1, 2501)]
    src = make_source("sqlite", rows, tmp_path, request)
    assert isinstance(src, SqliteSource)
    statements = traced(src, monkeypatch)
    q = TenantQuery(src).where(plan=["free", "pro"]).exclude(active=False).order_by("-name").limit(2)
    assert ids(q) == [998, 996]
    sql = statements[-1].upper()
    assert "WHERE" in sql and " IN (" in sql and "ORDER BY" in sql and "LIMIT 2" in sql
    statements.clear()
    iterator = iter(TenantQuery(src))
    assert [next(iterator).id for _ in range(10)] == list(range(1, 11))
    assert len([s for s in statements if s.startswith("SELECT")]) == 1
    assert sum(1 for _ in iterator) == 2490
    assert len([s for s in statements if s.startswith("SELECT")]) == 3


def test_sqlite_url_forms_pick_the_right_source(tmp_path):
    from pinstripe_jobs.tenants.sql import SqlSource
    from pinstripe_jobs.tenants.sqlite import SqliteSource

    assert isinstance(open_source(f"sqlite:///{tmp_path}/a.db"), SqliteSource)
    assert isinstance(open_source(f"sqlite:///{tmp_path}/a.db?timeout=5"), SqlSource)
