"""The six figures of the speed issue (#13), each beside its target.

Per-tenant costs are slopes, so that start-up does not count: (wall time at N tenants - wall time at 1)
/ (N - 1), medians of interleaved runs. "Above the bare loop" subtracts the slope of a loop that reads the
same rows from the same database and calls the same function.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

from run import PINSTRIPE, QUICK, make_project, timed

# BENCH_SOURCE=/path/to/a/checkout: the start-up figure installs that (a previous release) instead of this tree
ROOT = Path(os.environ.get("BENCH_SOURCE") or Path(__file__).resolve().parent.parent)
PG = "postgresql://postgres@127.0.0.1:5432"


def _psql(db: str, sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, capture_output=True)


class Database:
    """A database of its own for one benchmark, dropped afterwards."""

    def __init__(self, name: str):
        self.name = f"pinstripe_bench_{name}_{os.getpid()}"
        self.url = f"{PG}/{self.name}"

    def __enter__(self) -> Database:
        _psql("postgres", f"DROP DATABASE IF EXISTS {self.name}")
        _psql("postgres", f"CREATE DATABASE {self.name}")
        return self

    def __exit__(self, *exc) -> None:
        _psql("postgres", f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def sql(self, sql: str) -> None:
        _psql(self.name, sql)


def median_times(commands: dict[str, tuple[list[str], Path]], runs: int, env: dict | None = None) -> dict[str, float]:
    """Median wall time of each command, runs interleaved so that drift hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, cwd) in commands.items():
            times[name].append(timed(cmd, cwd, env=env)[0])
    return {name: statistics.median(values) for name, values in times.items()}


def slope(at_n: float, at_1: float, n: int) -> float:
    return (at_n - at_1) / (n - 1)


# -- 1. start-up from a regular install ----------------------------------------------------------------
def regular_install(tmp: Path) -> Path:
    """A virtual environment with pinstripe-jobs installed as users get it (a wheel, bytecode compiled)."""
    target = tmp / "regular-venv"
    venv.EnvBuilder(with_pip=True).create(target)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [f"{ROOT}[postgres]"], check=True)
    return target / "bin"


def bench_startup(tmp: Path) -> dict:
    bin_dir = regular_install(tmp)
    root = make_project(tmp / "startup-regular", 10)
    ours = median_times({"ours": ([str(bin_dir / "pinstripe"), "run-background-job", "--name", "noop"], root),
                         "click": ([str(bin_dir / "python"), "-c", "import click"], root),
                         "pass": ([str(bin_dir / "python"), "-c", "pass"], root)}, 7 if QUICK else 21)
    ratio = ours["ours"] / ours["click"]
    return {"name": "1. start-up: run-background-job --name noop vs python -c 'import click' (regular install)",
            "value": round(ratio, 2), "unit": "x", "target": 1.3, "ok": ratio <= 1.3,
            "detail": f"{ours['ours'] * 1e3:.1f} ms vs {ours['click'] * 1e3:.1f} ms (python -c pass: "
                      f"{ours['pass'] * 1e3:.1f} ms)"}


# -- 2. fan-out, SQLite tenants and state ----------------------------------------------------------------
BARE_LOOP = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("tenant_noop", "jobs/tenant_noop.py")
job = importlib.util.module_from_spec(spec); spec.loader.exec_module(job)
{connect}
for row in db.execute("SELECT * FROM tenants ORDER BY id"):
    job.run(row)
"""
SQLITE_LOOP = BARE_LOOP.format(connect='import sqlite3; db = sqlite3.connect("tenants.db")')
PG_LOOP = BARE_LOOP.format(connect="import psycopg; db = psycopg.connect(sys.argv[1])")


def bench_fanout_sqlite(tmp: Path) -> dict:
    n = 2_000 if QUICK else 10_000
    one, many = make_project(tmp / "fanout-1", 1), make_project(tmp / "fanout-n", n)
    run = [PINSTRIPE, "run-background-job", "--name", "tenant-noop"]
    t = median_times({"ours-1": (run, one), "ours-n": (run, many), "bare-1": ([sys.executable, "-c", SQLITE_LOOP], one),
                      "bare-n": ([sys.executable, "-c", SQLITE_LOOP], many)}, 3 if QUICK else 5)
    ours, bare = slope(t["ours-n"], t["ours-1"], n), slope(t["bare-n"], t["bare-1"], n)
    above = (ours - bare) * 1e6
    return {"name": f"2. fan-out: no-op job over {n:,} SQLite tenants, SQLite state, above the bare loop",
            "value": round(above, 1), "unit": "µs/tenant", "target": 15, "ok": above <= 15,
            "detail": f"{t['ours-n']:.2f} s at {n:,}, {t['ours-1'] * 1e3:.0f} ms at 1; bare loop "
                      f"{bare * 1e6:.1f} µs/tenant (full history: a queued, running and ended row per tenant)"}


# -- 3. fan-out, PostgreSQL tenants and state, and django-tenants ----------------------------------------
DJANGO_SETTINGS = """
SECRET_KEY = "bench"
USE_TZ = True
DATABASES = {{"default": {{"ENGINE": "django_tenants.postgresql_backend", "NAME": "{db}", "USER": "postgres",
                         "HOST": "127.0.0.1", "PORT": "5432"}}}}
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
SHARED_APPS = ["django_tenants", "customers", "django.contrib.contenttypes"]
TENANT_APPS = ["django.contrib.contenttypes"]
INSTALLED_APPS = SHARED_APPS
TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""
DJANGO_MODELS = """
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100)
    auto_create_schema = False  # the benchmark creates the schemas itself, in one statement


class Domain(DomainMixin):
    pass
"""
DJANGO_NOOP = """
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    def handle(self, *args, **options):
        pass
"""


def django_tenants_project(tmp: Path, db: Database) -> tuple[list[str], Path]:
    """django-tenants from PyPI in a virtual environment of its own: a comparison, not a dependency."""
    root = tmp / "django-tenants"
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "django",
                    "django-tenants", "psycopg[binary]"], check=True)
    (root / "customers" / "management" / "commands").mkdir(parents=True)
    for package in ("customers", "customers/management", "customers/management/commands"):
        (root / package / "__init__.py").write_text("")
    (root / "customers" / "models.py").write_text(DJANGO_MODELS)
    (root / "customers" / "management" / "commands" / "noop.py").write_text(DJANGO_NOOP)
    (root / "bench_settings.py").write_text(DJANGO_SETTINGS.format(db=db.name))
    (root / "manage.py").write_text("import sys\nfrom django.core.management import execute_from_command_line\n"
                                    "execute_from_command_line(sys.argv)\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": str(root)}
    for args in (["makemigrations", "customers"], ["migrate_schemas", "--shared"]):
        subprocess.run([python, "manage.py", *args], cwd=root, env=env, check=True, capture_output=True)
    return [python, "manage.py", "all_tenants_command", "noop"], root


def pg_tenants(db: Database, first: int, last: int) -> None:
    """Tenants first..last: rows of our tenant table, and schemas with django-tenants' client rows."""
    db.sql(f"INSERT INTO tenants SELECT g, 'tenant-' || g FROM generate_series({first}, {last}) g; "
           f"INSERT INTO customers_client (schema_name, name) SELECT 't' || g, 'tenant-' || g "
           f"FROM generate_series({first}, {last}) g; "
           + "".join(f"CREATE SCHEMA t{i};" for i in range(first, last + 1)))


def bench_fanout_postgres(tmp: Path) -> list[dict]:
    n = 500 if QUICK else 2_000
    runs = 3 if QUICK else 5
    with Database("fanout") as db:
        django_cmd, django_root = django_tenants_project(tmp, db)
        db.sql("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT)")
        root = make_project(tmp / "fanout-pg", 1)
        (root / "pinstripe.toml").write_text(f'tenants = "{db.url}"\nstate = "{db.url}"\n')
        ours = [PINSTRIPE, "run-background-job", "--name", "tenant-noop"]
        commands = {"ours": (ours, root), "bare": ([sys.executable, "-c", PG_LOOP, db.url], root),
                    "django": (django_cmd, django_root)}
        env = {"DJANGO_SETTINGS_MODULE": "bench_settings", "PYTHONPATH": str(django_root)}
        pg_tenants(db, 1, 1)
        at_1 = median_times(commands, runs, env=env)
        pg_tenants(db, 2, n)
        at_n = median_times(commands, runs, env=env)
    per = {name: slope(at_n[name], at_1[name], n) for name in commands}
    above = (per["ours"] - per["bare"]) * 1e6
    times = per["django"] / per["ours"]
    detail = (f"ours {at_n['ours']:.2f} s at {n:,}, {at_1['ours'] * 1e3:.0f} ms at 1; bare loop "
              f"{per['bare'] * 1e6:.1f} µs/tenant; django-tenants all_tenants_command {at_n['django']:.2f} s at "
              f"{n:,}, {at_1['django']:.2f} s at 1: {per['django'] * 1e6:.0f} µs/tenant")
    return [{"name": f"3. fan-out: no-op job over {n:,} PostgreSQL tenants, PostgreSQL state, above the bare loop",
             "value": round(above, 1), "unit": "µs/tenant", "target": 100, "ok": above <= 100, "detail": detail},
            {"name": f"3. fan-out: per-tenant cost, django-tenants' all_tenants_command / ours ({n:,} schemas)",
             "value": round(times, 1), "unit": "x", "target": 10, "ok": times >= 10, "higher_is_better": True,
             "detail": f"{per['django'] * 1e6:.0f} µs vs {per['ours'] * 1e6:.0f} µs per tenant"}]


# -- 4. concurrency ---------------------------------------------------------------------------------------
def bench_concurrency(tmp: Path) -> list[dict]:
    n = 100 if QUICK else 500
    rows = []
    with Database("concurrency") as db:
        for store in ("sqlite", "postgres"):
            one, many = make_project(tmp / f"conc-{store}-1", 1), make_project(tmp / f"conc-{store}-n", n)
            if store == "postgres":
                for root, schema in ((one, "one"), (many, "many")):
                    db.sql(f"CREATE SCHEMA {schema}")
                    with (root / "pinstripe.toml").open("a") as fh:
                        fh.write(f'state = "{db.url}?options=-csearch_path%3D{schema}"\n')
            for job in ("sleepy", "async-sleepy"):
                def cmd(c: int, job: str = job) -> list[str]:
                    return [PINSTRIPE, "run-background-job", "--name", job, "--concurrency", str(c)]

                t = median_times({"1-1": (cmd(1), one), "50-1": (cmd(50), one), "50-n": (cmd(50), many)},
                                 3 if QUICK else 5)
                t["1-n"] = timed(cmd(1), many)[0]
                serial, parallel = t["1-n"] - t["1-1"], t["50-n"] - t["50-1"]
                speedup = serial / parallel
                kind = "async" if job.startswith("async") else "plain"
                rows.append({"name": f"4. concurrency: {n} tenants x 20 ms, {kind} job, {store} state, "
                                     "--concurrency 50 vs 1 (fan-out part)",
                             "value": round(speedup, 1), "unit": "x faster", "target": 45, "ok": speedup >= 45,
                             "higher_is_better": True,
                             "detail": f"{serial:.2f} s vs {parallel * 1e3:.0f} ms "
                                       f"(ideal {n * 0.02 / 50 * 1e3:.0f} ms)"})
    return rows


# -- 6. a one-tenant run: PostgreSQL tenants and state vs SQLite --------------------------------------------
def bench_one_tenant(tmp: Path) -> dict:
    with Database("one") as db:
        db.sql("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO tenants VALUES (1, 'one')")
        lite = make_project(tmp / "one-sqlite", 1)
        pg = make_project(tmp / "one-pg", 1)
        (pg / "pinstripe.toml").write_text(f'tenants = "{db.url}"\nstate = "{db.url}"\n')
        run = [PINSTRIPE, "run-background-job", "--name", "tenant-noop"]
        timed(run, pg)  # the first run creates the state tables; the figure is for every run after it
        t = median_times({"pg": (run, pg), "sqlite": (run, lite)}, 7 if QUICK else 21)
    ratio = t["pg"] / t["sqlite"]
    return {"name": "6. one-tenant run: PostgreSQL tenants and state vs SQLite tenants and state",
            "value": round(ratio, 2), "unit": "x", "target": 3, "ok": ratio <= 3,
            "detail": f"{t['pg'] * 1e3:.0f} ms vs {t['sqlite'] * 1e3:.0f} ms"}


BENCHES: dict[str, Callable[[Path], list[dict]]] = {
    "startup": lambda tmp: [bench_startup(tmp)],
    "fanout": lambda tmp: [bench_fanout_sqlite(tmp)],
    "fanout-pg": bench_fanout_postgres,
    "concurrency": bench_concurrency,
    "one-tenant": lambda tmp: [bench_one_tenant(tmp)],
}
