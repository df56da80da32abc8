"""ctx.db over PostgreSQL schemas (issue #21), each figure beside its target. Runnable standalone:

    .venv/bin/python benchmarks/database.py          # BENCH_QUICK=1 for 300 schemas instead of 2,000

One database of its own holds a django-tenants project (its tenant table, ``customers_client``) and one
schema per tenant with a ``shop_item`` table. Per-tenant costs are slopes, (wall time at N tenants - wall
time at 1) / (N - 1), medians of interleaved runs, so that start-up does not count. Compared:

- a bare psycopg loop: one connection, ``SET search_path`` and ``SELECT count(*) FROM shop_item`` per tenant;
- ``pinstripe run-background-job`` with a job that runs that query through ``ctx.db`` (``tenancy = "schema"``),
  and the same job without the query (so that ctx.db's own cost can be told from the run's);
- django-tenants' ``manage.py all_tenants_command`` with a command running ``Item.objects.count()``;
- ``pinstripe`` with ``tenants = "django-tenants"`` and a job running ``Item.objects.count()``.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from run import PINSTRIPE, QUICK  # noqa: E402
from speed import Database, median_times, slope  # noqa: E402

from tests.database import django_project  # noqa: E402

BARE_LOOP = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    schemas = [s for (s,) in conn.execute("SELECT schema_name FROM customers_client WHERE schema_name <> 'public' "
                                          "ORDER BY id")]
    for schema in schemas:
        conn.execute('SET search_path TO "' + schema.replace('"', '""') + '"')
        conn.execute("SELECT count(*) FROM shop_item").fetchone()
"""
# The same, one transaction per tenant as ctx.db's runs have: BEGIN, search path, query, COMMIT.
BARE_TX_LOOP = """
import sys, psycopg
with psycopg.connect(sys.argv[1]) as conn:
    schemas = [s for (s,) in conn.execute("SELECT schema_name FROM customers_client WHERE schema_name <> 'public' "
                                          "ORDER BY id")]
    conn.commit()
    for schema in schemas:
        conn.execute("SELECT set_config('search_path', %s, true)", ['"' + schema.replace('"', '""') + '"'])
        conn.execute("SELECT count(*) FROM shop_item").fetchone()
        conn.commit()
"""
COUNT_COMMAND = """
from django.core.management.base import BaseCommand
from shop.models import Item

class Command(BaseCommand):
    def handle(self, *args, **options):
        Item.objects.count()
"""
DB_JOB = """
from sqlalchemy import text

def tenants_filter(tenants):
    return tenants.exclude(schema_name="public")

def run(ctx):
    ctx.db.execute(text("SELECT count(*) FROM shop_item")).scalar()
"""
NOOP_JOB = """
def tenants_filter(tenants):
    return tenants.exclude(schema_name="public")

def run(ctx):
    pass
"""
ORM_JOB = """
from shop.models import Item

def run(ctx):
    Item.objects.count()
"""


def add_tenants(db: Database, first: int, last: int) -> None:
    """Tenants first..last: django-tenants' client rows, and a schema each with its items."""
    db.sql(f"INSERT INTO customers_client (schema_name, name, plan) SELECT 't' || g, 'Tenant ' || g, 'free' "
           f"FROM generate_series({first}, {last}) g; "
           f"DO $$ BEGIN FOR i IN {first}..{last} LOOP EXECUTE format('CREATE SCHEMA t%1$s; "
           f"CREATE TABLE t%1$s.shop_item (id bigserial PRIMARY KEY, name varchar(100)); "
           f"INSERT INTO t%1$s.shop_item (name) VALUES (''a''), (''b'')', i); END LOOP; END $$;")


def project(tmp: Path, db: Database) -> tuple[Path, Path, dict[str, str]]:
    """The django-tenants project (one tenant, t0) and a plain pinstripe project on the same database."""
    django_root = tmp / "django"
    env = django_project.build(django_root, db.name, 1, fast=True, persistent=True)
    commands = django_root / "shop" / "management" / "commands"
    (commands / "count_items.py").write_text(COUNT_COMMAND)
    (django_root / "jobs" / "orm_count.py").write_text(ORM_JOB)
    ours = tmp / "ours"
    (ours / "jobs").mkdir(parents=True)
    (ours / "jobs" / "db_count.py").write_text(DB_JOB)
    (ours / "jobs" / "noop.py").write_text(NOOP_JOB)
    (ours / "pinstripe.toml").write_text(
        f'tenants = "{db.url}"\ntenants_table = "customers_client"\nstate = "{db.url}"\n\n'
        f'[database]\ntenancy = "schema"\nurl = "{db.url.replace("postgresql://", "postgresql+psycopg://")}"\n'
        'schema = "{tenant.schema_name}"\n')
    return ours, django_root, env


def bench_database(tmp: Path) -> list[dict]:
    n = 300 if QUICK else 2_000
    runs = 3
    with Database("ctxdb") as db:
        ours, django_root, env = project(tmp, db)
        run = [PINSTRIPE, "run-background-job", "--name"]
        commands = {
            "bare": ([sys.executable, "-c", BARE_LOOP, db.url], ours),
            "bare, a transaction each": ([sys.executable, "-c", BARE_TX_LOOP, db.url], ours),
            "ctx.db": ([*run, "db-count"], ours),
            "no query": ([*run, "noop"], ours),
            "all_tenants_command": ([sys.executable, "manage.py", "all_tenants_command", "--no-public",
                                     "count_items"], django_root),
            "ours, Django ORM": ([*run, "orm-count"], django_root),
        }
        at_1 = median_times(commands, runs, env=env)
        add_tenants(db, 1, n - 1)
        at_n = median_times(commands, runs, env=env)
    per = {name: slope(at_n[name], at_1[name], n) for name in commands}
    return figures(per, at_n, n)


def figures(per: dict[str, float], at_n: dict[str, float], n: int) -> list[dict]:
    us = {name: value * 1e6 for name, value in per.items()}
    db_cost = us["ctx.db"] - us["no query"]
    ratio = db_cost / us["bare"]
    whole = us["ctx.db"] / us["bare"]
    versus_django = us["all_tenants_command"] / us["ctx.db"]
    orm = us["all_tenants_command"] / us["ours, Django ORM"]
    detail = ", ".join(f"{name} {value:.0f} µs/tenant ({at_n[name]:.2f} s at {n:,})" for name, value in us.items())
    return [
        {"name": f"ctx.db: one query per tenant over {n:,} schemas, ctx.db's cost / a bare psycopg loop's",
         "value": round(ratio, 2), "unit": "x", "target": 1.5, "ok": ratio <= 1.5,
         "detail": f"ctx.db adds {db_cost:.0f} µs/tenant to a run; the bare loop takes {us['bare']:.0f}, "
                   f"{us['bare, a transaction each']:.0f} with a transaction per tenant "
                   f"({db_cost / us['bare, a transaction each']:.2f}x); "
                   f"the whole run with its query {us['ctx.db']:.0f} µs/tenant ({whole:.1f}x the bare loop). "
                   + detail},
        {"name": f"ctx.db: per-tenant cost, django-tenants' all_tenants_command / pinstripe with ctx.db ({n:,})",
         "value": round(versus_django, 1), "unit": "x", "target": 3, "ok": versus_django >= 3,
         "higher_is_better": True, "detail": detail},
        {"name": f"Django ORM job: all_tenants_command / pinstripe with tenants = \"django-tenants\" ({n:,})",
         "value": round(orm, 1), "unit": "x", "target": 3, "ok": orm >= 3, "higher_is_better": True,
         "detail": detail},
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        for row in bench_database(Path(folder)):
            mark = "ok  " if row["ok"] else "MISS"
            print(f"{mark} {row['name']}: {row['value']} {row['unit']} (target {row['target']})\n     {row['detail']}")
            if "--json" in sys.argv:
                print(json.dumps(row, ensure_ascii=False))
