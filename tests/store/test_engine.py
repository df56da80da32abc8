"""The engine's retries: a passing fault then success; the budget spent -> StateUnavailable (and fail fast
after); a refusal is not retried; a real locked SQLite file."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from pinstripe_jobs.store import StateUnavailable
from pinstripe_jobs.store.common import utcnow
from pinstripe_jobs.store.dialects import SQLiteDialect
from pinstripe_jobs.store.engine import Engine


class Passing(Exception):
    """A fault the fake dialect calls transient."""


class FakeDialect(SQLiteDialect):
    """SQLite, with ``Passing`` as its only transient error and sqlite3.Error as the driver's."""

    def __init__(self, url: str):
        super().__init__(url)
        self.connects = 0

    def connect(self):
        self.connects += 1
        return super().connect()

    def transient(self, exc):
        return isinstance(exc, Passing)


def _engine(tmp_path, retry_s=5.0, dialect=None):
    sleeps: list[float] = []
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    engine = Engine(url, dialect or FakeDialect(url), clock=utcnow, retry_s=retry_s, lock_stale_s=60,
                    sleep=sleeps.append)
    return engine, sleeps


def _failing(times: int, exc: Exception):
    calls = []

    def operation(conn):
        calls.append(conn)
        if len(calls) <= times:
            raise exc
        return conn.execute("SELECT 42").fetchone()[0]

    return operation, calls


def test_a_transient_fault_is_retried_with_backoff_on_a_fresh_connection(tmp_path):
    engine, sleeps = _engine(tmp_path)
    operation, calls = _failing(3, Passing("connection dropped"))
    assert engine.call(operation) == 42
    assert len(calls) == 4 and engine.dialect.connects == 4  # a new connection each time
    assert sleeps == [0.05, 0.1, 0.2]  # doubling


def test_a_spent_budget_is_state_unavailable_and_then_fails_fast(tmp_path):
    engine, sleeps = _engine(tmp_path, retry_s=0.3)
    operation, calls = _failing(1000, Passing("server gone: postgresql://u:hunter2@db/x"))
    with pytest.raises(StateUnavailable) as info:
        engine.call(operation)
    assert "unavailable" in info.value.message and "hunter2" not in str(info.value) and info.value.exit_code == 3
    assert info.value.cause.startswith("Passing") and sleeps == [0.05, 0.1, 0.2]  # the next wait would pass 0.3 s
    tries = len(calls)
    with pytest.raises(StateUnavailable):
        engine.call(operation)
    assert len(calls) == tries + 1  # down: no new wait
    assert engine.call(_failing(0, Passing())[0]) == 42  # and back once a call succeeds


def test_a_refusal_is_not_retried(tmp_path):
    engine, sleeps = _engine(tmp_path)
    with pytest.raises(StateUnavailable) as info:
        engine.call(lambda conn: conn.execute("SELECT * FROM no_such_table"))
    assert "refused" in info.value.message and sleeps == []


def test_a_bug_is_raised_as_it_is(tmp_path):
    engine, _ = _engine(tmp_path)
    with pytest.raises(ZeroDivisionError):
        engine.call(lambda conn: 1 / 0)


def test_a_stop_cuts_the_retries_short(tmp_path):
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    engine = Engine(url, FakeDialect(url), clock=utcnow, retry_s=60, lock_stale_s=60, sleep=lambda s: None,
                    cancelled=lambda: True)
    with pytest.raises(StateUnavailable):
        engine.call(_failing(1000, Passing())[0])


def test_a_locked_sqlite_file_is_retried_until_it_is_free(tmp_path):
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    freed = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        blocker.execute("ROLLBACK")  # the other writer lets go after the first wait
        freed.set()

    engine = Engine(url, SQLiteDialect(url), clock=utcnow, retry_s=30, lock_stale_s=60, sleep=sleep)
    engine.call(lambda conn: conn.execute("CREATE TABLE t (x)"))
    blocker = sqlite3.connect(tmp_path / "engine.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    engine.call(lambda conn: engine.transaction(conn, lambda: engine.execute(conn, "INSERT INTO t VALUES (1)")))
    assert freed.is_set() and len(waits) == 1
    assert engine.query("SELECT x FROM t") == [(1,)]
    engine.close()
    blocker.close()


def test_a_locked_sqlite_file_past_the_budget_is_state_unavailable(tmp_path):
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    engine = Engine(url, SQLiteDialect(url), clock=utcnow, retry_s=0.5, lock_stale_s=60)
    engine.call(lambda conn: conn.execute("CREATE TABLE t (x)"))
    blocker = sqlite3.connect(tmp_path / "engine.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StateUnavailable) as info:
            engine.call(lambda conn: engine.transaction(conn, lambda: None))
        assert "locked" in info.value.cause
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        engine.close()
