"""Tick claims: the scheduler's exactly-once firing of a schedule's tick, across processes and machines. A
claim names its holder and is renewed by the heartbeat until the tick is finished; the claim of a holder that
died mid-tick is an orphan, resumed by the next scheduler."""
from __future__ import annotations

from datetime import datetime

from pinstripe_jobs.store.common import HOST, QUEUED, stamp
from pinstripe_jobs.store.dialects import Connection
from pinstripe_jobs.store.engine import Engine


class TickRecords:
    """``StateStore``'s tick claims (see ``contracts.Ticks``)."""

    engine: Engine

    def claim_tick(self, key: str, tick: datetime, kind: str = "fired") -> bool:
        """True for exactly one caller per (key, tick), across processes and machines sharing the store.
        The claim is held (heartbeat) until ``finish_tick``; if its holder dies first, ``orphan_ticks``
        offers it to the next scheduler, which takes it over with ``take_over_tick``."""
        engine = self.engine
        now = engine.now()

        def claim(conn: Connection) -> bool:
            cursor = engine.in_transaction(conn, lambda: engine.execute(
                conn, "INSERT INTO pinstripe_ticks (job, tick, claimed_at, host, pid, pid_token, heartbeat_at, kind) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, stamp(tick), now, HOST, engine.pid, engine.token, now, kind)))
            return cursor.rowcount == 1

        claimed = engine.call(claim)
        if claimed:
            engine.hold(tick=(key, stamp(tick)))
        return claimed

    def finish_tick(self, key: str, tick: datetime) -> None:
        """Every tenant of this tick has a recorded status: it will not be resumed."""
        engine = self.engine
        engine.ticks.discard((key, stamp(tick)))
        engine.call(lambda conn: engine.execute(conn, "UPDATE pinstripe_ticks SET finished_at = ? WHERE job = ? "
                                                      "AND tick = ?", (engine.now(), key, stamp(tick))))

    def release_tick(self, key: str, tick: datetime) -> None:
        """Give up a claim this process cannot finish: the next scheduler resumes the tick."""
        engine = self.engine
        engine.ticks.discard((key, stamp(tick)))
        engine.call(lambda conn: engine.execute(conn, "UPDATE pinstripe_ticks SET host = NULL, pid = NULL WHERE "
                                                      "job = ? AND tick = ? AND finished_at IS NULL",
                                                (key, stamp(tick))))

    def orphan_ticks(self) -> list[tuple[str, datetime]]:
        """Claimed ticks not finished whose holder is provably gone (killed mid-tick)."""
        engine = self.engine
        rows = engine.call(lambda conn: engine.execute(
            conn, "SELECT job, tick, host, pid, pid_token, heartbeat_at FROM pinstripe_ticks WHERE finished_at IS "
                  "NULL").fetchall())
        return [(row[0], datetime.fromisoformat(row[1])) for row in rows
                if (row[0], row[1]) not in engine.ticks and not engine.holder_alive(*row[2:6])]

    def take_over_tick(self, key: str, tick: datetime) -> bool:
        """Take over an orphaned tick claim; True for exactly one caller."""
        engine = self.engine
        now = engine.now()

        def take(conn: Connection) -> bool:
            row = engine.execute(conn, "SELECT host, pid, pid_token, heartbeat_at FROM pinstripe_ticks WHERE job = ? "
                                       "AND tick = ? AND finished_at IS NULL", (key, stamp(tick))).fetchone()
            if row is None or engine.holder_alive(*row):
                return False
            cursor = engine.execute(conn, "UPDATE pinstripe_ticks SET host = ?, pid = ?, pid_token = ?, "
                                          "heartbeat_at = ?, kind = 'resumed' WHERE job = ? AND tick = ? AND "
                                          "finished_at IS NULL AND host IS NOT DISTINCT FROM ? AND pid IS NOT "
                                          "DISTINCT FROM ?",
                                    (HOST, engine.pid, engine.token, now, key, stamp(tick), row[0], row[1]))
            return cursor.rowcount == 1

        taken = engine.call(take)
        if taken:
            engine.hold(tick=(key, stamp(tick)))
        return taken

    def tick_tenants(self, job: str, tick: datetime) -> set[str | None]:
        """Tenants that already have a run row for this tick (done, or abandoned mid-run; not those only
        claimed ahead, ``queued``: they never started)."""
        rows = self.engine.query("SELECT DISTINCT tenant FROM pinstripe_runs WHERE job = ? AND tick = ? AND "
                                 "status <> ?", (job, stamp(tick), QUEUED))
        return {row[0] for row in rows}

    def last_claimed_tick(self, key: str) -> datetime | None:
        """The newest tick claimed for ``key`` (finished or not), or None."""
        rows = self.engine.query("SELECT max(tick) FROM pinstripe_ticks WHERE job = ?", (key,))
        return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None
