"""What a migration works with: one open connection inside the upgrade's transaction, and the few questions
a migration asks about the database (which tables and columns exist). Kept small and stable: released
migrations depend on it, so it only ever gains methods."""
from __future__ import annotations

from typing import Any, Protocol

PREFIX = "pinstripe%"  # the tables and indexes of pinstripe-jobs (a LIKE pattern)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db:
    """A connection (sqlite3 or psycopg, autocommit: the caller opens the transaction) and its dialect."""

    def __init__(self, conn: Any, *, sqlite: bool):
        self.conn = conn
        self.sqlite = sqlite

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Cursor:
        """Run one statement; ``?`` placeholders on both dialects."""
        cursor = self.conn.cursor()
        cursor.execute(sql if self.sqlite else sql.replace("?", "%s"), params)
        result: Cursor = cursor
        return result

    def script(self, sql: str) -> None:
        """Run ``;``-separated statements (no ``;`` inside them)."""
        for statement in sql.split(";"):
            if statement.strip():
                self.execute(statement.strip())

    @property
    def id_type(self) -> str:
        """The auto-incrementing primary key of the history table."""
        return "INTEGER PRIMARY KEY AUTOINCREMENT" if self.sqlite else "BIGSERIAL PRIMARY KEY"

    def tables(self) -> set[str]:
        """The pinstripe_* tables (on PostgreSQL, those of the current schema: the first of search_path)."""
        if self.sqlite:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (PREFIX,))
        else:
            rows = self.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                                "current_schema() AND table_name LIKE ?", (PREFIX,))
        return {str(row[0]) for row in rows.fetchall()}

    def columns(self, table: str) -> set[str]:
        """The columns of ``table`` (empty when it does not exist)."""
        if self.sqlite:
            return {str(row[1]) for row in self.execute(f"PRAGMA table_info({table})").fetchall()}
        rows = self.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                            "AND table_schema = current_schema()", (table,)).fetchall()
        return {str(row[0]) for row in rows}

    def indexes(self) -> set[str]:
        """The indexes on pinstripe_* tables (not those SQLite makes for primary keys)."""
        if self.sqlite:
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                "AND tbl_name LIKE ?", (PREFIX,))
        else:
            rows = self.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND "
                                "tablename LIKE ? AND indexname NOT LIKE ?", (PREFIX, "%_pkey"))
        return {str(row[0]) for row in rows.fetchall()}

    def add_column(self, table: str, column: str, kind: str) -> bool:
        """Add ``column`` unless ``table`` has it already; True when it was added."""
        if column in self.columns(table):
            return False
        self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        return True


class Migration(Protocol):
    """A module ``vNN``: its version number and the upgrade to it from the version before."""

    VERSION: int

    def upgrade(self, db: Db) -> None: ...
