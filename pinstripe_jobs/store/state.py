"""Run history, overlap locks and tick claims, in one SQL database named by the ``state`` URL.

``StateStore`` is one object per process and URL, assembled from one part per kind of record (runs and
their leases, claims, ticks, tenant slots, invocations, meta, maintenance, reads), each a module of this
package, over one ``Engine`` (the connection, retries, transactions, the heartbeat) and a ``Dialect``
(SQLite or PostgreSQL). What each method guarantees is written down in ``contracts.py``.

Opening a store connects and brings its tables to this schema version; it does not prune. ``open_store``
(what commands use) also runs the daily maintenance for commands that write, never for read-only ones.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError, mask_secrets
from pinstripe_jobs.store.audit import AuditRecords
from pinstripe_jobs.store.cancels import CancelRecords
from pinstripe_jobs.store.claims import ClaimRecords
from pinstripe_jobs.store.common import (
    BAD,
    COLUMNS,
    HELD_SQL,
    HOST,
    LIVE,
    MAX_ERROR,
    MAX_TRACEBACK,
    QUEUED,
    Lease,
    StateUnavailable,
    first_line,
    iso,
    process_alive,
    process_token,
    storable,
    utcnow,
)
from pinstripe_jobs.store.dialects import dialect_for
from pinstripe_jobs.store.engine import Engine
from pinstripe_jobs.store.history import HistoryReads
from pinstripe_jobs.store.invocation_reads import InvocationReads
from pinstripe_jobs.store.invocations import InvocationRecords
from pinstripe_jobs.store.limits import LimitRecords
from pinstripe_jobs.store.maintenance import Maintenance
from pinstripe_jobs.store.meta import MetaRecords
from pinstripe_jobs.store.pauses import PauseRecords
from pinstripe_jobs.store.runs import RunRecords
from pinstripe_jobs.store.schema import SchemaChange, SchemaError, SchemaMissing, check_schema, ensure_schema
from pinstripe_jobs.store.slots import SlotRecords
from pinstripe_jobs.store.ticks import TickRecords

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.store.contracts import Limits, Store

OPEN_RETRY_S = 10  # opening the store: a wrong URL should not wait the whole budget to say so


class StateStore(RunRecords, ClaimRecords, TickRecords, SlotRecords, InvocationRecords, InvocationReads, MetaRecords,
                 Maintenance, HistoryReads, PauseRecords, AuditRecords, CancelRecords, LimitRecords):
    """One store per process and URL. Thread-safe: one shared connection behind a lock."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow, history_days: float = 30,
                 retry_s: float = 60, lock_stale_s: float = 60, sleep: Callable[[float], Any] | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 guard: Callable[[], AbstractContextManager[Any]] | None = None,
                 read_only: bool = False):
        self.url = url
        self.history_days = history_days
        dialect = dialect_for(url)  # ConfigError for a database the store does not support
        self.engine = Engine(url, dialect, clock=clock, retry_s=retry_s, lock_stale_s=lock_stale_s, sleep=sleep,
                             cancelled=cancelled, guard=guard)
        try:
            schema = check_schema if read_only else ensure_schema  # read-only: never creates, upgrades or prunes
            self.schema: SchemaChange = self.engine.call(lambda conn: schema(conn, sqlite=dialect.sqlite),
                                                         budget=min(retry_s, OPEN_RETRY_S))
        except SchemaError as exc:  # too new (refused untouched), or too old to read without upgrading
            self.engine.discard()
            raise exc.at(mask_secrets(url)) from None
        except StateUnavailable as exc:
            raise ConfigError(f"State store {mask_secrets(url)} is not usable: {exc.cause}",
                              "Check `state` in the config, or PINSTRIPE_STATE.") from None
        except Exception as exc:  # not a passing fault: a bad login, a missing database
            raise ConfigError(f"State store {mask_secrets(url)} is not usable: {first_line(exc)}",
                              "Check `state` in the config, or PINSTRIPE_STATE.") from None

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.engine.clock

    @property
    def retry_s(self) -> float:
        return self.engine.retry_s

    @property
    def lock_stale_s(self) -> float:
        return self.engine.lock_stale_s

    @property
    def local(self) -> bool:
        """True when the store is a file on this machine (SQLite): shared by this host's processes only (not by
        a fleet), and a commit costs less than handing the call to another thread."""
        return self.engine.dialect.local

    @property
    def heartbeat_every(self) -> float:
        return self.engine.heartbeat_every

    def renew(self) -> None:
        """Renew the heartbeat of every lease, tick claim and slot this process holds (the heartbeat thread
        does it every ``heartbeat_every`` seconds)."""
        self.engine.renew()

    def close(self) -> None:
        """Commit what waits (logged, not raised, if the store is down), stop the heartbeat, disconnect."""
        self.engine.close()


if TYPE_CHECKING:
    _CONFORMS: type[Store] = StateStore  # mypy checks that StateStore satisfies every contract
    _LIMITS: type[Limits] = StateStore


def open_store(settings: Settings, *, read_only: bool = False, **options: Any) -> StateStore | None:
    """The project's store. ``read_only`` (history, listing): None when the SQLite file does not exist,
    so a read-only command never creates ``.pinstripe/state.db``, and no maintenance. Otherwise the daily
    maintenance (pruning) runs once the store is open; if the store cannot do it now (a table locked, the
    database gone), that is logged and left to the next command: the command's own calls say what is wrong."""
    url = settings.state_url
    if read_only and dialect_for(url).missing():
        return None
    values: dict[str, Any] = {"history_days": settings.history_days, "retry_s": settings.state_retry_s,
                              "lock_stale_s": settings.lock_stale_s, **options}
    try:
        store = StateStore(url, read_only=read_only, **values)
    except SchemaMissing:  # read-only, and no tables yet (PostgreSQL): no history, as without a SQLite file
        return None
    if not read_only:
        store.maintain()  # never raises for the store: skipped (with a warning) when it cannot run now
    return store


__all__ = ["BAD", "COLUMNS", "HELD_SQL", "HOST", "LIVE", "MAX_ERROR", "MAX_TRACEBACK", "QUEUED", "Lease",
           "OPEN_RETRY_S", "StateStore", "StateUnavailable", "iso", "open_store", "process_alive", "process_token",
           "storable", "utcnow"]
