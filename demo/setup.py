"""Create the demo's embedded SQLite tenants database on first use (python -m demo.setup)."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

DB = Path(__file__).with_name("tenants.db")
TENANTS = [
    (1, "Acme", 1, "pro"),
    (2, "Globex", 1, "free"),
    (3, "Initech", 0, "free"),
    (4, "Umbrella", 1, "enterprise"),
]
USERS = [
    (1, "wile@acme.test", 1), (1, "road@acme.test", 0),
    (2, "hank@globex.test", 1),
    (3, "peter@initech.test", 1),
    (4, "alice@umbrella.test", 1), (4, "bob@umbrella.test", 1),
]


def create(path: Path = DB) -> bool:
    if path.exists():
        return False
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN, plan TEXT)")
        db.execute("CREATE TABLE users (tenant_id INTEGER, email TEXT, subscribed BOOLEAN)")
        db.executemany("INSERT INTO tenants VALUES (?, ?, ?, ?)", TENANTS)
        db.executemany("INSERT INTO users VALUES (?, ?, ?)", USERS)
    return True


if __name__ == "__main__":
    if create():
        print(f"Created the demo tenants database {DB}", file=sys.stderr)
