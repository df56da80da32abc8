"""Version 8 (issue #22): named rate limits shared through the store. One row per block of tokens granted
to a process: how many (``tokens``, lowered when unused ones are given back) and the last instant any of
them may be used (``ends``, seconds since the epoch on the database's clock). A limit's window counts the
blocks whose ``ends`` lies inside it. Concurrency limits use ``pinstripe_slots`` (no table of their own).
Self-contained; released: never edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 8


def upgrade(db: Db) -> None:
    db.execute(f"CREATE TABLE IF NOT EXISTS pinstripe_limit_blocks (id {db.id_type}, name TEXT NOT NULL, "
               "bucket TEXT NOT NULL, tokens INTEGER NOT NULL, ends DOUBLE PRECISION NOT NULL, host TEXT, pid INTEGER)")
    db.execute("CREATE INDEX IF NOT EXISTS pinstripe_limit_blocks_window ON pinstripe_limit_blocks "
               "(name, bucket, ends)")
