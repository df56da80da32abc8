"""Version 2 (eeced65): the schema version is recorded in ``pinstripe_meta`` (key ``schema``) from here on.
No table changed. Released: never edit."""
from __future__ import annotations

from pinstripe_jobs.store.migrations.base import Db

VERSION = 2


def upgrade(db: Db) -> None:
    """Nothing to change: recording the version is the upgrade."""
