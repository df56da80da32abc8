"""Dialects: which URL is which database, placeholders, a missing SQLite file, a clear error otherwise."""
from __future__ import annotations

import pytest

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.store.dialects import PostgresDialect, SQLiteDialect, dialect_for


def test_urls_pick_their_dialect():
    assert isinstance(dialect_for("sqlite:///x.db"), SQLiteDialect)
    for url in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgres://u@h/db"):
        assert isinstance(dialect_for(url), PostgresDialect)
    assert dialect_for("sqlite:///x.db").local and not dialect_for("postgresql://u@h/db").local


def test_an_unsupported_url_is_a_clear_config_error_with_the_password_masked():
    with pytest.raises(ConfigError) as info:
        dialect_for("mysql://u:topsecret@h/db")
    assert "only SQLite and PostgreSQL" in info.value.message and "topsecret" not in str(info.value)
    assert info.value.hint and info.value.exit_code == 3


def test_placeholders_and_begin():
    assert PostgresDialect("postgresql://h/db").sql("a = ? AND b = ?") == "a = %s AND b = %s"
    assert SQLiteDialect("sqlite:///x").sql("a = ?") == "a = ?"
    assert SQLiteDialect("sqlite:///x").begin == "BEGIN IMMEDIATE"
    assert PostgresDialect("postgresql://h/d").begin == "BEGIN"


def test_a_missing_sqlite_file(tmp_path):
    assert SQLiteDialect(f"sqlite:///{tmp_path / 'no.db'}").missing()
    (tmp_path / "yes.db").write_bytes(b"")
    assert not SQLiteDialect(f"sqlite:///{tmp_path / 'yes.db'}").missing()
    assert not SQLiteDialect("sqlite:///:memory:").missing() and not PostgresDialect("postgresql://h/d").missing()


def test_sqlite_retries_a_lock_but_not_a_statement_it_can_never_run(tmp_path):
    """A locked database is passing (retried); "LIKE or GLOB pattern too complex" is the statement's own fault
    and is answered at once (it was retried for the whole budget, then reported as an outage)."""
    import sqlite3

    dialect = SQLiteDialect(f"sqlite:///{tmp_path / 'x.db'}")
    conn = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as too_complex:
        conn.execute("SELECT 'a' LIKE ?", ("%" * 60_000,))
    assert not dialect.transient(too_complex.value) and dialect.driver_error(too_complex.value)
    holder = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(tmp_path / "x.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    assert dialect.transient(locked.value)
    holder.execute("ROLLBACK")
