"""Named limits shared by every process and host on one store (issue #22).

Rate limits (``"100/s"``): never more than ``count`` tokens in any window of ``window`` seconds. A process
is granted tokens in small blocks: a block is a row (``pinstripe_limit_blocks``) with its size and the
last instant (``ends``, on the database's clock) any of its tokens may be used; its holder uses them
before that (measured from when it sent the request, which is before the database stamped it, on its own
monotonic clock). A grant is made, under a per-bucket lock, only when the tokens of the blocks ending in
the last ``window`` seconds plus the new ones stay within ``count``: every window that could hold a use
of a new token holds at most the blocks counted, so the bound holds for the real calls, whatever the
processes' clocks say. A killed holder's block simply ages out (``ends + window``); unused tokens a live
holder gives back are subtracted at once.

Concurrency limits (``{ concurrency = 5 }``) are tenant slots (``slots.py``) under a key no tenant has:
renewed by the heartbeat, freed by the next taker when the holder is provably gone.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pinstripe_jobs.store.common import HOST
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine

# the slot key of a concurrency limit's bucket: a unit separator no tenant id is expected to hold
SLOT_PREFIX = "\x1flimit\x1f"
_NOW_SQLITE = "SELECT (julianday('now') - 2440587.5) * 86400.0"
_NOW_PG = "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8"


class Grant:
    """What ``take_tokens`` answers: ``tokens`` granted (0: none now), the block's row id, and when none
    were, ``retry_in`` seconds until one may be."""

    __slots__ = ("tokens", "block", "retry_in")

    def __init__(self, tokens: int, block: int | None, retry_in: float):
        self.tokens, self.block, self.retry_in = tokens, block, retry_in


def slot_key(name: str, bucket: str) -> str:
    return f"{SLOT_PREFIX}{name}\x1f{bucket}"


class LimitRecords:
    """``StateStore``'s named limits (see ``contracts.Limits``)."""

    engine: Engine
    take_slot: Callable[[Any, int], tuple[str, int] | None]  # SlotRecords' (StateStore has both)

    def take_tokens(self, name: str, bucket: str, count: int, window: float, want: int, hold: float) -> Grant:
        """Up to ``want`` tokens of the rate limit ``name``/``bucket`` (``count`` per ``window`` seconds),
        each to be used within ``hold`` seconds of the request being sent."""
        engine = self.engine
        sqlite = engine.dialect.sqlite

        def grant(conn: Connection) -> Grant:
            engine.execute(conn, engine.dialect.begin)
            try:
                if not sqlite:  # one grant at a time per bucket (SQLite: BEGIN IMMEDIATE already serializes)
                    engine.execute(conn, "SELECT pg_advisory_xact_lock(?)", (_lock_id(name, bucket),))
                now = float(engine.execute(conn, _NOW_SQLITE if sqlite else _NOW_PG).fetchone()[0])
                engine.execute(conn, "DELETE FROM pinstripe_limit_blocks WHERE name = ? AND bucket = ? AND ends <= ?",
                               (name, bucket, now - window))
                rows = engine.execute(conn, "SELECT ends, tokens FROM pinstripe_limit_blocks WHERE name = ? AND "
                                            "bucket = ? AND tokens > 0 ORDER BY ends", (name, bucket)).fetchall()
                used = sum(int(r[1]) for r in rows)
                free = min(want, count - used)
                if free <= 0:
                    result = Grant(0, None, _retry_in(rows, used - count + 1, window, now))
                else:
                    row = engine.execute(conn, "INSERT INTO pinstripe_limit_blocks (name, bucket, tokens, ends, host, "
                                               "pid) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                                         (name, bucket, free, now + hold, HOST, engine.pid)).fetchone()
                    result = Grant(free, int(row[0]), 0.0)
                engine.execute(conn, "COMMIT")
                return result
            except BaseException:
                conn.cursor().execute("ROLLBACK")
                raise

        return engine.call(grant)

    def return_tokens(self, block: int, unused: int) -> None:
        """Give back ``unused`` tokens of a block this process was granted and will not use."""
        if unused > 0:
            self.engine.call(lambda conn: self.engine.execute(
                conn, "UPDATE pinstripe_limit_blocks SET tokens = tokens - ? WHERE id = ? AND tokens >= ?",
                (unused, block, unused)))

    def take_limit_slot(self, name: str, bucket: str, cap: int) -> tuple[str, int] | None:
        """One of the ``cap`` slots of the concurrency limit ``name``/``bucket``, or None (all held)."""
        slot: tuple[str, int] | None = self.take_slot(slot_key(name, bucket), cap)
        return slot

    def limit_usage(self, name: str, bucket: str, window: float) -> int:
        """Tokens of ``name``/``bucket`` granted in blocks ending within the last ``window`` seconds."""
        engine = self.engine

        def read(conn: Connection) -> int:
            now = float(engine.execute(conn, _NOW_SQLITE if engine.dialect.sqlite else _NOW_PG).fetchone()[0])
            row = engine.execute(conn, "SELECT COALESCE(SUM(tokens), 0) FROM pinstripe_limit_blocks WHERE name = ? "
                                       "AND bucket = ? AND ends > ?", (name, bucket, now - window)).fetchone()
            return int(row[0])

        return engine.call(read)


def _retry_in(rows: list[tuple[float, int]], excess: int, window: float, now: float) -> float:
    """Seconds until ``excess`` of the oldest tokens have left the window."""
    seen = 0
    for ends, tokens in rows:
        seen += int(tokens)
        if seen >= excess:
            return max(float(ends) + window - now, 0.001)
    return 0.001


def _lock_id(name: str, bucket: str) -> int:
    """A stable signed 64-bit advisory lock id for a bucket (two CRC-32s: the same on every host)."""
    import zlib

    text = f"pinstripe-limit\x1f{name}\x1f{bucket}".encode()
    value = (zlib.crc32(text) << 32) | zlib.crc32(text[::-1])
    return value - (1 << 64) if value >= 1 << 63 else value
