"""Version 4 (bdc00b6 .. be2a14b): the dashboard's tables. Invocations (one per command or tick), each run's
invocation, traceback and duration, each tenant's newest finished run per job (``pinstripe_latest``, filled
here from the history already recorded), tick kinds, and the indexes the dashboard's pages read.

The table definitions are those of the last version-4 release (e04839a added ``first_id`` to
``pinstripe_invocations`` without a new version; version 5 adds it where it is missing). Released: never
edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 4

TABLES = """
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
ADDED = (
    ("pinstripe_runs", "invocation", "TEXT"),
    ("pinstripe_runs", "traceback", "TEXT"),
    ("pinstripe_runs", "duration_ms", "DOUBLE PRECISION"),
    ("pinstripe_ticks", "kind", "TEXT"),  # fired, caught_up, resumed, missed
)
INDEXES = """
CREATE INDEX IF NOT EXISTS pinstripe_latest_rank ON pinstripe_latest (job, rank, tenant_key);
CREATE INDEX IF NOT EXISTS pinstripe_invocations_job ON pinstripe_invocations (job, started_at);
CREATE INDEX IF NOT EXISTS pinstripe_ticks_claimed ON pinstripe_ticks (claimed_at)
"""
# Each tenant's newest finished run of each job, from the history recorded before this version (the grid's
# order: failing tenants first). Version 4 had no queued rows.
FILL_LATEST = (
    "INSERT INTO pinstripe_latest (job, tenant_key, tenant, tenant_kind, run_id, status, rank, started_at, "
    "ended_at, error, invocation, failing_since) SELECT job, COALESCE(tenant, '-'), tenant, tenant_kind, id, "
    "status, CASE status WHEN 'failed' THEN 0 WHEN 'timed_out' THEN 0 WHEN 'abandoned' THEN 1 "
    "WHEN 'interrupted' THEN 1 WHEN 'skipped' THEN 2 WHEN 'running' THEN 3 WHEN 'succeeded' THEN 4 ELSE 2 END, "
    "started_at, ended_at, error, invocation, CASE WHEN status IN ('failed', 'timed_out') THEN ended_at END "
    "FROM pinstripe_runs WHERE id IN (SELECT max(id) FROM pinstripe_runs WHERE status <> 'running' "
    "GROUP BY job, COALESCE(tenant, '-'))")


def upgrade(db: Db) -> None:
    fresh_latest = "pinstripe_latest" not in db.tables()
    db.script(TABLES)
    for table, column, kind in ADDED:
        db.add_column(table, column, kind)
    db.add_column("pinstripe_invocations", "first_id", "BIGINT")
    db.script(INDEXES)
    if fresh_latest:
        db.execute(FILL_LATEST)
