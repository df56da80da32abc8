"""Version 3 (f2d6c07): tenant slots for ``tenant_concurrency`` across processes and hosts, and the kind of
each run's tenant id (``'int'``: history gives back 7, not "7"). Released: never edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 3

SLOTS = """
CREATE TABLE IF NOT EXISTS pinstripe_slots (
    tenant TEXT NOT NULL,
    slot INTEGER NOT NULL,
    host TEXT,
    pid INTEGER,
    pid_token TEXT,
    heartbeat_at TEXT,
    PRIMARY KEY (tenant, slot)
)
"""


def upgrade(db: Db) -> None:
    db.execute(SLOTS.strip())
    db.add_column("pinstripe_runs", "tenant_kind", "TEXT")
