"""A real django-tenants project with its ORM inside jobs over 20 tenants, compared with what django-tenants'
own ``all_tenants_command`` sees; Django field lookups in ``tenants_filter``; a plain Django model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.database import django_project
from tests.database.helpers import SCRIPT

pytest.importorskip("django_tenants")
TENANTS = 20
DATABASE = f"pst_{os.getpid()}_django"

ITEMS_JOB = '''
import json, os
from pathlib import Path
from django.db import connection
from shop.models import Item

def run(ctx):
    names = sorted(Item.objects.values_list("name", flat=True))
    Item.objects.create(name="seen-by-pinstripe")
    with open(Path(__file__).parent.parent / "seen.jsonl", "a") as fh:
        fh.write(json.dumps({"tenant": ctx.tenant.id, "schema": ctx.tenant.schema_name,
                             "connection_schema": connection.schema_name, "names": names}) + "\\n")
'''

FILTERED_JOB = '''
def tenants_filter(tenants):
    return tenants.where(name__startswith="Tenant 1", plan="pro").exclude(schema_name__in=["t13"])

def run(ctx):
    from pathlib import Path
    with open(Path(__file__).parent.parent / "filtered.txt", "a") as fh:
        fh.write(ctx.tenant.schema_name + "\\n")
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory, pg_url):
    import psycopg

    admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    root = tmp_path_factory.mktemp("djproject")
    try:
        env = django_project.build(root, DATABASE, TENANTS)
        (root / "jobs" / "items.py").write_text(ITEMS_JOB)
        (root / "jobs" / "filtered.py").write_text(FILTERED_JOB)
        yield root, env
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def pinstripe(root, env, *args):
    return subprocess.run([str(SCRIPT), "run-background-job", *args, "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def all_tenants_command(root, env) -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "manage.py", "all_tenants_command", "--no-public", "list_items"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = {}
    for line in done.stdout.splitlines():
        if line.startswith("ITEMS "):
            _, schema, names = (line.split(" ", 2) + [""])[:3]
            seen[schema] = sorted(n for n in names.split(",") if n)
    return seen


@pytest.mark.parametrize("options", [["--concurrency", "1"], ["--concurrency", "6"],
                                     ["--concurrency", "3", "--isolation", "process"]])
def test_the_orm_works_inside_each_tenants_schema(project, options):
    root, env = project
    before = all_tenants_command(root, env)
    assert len(before) == TENANTS and "public" not in before
    (root / "seen.jsonl").unlink(missing_ok=True)
    result = pinstripe(root, env, "--name", "items", *options)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    doc = json.loads(result.stdout)
    assert len(doc["runs"]) == TENANTS and {r["status"] for r in doc["runs"]} == {"succeeded"}
    seen = [json.loads(line) for line in (root / "seen.jsonl").read_text().splitlines()]
    assert {r["schema"] for r in seen} == set(before)  # the same tenants, the public one left out
    for record in seen:
        assert record["connection_schema"] == record["schema"]
        assert record["names"] == before[record["schema"]]  # what all_tenants_command sees, tenant by tenant
    after = all_tenants_command(root, env)  # each run's write is in its own tenant's schema, committed
    assert all(after[s] == sorted(before[s] + ["seen-by-pinstripe"]) for s in before)


def test_tenants_filter_takes_django_lookups(project):
    root, env = project
    result = pinstripe(root, env, "--name", "filtered")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert len(json.loads(result.stdout)["runs"]) == 5
    # "Tenant 1*", odd (plan "pro"), not t13
    assert sorted((root / "filtered.txt").read_text().split()) == sorted(f"t{i}" for i in [1, 11, 15, 17, 19])


def test_a_bad_lookup_is_a_clear_configuration_error(project):
    root, env = project
    (root / "jobs" / "badfilter.py").write_text("def tenants_filter(t):\n    return t.where(nope__gt=1)\n"
                                                "def run(ctx):\n    pass\n")
    result = pinstripe(root, env, "--name", "badfilter")
    assert result.returncode == 3
    assert "nope" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_a_plain_django_model_as_the_tenant_source(project):
    root, env = project
    (root / "pinstripe-plain.toml").write_text('jobs_dir = "jobs"\ntenants = "django:customers.Client"\n'
                                               'django_settings = "proj.settings"\n')
    (root / "jobs" / "plain.py").write_text("def tenants_filter(t):\n    return t.where(plan='pro')\n"
                                            "def run(ctx):\n    return ctx.tenant.name\n")
    result = pinstripe(root, env, "--name", "plain", "--config", "pinstripe-plain.toml")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert len(json.loads(result.stdout)["runs"]) == TENANTS // 2


def test_manage_py_pinstripe_runs_the_cli_inside_the_project(project):
    root, env = project
    (root / "seen.jsonl").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "manage.py", "pinstripe", "run-background-job", "--name", "items",
                           "--tenant", "2", "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert [r["status"] for r in json.loads(done.stdout)["runs"]] == ["succeeded"]
    seen = [json.loads(line) for line in (root / "seen.jsonl").read_text().splitlines()]
    assert [r["connection_schema"] for r in seen] == [r["schema"] for r in seen] and len(seen) == 1
