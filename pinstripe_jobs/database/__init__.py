"""The built-in tenant-bound database: ``ctx.db``, a SQLAlchemy ``Session`` bound to the running tenant.

``settings`` parses the ``[database]`` table (no SQLAlchemy import: start-up time); ``session`` holds the
per-process engines and opens one session per run; ``engines`` is the bounded LRU of engines used when
each tenant has its own database; ``django`` sets Django up once, lazily.
"""
from __future__ import annotations

from pinstripe_jobs.database.settings import DatabaseSettings, parse_database

__all__ = ["DatabaseSettings", "parse_database"]
