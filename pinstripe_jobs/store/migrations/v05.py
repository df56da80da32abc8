"""Version 5 (4a31bf7): tenants are claimed a page ahead, so a ``queued`` row holds the lock of (job, tenant)
as a ``running`` one does: the unique index over held rows replaces the one over running rows.

Also adds ``pinstripe_invocations.first_id`` where it is missing: the first version-4 releases (bdc00b6 ..
0afcc74) created the table without it, and e04839a added it without a new version number. Released: never
edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 5


def upgrade(db: Db) -> None:
    db.add_column("pinstripe_invocations", "first_id", "BIGINT")
    db.execute("DROP INDEX IF EXISTS pinstripe_runs_lock")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_runs_held ON pinstripe_runs (job, lock_key) "
               "WHERE status IN ('queued', 'running')")
