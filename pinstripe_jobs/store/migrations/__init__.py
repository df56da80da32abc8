"""Numbered schema migrations: ``vNN.upgrade`` takes a database from version NN-1 to NN.

Each file is self-contained (its own SQL; it imports nothing but ``base``) and is never edited once
released: a change to the tables is a new file with the next number, appended to ``MIGRATIONS``. A fresh
database runs them all, an older one those above its version, in order, in one transaction
(see ``pinstripe_jobs.store.schema``)."""
from __future__ import annotations

from pinstripe_jobs.store.migrations import v01, v02, v03, v04, v05, v06, v07, v08
from pinstripe_jobs.store.migrations.base import Db, Migration

MIGRATIONS: tuple[Migration, ...] = (v01, v02, v03, v04, v05, v06, v07, v08)
CURRENT = len(MIGRATIONS)

__all__ = ["CURRENT", "MIGRATIONS", "Db", "Migration"]
