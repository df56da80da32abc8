"""Run history, overlap locks and tick claims, in one SQL database named by the ``state`` URL.

SQLite (the embedded default, ``.pinstripe/state.db`` beside the config) goes through the standard
library's ``sqlite3``; PostgreSQL through ``psycopg`` directly (no SQLAlchemy on this path).

Every run is a row, written when it starts and updated when it ends. **Locks are leases, not sessions**:
the lock of (job, tenant) *is* its ``running`` row (a partial unique index on job and lock key), naming
its holder (host, pid, process start time) and a heartbeat the holder renews while it runs. A second run
may take the lock over only when the holder is provably gone: its process is dead on this host, or its
heartbeat is older than ``lock_stale_s``. A dropped connection is not a lost lock: the holder reconnects
and records its own outcome. Tick claims work the same way, and record when their tick is done, so a
tick whose runner died is resumed by the next one.

Every operation is time-limited (connect, statement and lock timeouts on PostgreSQL, a short busy
timeout on SQLite) and retried with backoff, reconnecting, for up to ``retry_s`` seconds; past that it
raises ``StateUnavailable`` (exit 3), never a raw driver error.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

from pinstripe_jobs.errors import ConfigError, cap, mask_secrets
from pinstripe_jobs.execution.signals import RunInterrupted
from pinstripe_jobs.model.status import HELD, RERUN, Status, sql_list
from pinstripe_jobs.store.schema import SchemaError, SchemaMissing, check_schema, ensure_schema, latest_of

HOST = os.uname().nodename
LIVE = Status.RUNNING
QUEUED = Status.QUEUED
HELD_SQL = sql_list(HELD)
BAD = RERUN
MAX_ERROR = 4000  # characters of an error message kept in history
MAX_TRACEBACK = 20000
FOLD_EVERY = 500  # ended runs folded into pinstripe_latest at a time
FOLD_AFTER_S = 2.0  # ... or this long after the last fold, whichever comes first
DEFERRED_S = 1.0  # a deferred run end is committed by the heartbeat thread after this long
_NO_GUARD = nullcontext()
OPEN_RETRY_S = 10  # opening the store: a wrong URL should not wait the whole budget to say so
_NOT_TRANSIENT = ("28000", "28P01", "3D000", "42501", "3F000")  # bad login, no such database/schema, no right


def _log():
    import logging

    return logging.getLogger("pinstripe.state")


class StateUnavailable(ConfigError):
    """The state store could not be reached within the retry budget."""

    def __init__(self, message: str, hint: str | None = None, cause: str = ""):
        super().__init__(message, hint)
        self.cause = cause


def process_token(pid: int) -> str:
    """The start time of a process (from /proc), so a reused pid is not taken for the old process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int | None, token: str) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not token or process_token(pid) in ("", token)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def storable(text: str | None, limit: int = MAX_ERROR) -> str | None:
    """Text made safe to store: NUL bytes replaced, secrets masked, at most ``limit`` characters."""
    if text is None:
        return None
    return mask_secrets(cap(str(text), limit).replace("\0", "\\0"))


class Lease:
    """A claimed or started run: its row id (the lock, when it took one), and the tenant slot it holds under
    ``tenant_concurrency`` (tenant, slot number), if any."""

    __slots__ = ("run_id", "slot")

    def __init__(self, run_id: int, slot: tuple[str, int] | None = None):
        self.run_id = run_id
        self.slot = slot


COLUMNS = ("id", "job", "tenant", "trigger", "tick", "attempt", "started_at", "ended_at", "status", "error",
           "host", "pid", "pid_token", "heartbeat_at", "tenant_kind", "invocation", "duration_ms")


def _kind(tenant: Any) -> str | None:
    return "int" if isinstance(tenant, int) and not isinstance(tenant, bool) else None


class StateStore:
    """One store per process and URL. Thread-safe: one shared connection behind a lock."""

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow, history_days: float = 30,
                 retry_s: float = 60, lock_stale_s: float = 60, sleep: Callable[[float], Any] | None = None,
                 cancelled: Callable[[], bool] | None = None, guard: Callable[[], Any] | None = None,
                 read_only: bool = False):
        self.url = url
        self.clock = clock
        self.history_days = history_days
        self.retry_s = retry_s
        self.lock_stale_s = lock_stale_s
        self.sleep = sleep or time.sleep
        self.cancelled = cancelled or (lambda: False)  # a stop that may cut retries short
        self.guard = guard  # a context manager factory: a signal may cut a wait short (StopFlag.interruptible)
        self.pid = os.getpid()
        self.token = process_token(self.pid)
        self._mutex = threading.RLock()
        self._deferred: list[tuple] = []  # run-end updates that ride on the next commit (see end_run)
        self._deferred_since = 0.0  # when the oldest of them was deferred (the heartbeat commits them)
        self._starting: dict[int, None] = {}  # claimed runs about to start (see start): committed together
        self._started: dict[int, bool] = {}  # ... of those, the few whose claim was taken over: False
        self._unfolded: list[int] = []  # ended runs not yet folded into pinstripe_latest
        self._folding = 0  # how many of them the open transaction folds
        self._folded_at = time.monotonic()
        self._leases: set[int] = set()  # run rows this process holds: their heartbeats are renewed
        self._ticks: set[tuple[str, str]] = set()  # tick claims this process is firing
        self._slots: set[tuple[str, int]] = set()  # tenant slots (tenant_concurrency) this process holds
        self._heartbeat: threading.Thread | None = None
        self._closed = threading.Event()
        self._down_since: float | None = None  # set after the budget ran out once: fail fast from then on
        backend = url.split(":", 1)[0].split("+")[0]
        self.is_sqlite = backend == "sqlite"
        self.is_postgres = backend in ("postgresql", "postgres")
        if not (self.is_sqlite or self.is_postgres):
            raise ConfigError(f"State store {mask_secrets(url)}: only SQLite and PostgreSQL URLs are supported.",
                              "Use sqlite:///path/state.db or postgresql+psycopg://user@host/db.")
        self._conn = None
        try:
            schema = check_schema if read_only else ensure_schema  # read-only: never creates, upgrades or prunes
            self.schema = self._call(lambda conn: schema(conn, sqlite=self.is_sqlite),
                                     budget=min(retry_s, OPEN_RETRY_S))
        except SchemaError as exc:  # too new (refused untouched), or too old to read without upgrading
            self._discard()
            raise exc.at(mask_secrets(url)) from None
        except StateUnavailable as exc:
            raise ConfigError(f"State store {mask_secrets(url)} is not usable: {exc.cause}",
                              "Check `state` in the config, or PINSTRIPE_STATE.") from None
        except Exception as exc:  # not a passing fault: a bad login, a missing database
            raise ConfigError(f"State store {mask_secrets(url)} is not usable: {_first_line(exc)}",
                              "Check `state` in the config, or PINSTRIPE_STATE.") from None
        if not read_only:
            self._prune_daily()

    # -- connections -------------------------------------------------------------------------------
    def _connect(self):
        return self._connect_sqlite() if self.is_sqlite else self._connect_postgres()

    def _connect_sqlite(self):
        import sqlite3
        from pathlib import Path

        path = self.url.split(":///", 1)[1].split("?", 1)[0] if ":///" in self.url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A short busy timeout: waiting for a lock is retried here, where a stop request can end it.
        conn = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False, timeout=2)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _connect_postgres(self):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        scheme, rest = self.url.split("://", 1)
        params = conninfo_to_dict("postgresql://" + rest)
        params.setdefault("connect_timeout", "5")
        # A server that stops answering is noticed: TCP keepalives, and unacknowledged data for 10 s
        for key, value in (("keepalives", "1"), ("keepalives_idle", "5"), ("keepalives_interval", "2"),
                           ("keepalives_count", "3"), ("tcp_user_timeout", "10000")):
            params.setdefault(key, value)
        limits = "-c statement_timeout=30000 -c lock_timeout=1000 -c idle_in_transaction_session_timeout=60000"
        params["options"] = f"{params.get('options', '')} {limits}".strip()
        params.setdefault("application_name", "pinstripe-jobs")
        return psycopg.connect(autocommit=True, **params)

    def _transient(self, exc: BaseException) -> bool:
        if self.is_sqlite:
            import sqlite3

            return isinstance(exc, sqlite3.OperationalError)
        import psycopg

        if getattr(exc, "sqlstate", None) in _NOT_TRANSIENT:
            return False
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    def _driver_error(self, exc: BaseException) -> bool:
        if self.is_sqlite:
            import sqlite3

            return isinstance(exc, sqlite3.Error)
        import psycopg

        return isinstance(exc, psycopg.Error)

    def _call(self, operation: Callable[[Any], Any], budget: float | None = None) -> Any:
        """Run ``operation(connection)`` under the lock, retrying transient failures (a dropped connection,
        a server restart, a lock or statement timeout, a full disk) with backoff and a fresh connection
        for up to ``retry_s`` seconds. Raises ``StateUnavailable`` when the budget is spent."""
        with self._mutex:
            started = time.monotonic()
            delay = 0.05
            if budget is None:
                budget = 0.0 if self._down_since is not None else self.retry_s
            warned = False
            while True:
                try:
                    with self.guard() if self.guard else _NO_GUARD:
                        if self._conn is None:
                            self._conn = self._connect()
                        result = operation(self._conn)
                    self._down_since = None
                    return result
                except RunInterrupted:  # the grace period is over: give up on a database that hangs
                    self._discard()
                    self._down_since = self._down_since or time.monotonic()
                    raise StateUnavailable(f"The state store {mask_secrets(self.url)} did not answer before the "
                                           "grace period ended.", cause="interrupted") from None
                except Exception as exc:
                    if not self._transient(exc):
                        if self._driver_error(exc):  # a refusal, not an outage: say so (exit 3), no traceback
                            self._discard()
                            raise StateUnavailable(
                                f"The state store {mask_secrets(self.url)} refused an operation: {_first_line(exc)}",
                                "Check the database user's rights on the pinstripe_* tables, and `state` in the "
                                "config / PINSTRIPE_STATE.", cause=_first_line(exc)) from None
                        raise
                    self._discard()
                    elapsed = time.monotonic() - started
                    if elapsed + delay > budget or self.cancelled():
                        self._down_since = self._down_since or time.monotonic()
                        raise StateUnavailable(
                            f"The state store {mask_secrets(self.url)} is unavailable: {_first_line(exc)}",
                            f"Tried for {elapsed:.0f}s (state_retry_s = {self.retry_s:g}). Check the database, "
                            "or `state` in the config / PINSTRIPE_STATE.", cause=_first_line(exc)) from None
                    if not warned and elapsed + delay > 1:  # say so once a person would notice the wait
                        warned = True
                        _log().warning("state store %s: %s; retrying for up to %gs", mask_secrets(self.url),
                                       _first_line(exc), budget)
                    self.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if self.is_sqlite and conn.in_transaction:
                    conn.execute("ROLLBACK")
            except Exception:
                pass
            try:
                conn.close()
            except Exception:
                pass

    def _sql(self, text: str) -> str:
        return text if self.is_sqlite else text.replace("?", "%s")

    def _execute(self, conn, sql: str, params: tuple | list = ()):
        cursor = conn.cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def close(self) -> None:
        self._closed.set()
        try:
            self.flush()
        except StateUnavailable as exc:
            _log().error("%s", exc.message)
        with self._mutex:
            self._discard()

    @property
    def local(self) -> bool:
        """True when the store is a file on this machine (SQLite): shared by this host's processes only (not by
        a fleet), and a commit costs less than handing the call to another thread."""
        return self.is_sqlite

    # -- heartbeats --------------------------------------------------------------------------------
    @property
    def heartbeat_every(self) -> float:
        return max(self.lock_stale_s / 4, 0.05)

    def _hold(self, run_id: int | None = None, tick: tuple[str, str] | None = None) -> None:
        if run_id is not None:
            self._leases.add(run_id)
        if tick is not None:
            self._ticks.add(tick)
        if self._heartbeat is None or not self._heartbeat.is_alive():
            if os.getpid() != self.pid:
                return
            self._heartbeat = threading.Thread(target=self._beat, daemon=True, name="pinstripe-heartbeat")
            self._heartbeat.start()

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._closed.wait(min(self.heartbeat_every, DEFERRED_S)):
            if os.getpid() != self.pid:
                return
            try:
                if self._deferred_since and time.monotonic() - self._deferred_since >= DEFERRED_S:
                    self.flush()  # run ends wait at most about a second for a commit to ride on
                if time.monotonic() - renewed >= self.heartbeat_every:
                    renewed = time.monotonic()
                    self.renew()
            except Exception as exc:  # the store is down: the next beat tries again; the lock row stands
                _log().warning("could not renew leases: %s", getattr(exc, "message", exc))

    def renew(self) -> None:
        """Renew the heartbeat of every lease and tick claim this process holds."""
        runs, ticks, slots = list(self._leases), list(self._ticks), list(self._slots)
        if not runs and not ticks and not slots:
            return
        now = iso(self.clock())

        def write(conn) -> None:
            for chunk in range(0, len(runs), 500):
                ids = runs[chunk:chunk + 500]
                self._execute(conn, f"UPDATE pinstripe_runs SET heartbeat_at = ? WHERE id IN "
                                    f"({', '.join('?' * len(ids))})", (now, *ids))
            for key, tick in ticks:
                self._execute(conn, "UPDATE pinstripe_ticks SET heartbeat_at = ? WHERE job = ? AND tick = ?",
                              (now, key, tick))
            for tenant, slot in slots:
                self._execute(conn, "UPDATE pinstripe_slots SET heartbeat_at = ? WHERE tenant = ? AND slot = ? AND "
                                    "pid = ? AND host = ?", (now, tenant, slot, self.pid, HOST))

        self._call(write)

    def _holder_alive(self, host: str | None, pid: int | None, token: str | None, heartbeat: str | None) -> bool:
        """Alive unless provably gone: a dead process on this host, or a stale heartbeat elsewhere."""
        if not pid:
            return False  # released
        if host == HOST:
            return process_alive(pid, token or "")
        if not heartbeat:
            return True
        return self.clock() - datetime.fromisoformat(heartbeat) < timedelta(seconds=self.lock_stale_s)

    # -- runs and locks ----------------------------------------------------------------------------
    def begin_run(self, job: str, tenant: Any, trigger: str, *, tick: datetime | None = None, attempt: int = 1,
                  lock: bool = True, invocation: str | None = None) -> Lease | None:
        """Record a started run. With ``lock``, return None when a live run of (job, tenant) holds the lock."""
        key = ("-" if tenant is None else str(tenant)) if lock else None
        lease = os.urandom(12).hex()
        now = iso(self.clock())
        values = (job, None if tenant is None else str(tenant), _kind(tenant), trigger, iso(tick), attempt, now, LIVE,
                  HOST, self.pid, self.token, key, now, lease, invocation)
        insert = ("INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, attempt, started_at, status, "
                  "host, pid, pid_token, lock_key, heartbeat_at, lease, invocation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                  "?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id")

        def attempt_lock(conn) -> int | None:
            for _ in range(10):
                row = self._in_transaction(conn, lambda: self._execute(conn, insert, values).fetchone())
                if row is not None:
                    return row[0]
                holder = self._execute(conn, "SELECT id, host, pid, pid_token, heartbeat_at, lease, status FROM "
                                             f"pinstripe_runs WHERE job = ? AND lock_key = ? AND status IN {HELD_SQL}",
                                       (job, key)).fetchone()
                if holder is None:
                    continue
                if holder[5] == lease:  # our own insert, committed before the connection dropped
                    return holder[0]
                if self._holder_alive(*holder[1:5]):
                    return None
                self._take_over(conn, holder[0], holder[6], holder[4] or now)
            return None

        run_id = self._call(attempt_lock)
        if run_id is None:
            return None
        self._hold(run_id)
        return Lease(run_id)

    def _take_over(self, conn, run_id: int, status: str, since: str) -> None:
        """The lock of a holder that is provably gone: its run reads ``abandoned``, or ``skipped`` when it
        was only claimed and never started."""
        if status == QUEUED:
            self._execute(conn, "UPDATE pinstripe_runs SET status = 'skipped', ended_at = ?, error = ? WHERE id = ? "
                                "AND status = ?", (since, "never started: its process is gone (claimed ahead, then "
                                                          "taken over by a later run)", run_id, QUEUED))
        else:
            self._execute(conn, "UPDATE pinstripe_runs SET status = 'abandoned', ended_at = ?, error = ? WHERE id = ? "
                                "AND status = ?", (since, "its process is gone (taken over by a later run)", run_id, LIVE))
        self._unfolded.append(run_id)

    def claim(self, job: str, tenants: list[Any], trigger: str, *, tick: datetime | None = None, lock: bool = True,
              invocation: str | None = None) -> dict[str, Lease]:
        """Claim a page of tenants ahead of running them, in one transaction: each gets its lock and a
        ``queued`` history row. Returns tenant key -> lease for those claimed; a tenant whose lock is held
        (or that appears twice) is left out and goes through ``begin_run`` when its turn comes. A claimed
        tenant runs after ``start`` (which marks it ``running``, durably, before its job is called); one
        that never starts is ended as skipped, or, if this process dies first, stays ``queued`` (never
        started: resumed by the next tick, rerun by ``--only-failed``)."""
        now = iso(self.clock())
        token = os.urandom(12).hex()  # this claim's rows: found again if a dropped connection hid its commit
        rows, keys = [], []
        for tenant in tenants:
            key = "-" if tenant is None else str(tenant)
            if key in keys:
                continue
            keys.append(key)
            rows.append((job, None if tenant is None else str(tenant), _kind(tenant), trigger, iso(tick), now, QUEUED,
                         HOST, self.pid, self.token, key if lock else None, now, invocation, token))
        if not rows:
            return {}
        values = ", ".join(["(?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        insert = ("INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, attempt, started_at, status, "
                  f"host, pid, pid_token, lock_key, heartbeat_at, invocation, lease) VALUES {values} ON CONFLICT DO "
                  "NOTHING RETURNING id, COALESCE(tenant, '-')")
        flat = [value for row in rows for value in row]
        named = [k for k in keys if k != "-"]
        mine = (f"SELECT id, COALESCE(tenant, '-') FROM pinstripe_runs WHERE job = ? AND (tenant IN "
                f"({', '.join('?' * len(named)) or 'NULL'}){' OR tenant IS NULL' if '-' in keys else ''}) AND lease = ?")
        tries = []

        def write(conn) -> list:
            tries.append(1)
            if len(tries) > 1:  # a retry: the try before may have committed before its connection dropped
                found = self._execute(conn, mine, (job, *named, token)).fetchall()
                if found:
                    return found
            return self._execute(conn, insert, flat).fetchall()

        found = self._call(lambda conn: self._transaction(conn, lambda: write(conn), pipelined=True))
        if lock:
            claimed = {key: Lease(run_id) for run_id, key in found}
        else:  # no lock, no conflict: ids in the order of the values
            claimed = {key: Lease(run_id) for key, run_id in zip(keys, sorted(r[0] for r in found))}
        for lease in claimed.values():
            self._leases.add(lease.run_id)
        if claimed:
            self._hold()
        return claimed

    def start(self, lease: Lease, linger: float = 0.0) -> bool:
        """Mark a claimed run ``running``, durably, before its job is called. Starts of concurrent runs are
        committed together (with any deferred run ends): whoever holds the connection commits them all;
        ``linger`` (under concurrency) waits that long first, so that the starts around it join one commit.
        False when the claim was taken over meanwhile (this process looked dead: it must not run)."""
        self._starting[lease.run_id] = None  # no lock: a dict's item assignment is atomic
        if linger:
            time.sleep(linger)
        try:
            self._call(lambda conn: self._commit_pending(conn) if lease.run_id in self._starting else None)
        except BaseException:
            self._starting.pop(lease.run_id, None)  # not started: its row stays queued, never marked later
            raise
        return self._started.pop(lease.run_id, True)

    def _commit_pending(self, conn) -> None:
        """Commit pending starts, with the deferred run ends (each run's end rides on the next start's
        commit, so that a run that finished is recorded as finished even if this process is killed next;
        grouping them further was measured 1.7x faster on PostgreSQL but would leave finished runs reading
        ``abandoned`` after a kill -9). On PostgreSQL that is one pipelined round trip; a start with no end
        to carry is one statement. Every commit is synchronous: ``synchronous_commit = off`` was measured
        and dropped, as a database restart right after it lost committed run ends (the fault test)."""
        if self._deferred or not self._starting:
            self._transaction(conn, lambda: None, pipelined=True)
            return
        starts = list(self._starting)
        marked = self._write_starts(conn, starts)  # autocommit: one statement, its own transaction
        lost = self._lost(marked)
        for run_id in starts:
            self._starting.pop(run_id, None)
        for run_id in lost:
            self._started[run_id] = False

    def _write_starts(self, conn, ids: list[int]) -> list[tuple[Any, list[int]]]:
        """Mark claimed runs running. Returns what tells, once committed, which claims were taken over
        meanwhile (``_lost``): rows at once on SQLite, a cursor read after the pipeline's one round trip on
        PostgreSQL."""
        now = iso(self.clock())
        marked = []
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            cursor = self._execute(conn, f"UPDATE pinstripe_runs SET status = ?, started_at = ?, heartbeat_at = ? "
                                         f"WHERE id IN ({', '.join('?' * len(part))}) AND status IN {HELD_SQL} "
                                         "AND host = ? AND pid = ? AND pid_token = ? "  # ours, not a reused id
                                         "RETURNING id",
                                   (LIVE, now, now, *part, HOST, self.pid, self.token))  # running: ours, retried
            marked.append((cursor.fetchall() if self.is_sqlite else cursor, part))
        return marked

    @staticmethod
    def _lost(marked: list[tuple[Any, list[int]]]) -> set[int]:
        lost: set[int] = set()
        for rows, part in marked:
            live = {row[0] for row in (rows if isinstance(rows, list) else rows.fetchall())}
            lost.update(run_id for run_id in part if run_id not in live)
        return lost

    def holder(self, job: str, tenant: Any) -> str | None:
        """Who holds the lock of (job, tenant): host, pid and since when, for a person who waits."""
        key = "-" if tenant is None else str(tenant)
        row = self._call(lambda conn: self._execute(conn, "SELECT host, pid, started_at FROM pinstripe_runs WHERE "
                                                          f"job = ? AND lock_key = ? AND status IN {HELD_SQL}",
                                                    (job, key)).fetchone())
        return f"host {row[0]}, pid {row[1]}, since {row[2]}" if row else None

    def _in_transaction(self, conn, operation: Callable[[], Any]) -> Any:
        """Commit run ends deferred by ``end_run`` and pending starts together with ``operation`` (one
        commit)."""
        if not (self._deferred or self._starting):
            return operation()
        return self._transaction(conn, operation)

    _END = ("UPDATE pinstripe_runs SET status = ?, ended_at = ?, error = ?, traceback = ?, duration_ms = ? "
            "WHERE id = ?")

    def _write_ends(self, conn, ends: list[tuple]) -> None:
        """Run ends, in the caller's transaction (SQLite) or one statement each (PostgreSQL); the tenants'
        newest statuses follow in groups (``_fold``)."""
        if self.is_sqlite:
            conn.executemany(self._END, ends)
        else:  # psycopg sends them pipelined: one round trip
            conn.cursor().executemany(self._END.replace("?", "%s"), ends)
        self._unfolded.extend(end[-1] for end in ends)
        if len(self._unfolded) >= FOLD_EVERY or time.monotonic() - self._folded_at > FOLD_AFTER_S:
            self._fold(conn)

    def _fold(self, conn) -> None:
        """Fold ended runs into pinstripe_latest (newer runs win; folding twice changes nothing). They leave
        the to-do list once the transaction commits (``_folded``)."""
        ids = list(dict.fromkeys(self._unfolded))
        self._folded_at = time.monotonic()
        for chunk in range(0, len(ids), FOLD_EVERY):
            part = ids[chunk:chunk + FOLD_EVERY]
            self._execute(conn, latest_of(f"id IN ({', '.join('?' * len(part))})"), part)
        self._folding = len(self._unfolded)

    def _folded(self, committed: bool = True) -> None:
        if committed and self._folding:
            del self._unfolded[:self._folding]
        self._folding = 0

    def end_run(self, lease: Lease, status: str, error: str | None = None, *, traceback: str | None = None,
                duration_s: float | None = None, defer: bool = False) -> None:
        """Record how a run ended and release its lock. With ``defer``, the update is committed together
        with this store's next write (the next run's start), at the latest by ``flush()`` or a second later
        (the heartbeat thread): back-to-back runs then cost one commit each instead of two."""
        values = (status, iso(self.clock()), storable(error), storable(traceback, MAX_TRACEBACK),
                  None if duration_s is None else round(duration_s * 1000, 3), lease.run_id)
        self._leases.discard(lease.run_id)
        if lease.slot is not None:  # at once, not deferred: another run of this tenant may be waiting
            self.release_slot(lease.slot)
        # No lock: the list's append is atomic, and a commit takes only the ends it wrote off its front. An
        # event loop that ends a run never waits here for another thread's commit.
        self._deferred.append(values)
        if not self._deferred_since:
            self._deferred_since = time.monotonic()
        if not defer:
            self.flush()

    def flush(self) -> None:
        """Commit deferred run ends now, and fold what ended into the tenants' newest statuses."""
        with self._mutex:
            if self._deferred or self._starting:
                self._call(self._commit_pending)
            if self._unfolded:
                self._call(lambda conn: self._transaction(conn, lambda: self._fold(conn)))

    def record(self, job: str, tenant: Any, trigger: str, status: str, *, error: str | None = None,
               tick: datetime | None = None, invocation: str | None = None) -> None:
        """A run that never started (skipped): one finished row."""
        self.record_many(job, [tenant], trigger, status, error=error, tick=tick, invocation=invocation)

    def record_many(self, job: str, tenants: Iterable[Any], trigger: str, status: str, *, error: str | None = None,
                    tick: datetime | None = None, invocation: str | None = None) -> None:
        """Runs that never started (skipped by a stop, --fail-fast, --max-failures): finished rows, with each
        tenant's newest status, in one transaction per 500."""
        now = iso(self.clock())
        rows = [(job, None if t is None else str(t), _kind(t), trigger, iso(tick), now, now, status, storable(error),
                 HOST, self.pid, invocation) for t in tenants]
        for chunk in range(0, len(rows), 500):
            part = rows[chunk:chunk + 500]
            self._call(lambda conn: self._transaction(conn, lambda: self._insert_finished(conn, part)))

    def _insert_finished(self, conn, rows: list[tuple]) -> None:
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        ids = [row[0] for row in self._execute(
            conn, "INSERT INTO pinstripe_runs (job, tenant, tenant_kind, trigger, tick, started_at, ended_at, status, "
                  f"error, host, pid, invocation) VALUES {values} RETURNING id",
            [value for row in rows for value in row]).fetchall()]
        self._unfolded.extend(ids)
        self._fold(conn)

    def _transaction(self, conn, operation: Callable[[], Any], pipelined: bool = False) -> Any:
        """``operation`` in one transaction, with any deferred run ends and pending starts. ``pipelined``
        (PostgreSQL): its statements go in one round trip. What was written leaves the to-do lists only
        once the commit is known to have happened."""
        starts = list(self._starting)
        ends = self._deferred[:]
        try:
            with conn.pipeline() if pipelined and self.is_postgres else _NO_GUARD:
                self._execute(conn, "BEGIN IMMEDIATE" if self.is_sqlite else "BEGIN")
                if ends:
                    self._write_ends(conn, ends)
                marked = self._write_starts(conn, starts) if starts else []
                result = operation()
                self._execute(conn, "COMMIT")
            lost = self._lost(marked)  # after the pipeline's sync: the commit's outcome is known
        except BaseException:
            _rollback(conn)
            self._folded(committed=False)
            raise
        del self._deferred[:len(ends)]
        self._deferred_since = time.monotonic() if self._deferred else 0.0
        for run_id in starts:
            self._starting.pop(run_id, None)
        for run_id in lost:
            self._started[run_id] = False
        self._folded()
        return result

    def remember(self, key: str, value: str) -> str | None:
        """Store ``value`` under ``key`` (the meta table) and return what was there before."""
        def swap(conn) -> str | None:
            row = self._execute(conn, "SELECT value FROM pinstripe_meta WHERE key = ?", (key,)).fetchone()
            self._execute(conn, "INSERT INTO pinstripe_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                                "value = excluded.value", (key, value))
            return row[0] if row else None

        return self._call(swap)

    # -- invocations: one per command or tick ------------------------------------------------------
    def begin_invocation(self, invocation: str, job: str, trigger: str, *, tick: datetime | None = None,
                         args: Any = None) -> None:
        """Record an invocation (one per command or tick). Its runs get ids above ``first_id``, so reading
        them is a range of the primary key. An earlier invocation of the job whose process died is closed
        first: its runs are folded into the tenants' newest statuses and it reads ``abandoned``."""
        if args is not None:
            import json

            args = storable(json.dumps(args, default=str))

        def write(conn) -> None:
            for row in self._execute(conn, "SELECT id, first_id, host, pid, pid_token FROM pinstripe_invocations WHERE "
                                           "job = ? AND ended_at IS NULL", (job,)).fetchall():
                if not self._holder_alive(row[2], row[3], row[4], None):
                    self._close_invocation(conn, row[0], row[1] or 0, "abandoned", None)
            first = self._execute(conn, "SELECT COALESCE(max(id), 0) FROM pinstripe_runs").fetchone()[0]
            self._execute(conn, "INSERT INTO pinstripe_invocations (id, job, trigger, tick, args, started_at, host, "
                                "pid, pid_token, first_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (invocation, job, trigger, iso(tick), args, iso(self.clock()), HOST, self.pid, self.token,
                           first))

        self._call(lambda conn: self._transaction(conn, lambda: write(conn)))

    def end_invocation(self, invocation: str, status: str, exit_code: int, counts: dict[str, int]) -> None:
        """The invocation's outcome, its counts by status and its runs' p50/p95/max duration. Counts are kept
        as ``status=n`` pairs (no JSON on the run path: start-up time)."""
        self.flush()

        def write(conn) -> None:
            row = self._execute(conn, "SELECT first_id FROM pinstripe_invocations WHERE id = ?", (invocation,)).fetchone()
            self._close_invocation(conn, invocation, (row[0] if row else 0) or 0, status, exit_code,
                                   ",".join(f"{k}={v}" for k, v in sorted(counts.items())))

        self._call(lambda conn: self._transaction(conn, lambda: write(conn)))

    def _close_invocation(self, conn, invocation: str, first_id: int, status: str, exit_code: int | None,
                          counts: str | None = None) -> None:
        where = "id > ? AND invocation = ?"
        if counts is None:  # its process died: count what it recorded, fold its runs
            found: dict[str, int] = {}
            for key, n in self._execute(conn, f"SELECT status, count(*) FROM pinstripe_runs WHERE {where} GROUP BY "
                                              "status", (first_id, invocation)).fetchall():
                key = "abandoned" if key == LIVE else key  # its holder is gone
                found[key] = found.get(key, 0) + n
            counts = ",".join(f"{k}={v}" for k, v in sorted(found.items()))
            self._execute(conn, latest_of(where), (first_id, invocation))
        n = self._execute(conn, f"SELECT count(duration_ms) FROM pinstripe_runs WHERE {where}",
                          (first_id, invocation)).fetchone()[0]
        quantiles = []
        for q in (0.5, 0.95, 1.0):  # exact, sorted by the database (nothing held in memory here)
            row = self._execute(conn, f"SELECT duration_ms FROM pinstripe_runs WHERE {where} AND duration_ms IS NOT "
                                      "NULL ORDER BY duration_ms LIMIT 1 OFFSET ?",
                                (first_id, invocation, max(0, min(n - 1, int(q * n + 0.999999) - 1)))).fetchone() \
                if n else None
            quantiles.append(row[0] if row else None)
        self._execute(conn, "UPDATE pinstripe_invocations SET ended_at = ?, status = ?, exit_code = ?, counts = ?, "
                            "p50_ms = ?, p95_ms = ?, max_ms = ? WHERE id = ?",
                      (iso(self.clock()), status, exit_code, counts, *quantiles, invocation))

    def recall(self, key: str) -> str | None:
        """The value stored under ``key`` (the meta table), or None."""
        row = self._call(lambda conn: self._execute(conn, "SELECT value FROM pinstripe_meta WHERE key = ?",
                                                    (key,)).fetchone())
        return row[0] if row else None

    def invocation_outcomes(self, job: str, invocation: str, tenants: list, *, running: bool = False
                            ) -> dict[str, tuple[str, str | None]]:
        """Of ``tenants``, those with a finished run of ``job`` in ``invocation``: tenant (as text) -> (status,
        error). A batch delivered again (its worker was lost) does not run them twice."""
        keys = ["-" if t is None else str(t) for t in tenants]
        self.flush()
        rows: list = []
        for chunk in range(0, len(keys), 500):  # the database's limit on parameters
            part = keys[chunk:chunk + 500]
            rows += self._call(lambda conn: self._execute(
                conn, f"SELECT COALESCE(tenant, '-'), status, error FROM pinstripe_runs WHERE job = ? AND "
                      f"(tenant IN ({', '.join('?' * len(part))}){' OR tenant IS NULL' if '-' in part else ''}) "
                      f"AND invocation = ? AND status <> 'queued' {'' if running else 'AND status <> ?'} ORDER BY id",
                (job, *part, invocation) + (() if running else (LIVE,))).fetchall())
        return {row[0]: (row[1], row[2]) for row in rows}

    # -- fairness: slots per tenant ----------------------------------------------------------------
    def take_slot(self, tenant: Any, cap: int) -> tuple[str, int] | None:
        """One of ``cap`` slots of this tenant (runs of any jobs, across processes and hosts), or None when
        all are held by live holders. Slots of holders that are provably gone are freed."""
        key = str(tenant)
        now = iso(self.clock())
        insert = ("INSERT INTO pinstripe_slots (tenant, slot, host, pid, pid_token, heartbeat_at) VALUES "
                  "(?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING slot")

        def take(conn) -> int | None:
            for slot in range(cap):
                if self._execute(conn, insert, (key, slot, HOST, self.pid, self.token, now)).fetchone():
                    return slot
            for slot, host, pid, token, heartbeat in self._execute(
                    conn, "SELECT slot, host, pid, pid_token, heartbeat_at FROM pinstripe_slots WHERE tenant = ? "
                          "AND slot < ?", (key, cap)).fetchall():
                if not self._holder_alive(host, pid, token, heartbeat):
                    self._execute(conn, "DELETE FROM pinstripe_slots WHERE tenant = ? AND slot = ? AND pid IS NOT "
                                        "DISTINCT FROM ? AND host IS NOT DISTINCT FROM ?", (key, slot, pid, host))
                    if self._execute(conn, insert, (key, slot, HOST, self.pid, self.token, now)).fetchone():
                        return slot
            return None

        slot = self._call(take)
        if slot is None:
            return None
        self._slots.add((key, slot))
        self._hold()
        return key, slot

    def release_slot(self, slot: tuple[str, int]) -> None:
        self._slots.discard(slot)
        self._call(lambda conn: self._execute(conn, "DELETE FROM pinstripe_slots WHERE tenant = ? AND slot = ? AND "
                                                    "pid = ? AND host = ?", (*slot, self.pid, HOST)))

    # -- tick claims -------------------------------------------------------------------------------
    def claim_tick(self, key: str, tick: datetime, kind: str = "fired") -> bool:
        """True for exactly one caller per (key, tick), across processes and machines sharing the store.
        The claim is held (heartbeat) until ``finish_tick``; if its holder dies first, ``orphan_ticks``
        offers it to the next scheduler, which takes it over with ``take_over_tick``."""
        now = iso(self.clock())

        def claim(conn) -> bool:
            cursor = self._in_transaction(conn, lambda: self._execute(
                conn, "INSERT INTO pinstripe_ticks (job, tick, claimed_at, host, pid, pid_token, heartbeat_at, kind) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (key, iso(tick), now, HOST, self.pid, self.token, now, kind)))
            return cursor.rowcount == 1

        claimed = self._call(claim)
        if claimed:
            self._hold(tick=(key, iso(tick)))
        return claimed

    def finish_tick(self, key: str, tick: datetime) -> None:
        """Every tenant of this tick has a recorded status: it will not be resumed."""
        self._ticks.discard((key, iso(tick)))
        self._call(lambda conn: self._execute(conn, "UPDATE pinstripe_ticks SET finished_at = ? WHERE job = ? "
                                                    "AND tick = ?", (iso(self.clock()), key, iso(tick))))

    def release_tick(self, key: str, tick: datetime) -> None:
        """Give up a claim this process cannot finish: the next scheduler resumes the tick."""
        self._ticks.discard((key, iso(tick)))
        self._call(lambda conn: self._execute(conn, "UPDATE pinstripe_ticks SET host = NULL, pid = NULL WHERE job = ? "
                                                    "AND tick = ? AND finished_at IS NULL", (key, iso(tick))))

    def orphan_ticks(self) -> list[tuple[str, datetime]]:
        """Claimed ticks not finished whose holder is provably gone (killed mid-tick)."""
        rows = self._call(lambda conn: self._execute(
            conn, "SELECT job, tick, host, pid, pid_token, heartbeat_at FROM pinstripe_ticks WHERE finished_at IS "
                  "NULL").fetchall())
        return [(row[0], datetime.fromisoformat(row[1])) for row in rows
                if (row[0], row[1]) not in self._ticks and not self._holder_alive(*row[2:6])]

    def take_over_tick(self, key: str, tick: datetime) -> bool:
        """Take over an orphaned tick claim; True for exactly one caller."""
        now = iso(self.clock())

        def take(conn) -> bool:
            row = self._execute(conn, "SELECT host, pid, pid_token, heartbeat_at FROM pinstripe_ticks WHERE job = ? "
                                      "AND tick = ? AND finished_at IS NULL", (key, iso(tick))).fetchone()
            if row is None or self._holder_alive(*row):
                return False
            cursor = self._execute(conn, "UPDATE pinstripe_ticks SET host = ?, pid = ?, pid_token = ?, heartbeat_at = ?, "
                                         "kind = 'resumed' "
                                         "WHERE job = ? AND tick = ? AND finished_at IS NULL AND host IS NOT DISTINCT "
                                         "FROM ? AND pid IS NOT DISTINCT FROM ?",
                                   (HOST, self.pid, self.token, now, key, iso(tick), row[0], row[1]))
            return cursor.rowcount == 1

        taken = self._call(take)
        if taken:
            self._hold(tick=(key, iso(tick)))
        return taken

    def tick_tenants(self, job: str, tick: datetime) -> set[str | None]:
        """Tenants that already have a run row for this tick (done, or abandoned mid-run; not those only
        claimed ahead, ``queued``: they never started)."""
        self.flush()
        rows = self._call(lambda conn: self._execute(conn, "SELECT DISTINCT tenant FROM pinstripe_runs WHERE job = ? "
                                                          "AND tick = ? AND status <> ?", (job, iso(tick), QUEUED)
                                                    ).fetchall())
        return {row[0] for row in rows}

    def last_claimed_tick(self, key: str) -> datetime | None:
        self.flush()
        row = self._call(lambda conn: self._execute(conn, "SELECT max(tick) FROM pinstripe_ticks WHERE job = ?",
                                                    (key,)).fetchone())
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    # -- reading -----------------------------------------------------------------------------------
    def _select(self, sql: str, params: tuple | list = ()) -> list[dict]:
        self.flush()
        rows = self._call(lambda conn: self._execute(conn, sql, params).fetchall())
        return [self._present(dict(zip(COLUMNS, r))) for r in rows]

    def runs(self, *, job: str | None = None, tenant: str | None = None, status: str | None = None,
             limit: int | None = 50) -> list[dict]:
        """Runs, newest first. ``running`` rows whose holder is gone read as ``abandoned``."""
        where, params = [], []
        for column, value in (("job", job), ("tenant", tenant)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if status in ("abandoned", LIVE):  # a running row may read as abandoned, and the other way round
            where.append("status IN ('abandoned', 'running')")
        elif status is not None:
            where.append("status = ?")
            params.append(status)
        sql = f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if status not in ("abandoned", LIVE) and limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._select(sql, params)
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return rows[:limit] if limit is not None else rows

    def _present(self, row: dict) -> dict:
        if row["status"] == LIVE and not self._holder_alive(row["host"], row["pid"], row["pid_token"],
                                                           row["heartbeat_at"]):
            row["status"] = "abandoned"
            row["ended_at"] = row["heartbeat_at"]  # its last sign of life, not when someone looked
        row.pop("pid_token", None)
        if row.pop("tenant_kind", None) == "int" and row["tenant"] is not None:
            row["tenant"] = int(row["tenant"])  # the same id as in the run's own JSON
        return row

    def last_runs(self) -> dict[str, dict]:
        """The newest run of every job."""
        rows = self._select(f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs WHERE id IN "
                            "(SELECT max(id) FROM pinstripe_runs GROUP BY job)")
        return {row["job"]: row for row in rows}

    def failed_tenants(self, job: str) -> list[str]:
        """Tenants whose newest run of ``job`` did not succeed (failed, timed out, interrupted, skipped,
        abandoned)."""
        rows = self._select(f"SELECT {', '.join(COLUMNS)} FROM pinstripe_runs WHERE id IN "
                            "(SELECT max(id) FROM pinstripe_runs WHERE job = ? GROUP BY tenant)", (job,))
        return [str(row["tenant"]) for row in rows if row["status"] in BAD and row["tenant"] is not None]

    def _prune_daily(self) -> None:
        """Prune at most once a day per store (the check is one indexed read)."""
        now = self.clock()
        row = self._call(lambda conn: self._execute(conn, "SELECT value FROM pinstripe_meta WHERE key = 'pruned_at'"
                                                    ).fetchone())
        if row and now - datetime.fromisoformat(row[0]) < timedelta(days=1):
            return
        self.prune(now)
        self._call(lambda conn: self._execute(conn, "INSERT INTO pinstripe_meta VALUES ('pruned_at', ?) ON CONFLICT "
                                                    "(key) DO UPDATE SET value = excluded.value", (iso(now),)))

    def prune(self, now: datetime | None = None) -> int:
        if not self.history_days:
            return 0
        cutoff = iso((now or self.clock()) - timedelta(days=self.history_days))
        self.flush()

        def delete(conn) -> int:
            removed = self._execute(conn, f"DELETE FROM pinstripe_runs WHERE started_at < ? AND status NOT IN "
                                          f"{HELD_SQL}", (cutoff,)).rowcount
            self._execute(conn, "DELETE FROM pinstripe_ticks WHERE claimed_at < ? AND finished_at IS NOT NULL",
                          (cutoff,))
            self._execute(conn, "DELETE FROM pinstripe_invocations WHERE started_at < ? AND ended_at IS NOT NULL",
                          (cutoff,))
            self._execute(conn, "DELETE FROM pinstripe_latest WHERE ended_at < ?", (cutoff,))
            return removed

        return self._call(delete)


def open_store(settings, *, read_only: bool = False, **options: Any) -> StateStore | None:
    """The project's store. ``read_only`` (history, listing): None when the SQLite file does not exist,
    so a read-only command never creates ``.pinstripe/state.db``."""
    url = settings.state_url
    if read_only and url.startswith("sqlite") and ":///" in url:
        from pathlib import Path

        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:" and not Path(path).is_file():
            return None
    try:
        return StateStore(url, history_days=settings.history_days, retry_s=settings.state_retry_s,
                          lock_stale_s=settings.lock_stale_s, read_only=read_only, **options)
    except SchemaMissing:  # read-only, and no tables yet (PostgreSQL): no history, as without a SQLite file
        return None


def _rollback(conn) -> None:
    try:
        conn.cursor().execute("ROLLBACK")
    except Exception:  # the connection is gone: the transaction went with it
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return mask_secrets(f"{type(exc).__name__}: {line}" if line else type(exc).__name__)
