"""Version 6: the invocation as a durable record (issue #19). Each invocation keeps what it was asked to do (its
tenant selection, options, who started it, its executor), a heartbeat, how far its tenant scan got and the
total once known, how often it was resumed, an idempotency key (unique) and, for a unique job, a live key:
unique while the invocation is live, so that two invocations of a unique job cannot both be live (the
database refuses the second insert: race-free). Released: never edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 6

ADDED = (
    ("selection", "TEXT"),  # JSON: source, tenants, exclude, filter, shard, only_failed
    ("options", "TEXT"),  # JSON: concurrency, retries, timeouts, ...
    ("started_by", "TEXT"),  # user@host, or the dashboard/API identity
    ("executor", "TEXT"),
    ("heartbeat_at", "TEXT"),
    ("scanned", "BIGINT"),  # tenants read from the selection so far
    ("total", "BIGINT"),  # the number of tenants selected, once the scan finished
    ("resumed", "INTEGER"),  # how many times it was resumed
    ("idem_key", "TEXT"),  # run-background-job --key / PINSTRIPE_INVOCATION_KEY
    ("live_key", "TEXT"),  # a unique job's (job, arguments) while the invocation is live; NULL once it ended
)
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_invocations_key ON pinstripe_invocations (idem_key)
    WHERE idem_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS pinstripe_invocations_live ON pinstripe_invocations (live_key)
    WHERE live_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS pinstripe_invocations_started ON pinstripe_invocations (started_at)
"""


def upgrade(db: Db) -> None:
    for column, kind in ADDED:
        db.add_column("pinstripe_invocations", column, kind)
    db.script(INDEXES)
