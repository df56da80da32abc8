"""Version 7: steering. Pauses (a job, or one tenant of it, is not fired by the scheduler and refused by a
manual run), the audit trail (every manual action: who, when, what, its arguments) and cancel requests (an
invocation asked to stop, wherever it runs). Released: never edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 7

TABLES = """
CREATE TABLE IF NOT EXISTS pinstripe_pauses (
    job TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    tenant TEXT,
    who TEXT,
    reason TEXT,
    paused_at TEXT NOT NULL,
    PRIMARY KEY (job, tenant_key)
);
CREATE TABLE IF NOT EXISTS pinstripe_audit (
    id {id_type},
    at TEXT NOT NULL,
    who TEXT,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    job TEXT,
    details TEXT
);
CREATE TABLE IF NOT EXISTS pinstripe_cancels (
    invocation TEXT PRIMARY KEY,
    who TEXT,
    reason TEXT,
    requested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pinstripe_audit_job ON pinstripe_audit (job, id)
"""


def upgrade(db: Db) -> None:
    db.script(TABLES.format(id_type=db.id_type))
