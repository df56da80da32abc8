"""``celery -A pinstripe_jobs.celery worker``, as documented before the fleet became a folder: the same app as
``pinstripe_jobs.fleet.worker`` (made on first use, from PINSTRIPE_CONFIG or the working directory's config)."""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from pinstripe_jobs.fleet import worker

    return getattr(worker, name)
