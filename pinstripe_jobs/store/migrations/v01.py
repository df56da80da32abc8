"""Version 1: the history, lock and tick tables as the releases before recorded schema versions left them
(62c816a .. f7e4572). Those releases grew the tables without saying so, so this upgrade also completes
any of their partial shapes:

- 62c816a: no ``lock_key`` (locks lived in a ``pinstripe_locks`` table, unused since and left in place);
- 1529589: the overlap lock is the running row: ``lock_key`` and the partial unique index;
- 73a93ca: ``pinstripe_meta`` (the daily prune marker);
- 9869148: row leases and heartbeats, tick progress (``finished_at``: ticks claimed before are done).

Released: never edit. (9869148 also declared a ``tick_key`` column that no release ever read or wrote; it is
not created here, and databases that have it keep it.)
"""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 1

TABLES = """
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
)
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS pinstripe_runs_job_tenant ON pinstripe_runs (job, tenant, id);
CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_runs_lock ON pinstripe_runs (job, lock_key) WHERE status = 'running'
"""
ADDED = (
    ("pinstripe_runs", "lock_key", "TEXT"),
    ("pinstripe_runs", "heartbeat_at", "TEXT"),
    ("pinstripe_runs", "lease", "TEXT"),
    ("pinstripe_ticks", "pid_token", "TEXT"),
    ("pinstripe_ticks", "heartbeat_at", "TEXT"),
    ("pinstripe_ticks", "finished_at", "TEXT"),
)


def complete(db: Db) -> bool:
    """True when a database that recorded no version already has all of version 1 (the releases just
    before versions were recorded: 9869148 .. f7e4572)."""
    if "pinstripe_meta" not in db.tables():
        return False
    return all(column in db.columns(table) for table, column, _ in ADDED)


def upgrade(db: Db) -> None:
    db.script(TABLES.format(id_type=db.id_type))
    for table, column, kind in ADDED:
        if db.add_column(table, column, kind) and column == "finished_at":
            db.execute("UPDATE pinstripe_ticks SET finished_at = claimed_at")  # claimed before: done
    db.script(INDEXES)
