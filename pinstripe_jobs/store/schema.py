"""The state store's tables: their definition, and opening a database at this schema version (created, or
upgraded in place from an earlier one)."""
from __future__ import annotations

from typing import Any

from pinstripe_jobs.model.status import HELD, RANK, sql_list

SCHEMA = """
CREATE TABLE IF NOT EXISTS pinstripe_runs (
    id {id_type},
    job TEXT NOT NULL,
    tenant TEXT,
    trigger TEXT NOT NULL,
    tick TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    error TEXT,
    host TEXT,
    pid INTEGER,
    pid_token TEXT,
    session INTEGER,
    lock_key TEXT
);
CREATE INDEX IF NOT EXISTS pinstripe_runs_job_tenant ON pinstripe_runs (job, tenant, id);
CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_runs_held ON pinstripe_runs (job, lock_key) WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS pinstripe_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pinstripe_ticks (
    job TEXT NOT NULL,
    tick TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    PRIMARY KEY (job, tick)
);
CREATE TABLE IF NOT EXISTS pinstripe_slots (
    tenant TEXT NOT NULL,
    slot INTEGER NOT NULL,
    host TEXT,
    pid INTEGER,
    pid_token TEXT,
    heartbeat_at TEXT,
    PRIMARY KEY (tenant, slot)
);
CREATE TABLE IF NOT EXISTS pinstripe_latest (
    job TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    tenant TEXT,
    tenant_kind TEXT,
    run_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    rank INTEGER NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    error TEXT,
    invocation TEXT,
    failing_since TEXT,
    PRIMARY KEY (job, tenant_key)
);
CREATE TABLE IF NOT EXISTS pinstripe_invocations (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    tick TEXT,
    args TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT,
    exit_code INTEGER,
    counts TEXT,
    p50_ms DOUBLE PRECISION,
    p95_ms DOUBLE PRECISION,
    max_ms DOUBLE PRECISION,
    host TEXT,
    pid INTEGER,
    pid_token TEXT,
    first_id BIGINT
)
"""
# Indexes over columns that older databases gain by migration (created after ADDED_COLUMNS). They serve
# the dashboard's pages and API: each query reads one page, whatever the size of the history.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS pinstripe_latest_rank ON pinstripe_latest (job, rank, tenant_key)",
    "CREATE INDEX IF NOT EXISTS pinstripe_invocations_job ON pinstripe_invocations (job, started_at)",
    "CREATE INDEX IF NOT EXISTS pinstripe_ticks_claimed ON pinstripe_ticks (claimed_at)",
)
# The grid's order: failing tenants first.
_RANK_SQL = "CASE status " + " ".join(f"WHEN '{k.value}' THEN {v}" for k, v in RANK.items()) + " ELSE 2 END"
# Each tenant's newest finished run of each job (pinstripe_latest): the dashboard's tenant grid reads one
# indexed page of it instead of grouping the whole history. Folded in from run ends in groups (at most 500
# runs or 2 seconds behind), at the end of every invocation, and for an invocation whose process died, by
# the next invocation of its job.
LATEST = (
    "INSERT INTO pinstripe_latest (job, tenant_key, tenant, tenant_kind, run_id, status, rank, started_at, ended_at, "
    f"error, invocation, failing_since) SELECT job, COALESCE(tenant, '-'), tenant, tenant_kind, id, status, {_RANK_SQL}, "
    "started_at, ended_at, error, invocation, CASE WHEN status IN ('failed', 'timed_out') THEN ended_at END "
    "FROM {source} WHERE {where} ON CONFLICT (job, tenant_key) DO UPDATE SET tenant = excluded.tenant, "
    "tenant_kind = excluded.tenant_kind, run_id = excluded.run_id, status = excluded.status, rank = excluded.rank, "
    "started_at = excluded.started_at, ended_at = excluded.ended_at, error = excluded.error, "
    "invocation = excluded.invocation, failing_since = CASE WHEN excluded.status IN ('failed', 'timed_out') THEN "
    "COALESCE(pinstripe_latest.failing_since, excluded.ended_at) WHEN excluded.status = 'succeeded' THEN NULL "
    "ELSE pinstripe_latest.failing_since END WHERE excluded.run_id > pinstripe_latest.run_id")
# Columns added after the first release: existing databases are migrated in place.
ADDED_COLUMNS = (
    ("pinstripe_runs", "heartbeat_at", "TEXT"),
    ("pinstripe_runs", "lease", "TEXT"),
    ("pinstripe_runs", "tenant_kind", "TEXT"),  # 'int' for integer ids: history gives back 7, not "7"
    ("pinstripe_ticks", "pid_token", "TEXT"),
    ("pinstripe_ticks", "heartbeat_at", "TEXT"),
    ("pinstripe_ticks", "finished_at", "TEXT"),
    ("pinstripe_runs", "invocation", "TEXT"),  # one per command or tick: the dashboard groups runs by it
    ("pinstripe_runs", "traceback", "TEXT"),
    ("pinstripe_runs", "duration_ms", "DOUBLE PRECISION"),
    ("pinstripe_ticks", "kind", "TEXT"),  # fired, caught_up (coalesced into a later run), resumed, missed
)
SCHEMA_VERSION = "5"

def latest_of(where: str) -> str:
    """Fold the newest finished run per (job, tenant) among the runs ``where`` selects (one row per
    tenant: PostgreSQL refuses to update a row twice in one statement)."""
    return LATEST.format(source="pinstripe_runs", where="id IN (SELECT max(id) FROM pinstripe_runs WHERE "
                                                        f"{where} AND status NOT IN {sql_list(HELD)} GROUP BY job, "
                                                        "COALESCE(tenant, '-'))")


def is_current(conn: Any, *, sqlite: bool) -> bool:
    """True when the tables exist at this version (one read of the small meta table: opening a store
    then touches no other table, so a busy history table does not delay it)."""
    try:
        row = _execute(conn, sqlite, "SELECT value FROM pinstripe_meta WHERE key = 'schema'").fetchone()
    except Exception as exc:
        if "pinstripe_meta" not in str(exc) and "no such table" not in str(exc):
            raise
        if sqlite and conn.in_transaction:
            _rollback(conn)
        return False
    return row is not None and row[0] == SCHEMA_VERSION



def ensure_schema(conn: Any, *, sqlite: bool) -> None:
    """Create the tables, or upgrade them in place to this version (one transaction; on PostgreSQL under an
    advisory lock, so concurrent openers upgrade once)."""
    if is_current(conn, sqlite=sqlite):
        return
    id_type = "INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "BIGSERIAL PRIMARY KEY"
    statements = [s.strip() for s in SCHEMA.format(id_type=id_type).split(";") if s.strip()]
    _execute(conn, sqlite, "BEGIN IMMEDIATE" if sqlite else "BEGIN")
    try:
        if not sqlite:
            _execute(conn, sqlite, "SELECT pg_advisory_xact_lock(?)", (_advisory_key("schema"),))
        fresh_latest = not _columns(conn, "pinstripe_latest", sqlite=sqlite)
        _execute(conn, sqlite, "DROP INDEX IF EXISTS pinstripe_runs_lock")  # v4: running rows only held locks
        for statement in statements:
            _execute(conn, sqlite, statement)
        for table, column, kind in ADDED_COLUMNS:
            if column not in _columns(conn, table, sqlite=sqlite):
                _execute(conn, sqlite, f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if column == "finished_at":  # ticks claimed before this column existed are done
                    _execute(conn, sqlite, "UPDATE pinstripe_ticks SET finished_at = claimed_at")
        for statement in INDEXES:
            _execute(conn, sqlite, statement)
        if fresh_latest:  # history from before the dashboard: each tenant's newest finished run
            _execute(conn, sqlite, latest_of("1 = 1"))
        _execute(conn, sqlite, "INSERT INTO pinstripe_meta VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET "
                            "value = excluded.value", (SCHEMA_VERSION,))
        _execute(conn, sqlite, "COMMIT")
    except BaseException:
        _rollback(conn)
        raise

def _columns(conn: Any, table: str, *, sqlite: bool) -> set[str]:
    if sqlite:
        return {row[1] for row in _execute(conn, sqlite, f"PRAGMA table_info({table})").fetchall()}
    rows = _execute(conn, sqlite, "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                               "AND table_schema = current_schema()", (table,)).fetchall()
    return {row[0] for row in rows}



def _execute(conn: Any, sqlite: bool, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
    cursor = conn.cursor()
    cursor.execute(sql if sqlite else sql.replace("?", "%s"), params)
    return cursor


def _rollback(conn: Any) -> None:
    try:
        conn.cursor().execute("ROLLBACK")
    except Exception:  # the connection is gone: the transaction went with it
        pass


def _advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for PostgreSQL, stable across processes and machines."""
    import hashlib

    digest = hashlib.blake2b("\0".join(("pinstripe-jobs", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
