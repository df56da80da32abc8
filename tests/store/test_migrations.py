"""Numbered migrations: databases made by every earlier release (built here from the git history: THAT
release's own StateStore creates the tables and records runs and a tick, in a subprocess) are upgraded to
this version on SQLite and PostgreSQL; a newer schema is refused untouched; read-only commands never write."""
from __future__ import annotations

import ast
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pinstripe_jobs.errors import ConfigError, ExitCode
from pinstripe_jobs.store import migrations, schema
from pinstripe_jobs.store.state import StateStore
from tests.procs import clean_env, run, unavailable

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("old_release_writer.py")
# Every schema an earlier release left: (commit, the version it is found at, whether it recorded it).
RELEASES = [
    ("62c816a", 0, False),  # first release: pinstripe_locks, no lock_key, no pinstripe_meta
    ("1529589", 0, False),  # lock_key and the running-row lock index
    ("73a93ca", 0, False),  # pinstripe_meta (prune marker only)
    ("9869148", 1, False),  # leases, heartbeats, tick progress: all of version 1, nothing recorded
    ("eeced65", 2, True),  # the version recorded from here on
    ("f2d6c07", 3, True),  # slots, tenant_kind
    ("bdc00b6", 4, True),  # the dashboard's tables, first cut (no pinstripe_invocations.first_id)
    ("e04839a", 4, True),  # version 4 as it ended (first_id added without a new number)
    ("4a31bf7", 5, True),  # this version, as its first release made it
]
OLD_ROWS = [("report", None, "succeeded", None), ("sync", "1", "failed", "ValueError: old"),
            ("sync", "1", "succeeded", None), ("sync", "2", "failed", "ValueError: old")]


# -- building the old databases ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def releases(tmp_path_factory):
    """Extracts an old release's package from the git history (once per session)."""
    root = tmp_path_factory.mktemp("releases")

    def extract(commit: str) -> Path:
        target = root / commit
        if not target.exists():
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "pinstripe_jobs"],
                                     capture_output=True)
            if archive.returncode:
                unavailable(f"git history of this repository not available ({commit}): "
                            f"{archive.stderr.decode(errors='replace').strip()}", "PINSTRIPE_REQUIRE_GIT_HISTORY")
            target.mkdir()
            subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        return target

    return extract


def build(releases, commit: str, url: str) -> list[list]:
    """Let release ``commit`` create the tables at ``url`` and record runs; return the runs it read back."""
    release = releases(commit)
    result = subprocess.run([sys.executable, str(WRITER), url, str(release)], capture_output=True, text=True,
                            env=clean_env({"PYTHONPATH": str(release)}), cwd=release, timeout=120)
    assert result.returncode == 0, result.stderr
    if url.startswith("sqlite"):
        with sqlite3.connect(path_of(url)) as db:  # its writes all in the file: the bytes compare below
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return json.loads(result.stdout)


def path_of(url: str) -> Path:
    return Path(url.split(":///", 1)[1].split("?", 1)[0])


# -- looking at a database without the code under test ---------------------------------------------------
def connect(url: str):
    if url.startswith("sqlite"):
        return sqlite3.connect(path_of(url), isolation_level=None)
    import psycopg

    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True)


def query(url: str, sql: str) -> list[tuple]:
    conn = connect(url)
    try:
        return [tuple(row) for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def shape(url: str) -> tuple[dict[str, set[str]], set[str]]:
    """Each pinstripe table's columns, and the indexes (not the primary keys')."""
    if url.startswith("sqlite"):
        tables = [r[0] for r in query(url, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE "
                                           "'pinstripe%'")]
        columns = {t: {r[1] for r in query(url, f"PRAGMA table_info({t})")} for t in tables}
        indexes = {r[0] for r in query(url, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        return columns, indexes
    columns: dict[str, set[str]] = {}
    for table, column in query(url, "SELECT table_name, column_name FROM information_schema.columns WHERE "
                                    "table_schema = current_schema()"):
        columns.setdefault(table, set()).add(column)
    indexes = {r[0] for r in query(url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                                        "AND indexname NOT LIKE '%pkey'")}
    return columns, indexes


def snapshot(url: str):
    """Everything a change could touch: the file's bytes (SQLite), or every table's definition and rows."""
    if url.startswith("sqlite"):
        path = path_of(url)
        wal = path.with_name(path.name + "-wal")
        conn = connect(url)
        try:
            dump = list(conn.iterdump())
        finally:
            conn.close()
        return path.read_bytes(), wal.read_bytes() if wal.exists() else b"", dump
    tables, indexes = shape(url)
    rows = {t: sorted(map(repr, query(url, f"SELECT * FROM {t}"))) for t in tables}
    definitions = query(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                             "ORDER BY 1")
    return tables, indexes, rows, definitions


def recorded_version(url: str) -> str | None:
    if "pinstripe_meta" not in shape(url)[0]:
        return None
    rows = query(url, "SELECT value FROM pinstripe_meta WHERE key = 'schema'")
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def current_shape(tmp_path_factory):
    """The tables, columns and indexes this release creates in a fresh database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fresh') / 'state.db'}"
    StateStore(url).close()
    return shape(url)


# -- the migrations themselves ---------------------------------------------------------------------------
def test_the_migrations_are_numbered_in_order_and_self_contained():
    assert [m.VERSION for m in migrations.MIGRATIONS] == list(range(1, migrations.CURRENT + 1))
    assert schema.SCHEMA_VERSION == str(schema.CURRENT) == str(migrations.CURRENT) == "8"
    folder = Path(migrations.__file__).parent
    assert sorted(p.name for p in folder.glob("v*.py")) == [f"v{n:02d}.py" for n in range(1, migrations.CURRENT + 1)]
    for path in folder.glob("v*.py"):  # its own SQL: it imports nothing of ours but the small base
        imported = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        assert imported <= {"__future__", "pinstripe_jobs.store.migrations.base"}, (path.name, imported)


def test_a_fresh_database_has_exactly_the_tables_the_first_release_of_this_version_made(
        state_url, releases, current_shape):
    """v01..v05 run in order on an empty database build what release 4a31bf7 (version 5) built in one go; v06
    then only adds to it (the invocation record's columns and indexes), v07 adds tables (steering) and v08 one
    (limits)."""
    build(releases, "4a31bf7", state_url)
    old_columns, old_indexes = shape(state_url)
    columns, indexes = current_shape
    assert {t: c - V06_COLUMNS if t == "pinstripe_invocations" else c for t, c in columns.items()
            if t not in V07_TABLES | V08_TABLES} == old_columns
    assert indexes - V06_INDEXES - V07_INDEXES - V08_INDEXES == old_indexes


V06_COLUMNS = {"selection", "options", "started_by", "executor", "heartbeat_at", "scanned", "total", "resumed",
               "idem_key", "live_key"}
V06_INDEXES = {"pinstripe_invocations_key", "pinstripe_invocations_live", "pinstripe_invocations_started"}
V07_TABLES = {"pinstripe_pauses", "pinstripe_audit", "pinstripe_cancels"}  # v07 only adds tables
V07_INDEXES = {"pinstripe_audit_job"}
V08_TABLES = {"pinstripe_limit_blocks"}  # v08 only adds a table (limits)
V08_INDEXES = {"pinstripe_limit_blocks_window"}


@pytest.mark.parametrize("commit,found,recorded", RELEASES, ids=[r[0] for r in RELEASES])
def test_a_database_of_every_earlier_release_is_upgraded(state_url, releases, current_shape, commit, found,
                                                          recorded):
    old_reads = build(releases, commit, state_url)
    assert sorted(map(tuple, old_reads), key=repr) == sorted(OLD_ROWS, key=repr)  # that release wrote them
    assert recorded_version(state_url) == (str(found) if recorded else None)

    store = StateStore(state_url)
    try:
        assert (store.schema.before, store.schema.after, store.schema.recorded) == (found, migrations.CURRENT, recorded)
        assert store.schema.created is False
        assert recorded_version(state_url) == str(migrations.CURRENT)
        columns, indexes = shape(state_url)
        for table, wanted in current_shape[0].items():
            assert wanted <= columns.get(table, set()), (table, wanted - columns.get(table, set()))
        assert current_shape[1] <= indexes, current_shape[1] - indexes
        assert "pinstripe_runs_lock" not in indexes  # running rows only: replaced by the held-rows index

        runs = [(r["job"], None if r["tenant"] is None else str(r["tenant"]), r["status"], r["error"])
                for r in store.runs(limit=None)]
        assert sorted(runs, key=repr) == sorted(OLD_ROWS, key=repr)
        last = store.last_runs()
        assert (last["sync"]["tenant"], last["sync"]["status"]) in (("2", "failed"), (2, "failed"))
        assert last["report"]["status"] == "succeeded"
        assert store.orphan_ticks() == []  # the old tick was finished (or counts as done)
        latest = sorted(query(state_url, "SELECT job, tenant_key, status FROM pinstripe_latest"))
        assert latest == [("report", "-", "succeeded"), ("sync", "1", "succeeded"), ("sync", "2", "failed")]

        store.begin_invocation("inv-new", "sync", "manual")
        lease = store.begin_run("sync", 3, "manual", invocation="inv-new")
        store.end_run(lease, "failed", "ValueError: new")
        store.end_invocation("inv-new", "failed", 1, {"failed": 1})
        assert store.runs(limit=1)[0]["tenant"] == 3 and store.runs(limit=1)[0]["status"] == "failed"
        assert store.failed_tenants("sync") == ["2", "3"]
    finally:
        store.close()
    assert ("sync", "3", "failed") in query(state_url, "SELECT job, tenant_key, status FROM pinstripe_latest")
    again = StateStore(state_url)  # upgraded once: the next open reads the version and does nothing
    assert (again.schema.before, again.schema.upgraded) == (migrations.CURRENT, False)
    again.close()


def test_an_empty_database_is_created_at_this_version(state_url, current_shape):
    store = StateStore(state_url)
    assert (store.schema.before, store.schema.after, store.schema.created) == (0, migrations.CURRENT, True)
    assert store.schema.describe() == f"created the tables at schema version {migrations.CURRENT}"
    store.close()
    assert shape(state_url) == current_shape and recorded_version(state_url) == str(migrations.CURRENT)


def test_a_failing_upgrade_changes_nothing(state_url, releases, monkeypatch):
    """All the migrations run in one transaction: one that fails midway leaves the old version whole."""
    build(releases, "f2d6c07", state_url)
    before = snapshot(state_url)

    class Broken:
        VERSION = 5

        @staticmethod
        def upgrade(db) -> None:
            db.execute("ALTER TABLE pinstripe_runs ADD COLUMN half_done TEXT")
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS[:4], Broken))
    with pytest.raises(ConfigError, match="disk on fire"):
        StateStore(state_url, retry_s=1)
    assert recorded_version(state_url) == "3"
    assert "half_done" not in shape(state_url)[0]["pinstripe_runs"]
    assert "pinstripe_latest" not in shape(state_url)[0]  # v04 ran and was rolled back with the rest
    assert snapshot(state_url) == before


# -- a newer schema ----------------------------------------------------------------------------------------
NEWER = migrations.CURRENT + 1
TOO_NEW = f"schema version {NEWER}, this release knows up to {migrations.CURRENT}: upgrade pinstripe-jobs"


def newer(url: str, version: str = str(NEWER)) -> None:
    StateStore(url).close()
    conn = connect(url)
    conn.execute(f"UPDATE pinstripe_meta SET value = '{version}' WHERE key = 'schema'")
    if url.startswith("sqlite"):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_newer_schema_is_refused_untouched(state_url, read_only):
    newer(state_url)
    before = snapshot(state_url)
    with pytest.raises(schema.SchemaTooNew) as caught:
        StateStore(state_url, read_only=read_only)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert TOO_NEW in caught.value.message
    assert caught.value.message.startswith("State store ")  # names which store
    assert "Nothing in the database was changed" in caught.value.hint
    assert snapshot(state_url) == before


def test_a_version_no_release_wrote_is_refused_untouched(state_url):
    newer(state_url, "banana")
    before = snapshot(state_url)
    with pytest.raises(schema.SchemaError, match="records schema version 'banana' in pinstripe_meta") as caught:
        StateStore(state_url)
    assert caught.value.exit_code == ExitCode.CONFIG and "Restore the row" in caught.value.hint
    assert snapshot(state_url) == before


@pytest.mark.parametrize("command", [["migrate"], ["migrate", "--json"], ["history"],
                                     ["run-background-job", "--name", "record"]])
def test_every_command_refuses_a_newer_schema_with_exit_3(project, state_url, command):
    project.config(f'state = "{state_url}"\n')
    project.job("record", "def run(ctx):\n    pass\n")
    newer(state_url)
    before = snapshot(state_url)
    result = run(project, *command)
    assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert TOO_NEW in result.stderr
    if "--json" in command:
        assert json.loads(result.stdout)["exit_code"] == 3
    assert snapshot(state_url) == before


# -- read-only commands and `pinstripe migrate` -----------------------------------------------------------
def test_history_on_an_older_schema_writes_nothing_and_says_to_migrate(project, state_url, releases):
    project.config(f'state = "{state_url}"\n')
    build(releases, "f2d6c07", state_url)
    before = snapshot(state_url)
    for command in (["history"], ["history", "--json"], ["list-background-jobs"]):
        result = run(project, *command)
        assert result.returncode == ExitCode.CONFIG, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert f"schema version 3; this release uses version {migrations.CURRENT}" in result.stderr
        assert "Run `pinstripe migrate`" in result.stderr
        assert snapshot(state_url) == before

    result = run(project, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"upgraded from schema version 3 to {migrations.CURRENT}" in result.stdout
    assert recorded_version(state_url) == str(migrations.CURRENT)
    shown = json.loads(run(project, "history", "--json").stdout)["runs"]
    assert sorted((r["job"], r["status"]) for r in shown) == sorted((r[0], r[2]) for r in OLD_ROWS)


def test_history_on_an_unversioned_schema_says_so(project, state_url, releases):
    project.config(f'state = "{state_url}"\n')
    build(releases, "1529589", state_url)
    before = snapshot(state_url)
    result = run(project, "history")
    assert result.returncode == ExitCode.CONFIG and "Traceback" not in result.stderr
    assert "an older schema with no version recorded" in result.stderr
    assert snapshot(state_url) == before
    result = run(project, "migrate", "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["from"], outcome["to"], outcome["recorded"], outcome["upgraded"]) == (
        0, migrations.CURRENT, False, True)
    assert "no version was recorded" in outcome["message"]


def test_read_only_commands_create_no_tables(project, state_url):
    """Without a SQLite file, or in a PostgreSQL schema without the tables: nothing recorded, nothing made."""
    project.config(f'state = "{state_url}"\n')
    result = run(project, "history", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"] == []
    assert run(project, "list-background-jobs").returncode == 0
    if state_url.startswith("sqlite"):
        assert not path_of(state_url).exists()
    else:
        assert shape(state_url) == ({}, set())


def test_migrate_creates_then_reports_current(project, state_url, current_shape):
    project.config(f'state = "{state_url}"\n')
    first = run(project, "migrate")
    assert first.returncode == 0, first.stderr
    assert f"created the tables at schema version {migrations.CURRENT}" in first.stdout
    assert shape(state_url) == current_shape
    second = run(project, "migrate", "--json")
    assert second.returncode == 0, second.stderr
    outcome = json.loads(second.stdout)
    assert (outcome["from"], outcome["to"], outcome["upgraded"]) == (migrations.CURRENT, migrations.CURRENT, False)
    assert outcome["message"] == f"already at schema version {migrations.CURRENT}"


def test_the_read_only_store_opens_a_current_database_without_writing(state_url):
    StateStore(state_url).close()
    before = snapshot(state_url)
    store = StateStore(state_url, read_only=True)
    assert store.schema.upgraded is False and store.runs() == [] and store.last_runs() == {}
    store.close()
    assert snapshot(state_url) == before


def test_concurrent_openers_upgrade_once(state_url, releases):
    """Processes that start together on an old database: one upgrades (under the advisory lock on
    PostgreSQL, the write lock on SQLite), the others find it done."""
    import threading

    build(releases, "f2d6c07", state_url)
    barrier = threading.Barrier(4)
    changes: list = []
    errors: list = []

    def open_store() -> None:
        barrier.wait()
        try:
            store = StateStore(state_url)
            changes.append(store.schema.before)
            store.close()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and sorted(changes) == [3] + [migrations.CURRENT] * 3
    assert recorded_version(state_url) == str(migrations.CURRENT)
