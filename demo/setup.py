"""Create the demo's embedded SQLite databases on first use (python -m demo.setup): the tenants list in
demo/tenants.db, and each tenant's own database demo/data/tenant_<id>.db with its users and an outbox."""
from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

DB = Path(__file__).with_name("tenants.db")
DATA = Path(__file__).with_name("data")
TENANTS = [
    (1, "Acme", 1, "pro"),
    (2, "Globex", 1, "free"),
    (3, "Initech", 0, "free"),
    (4, "Umbrella", 1, "enterprise"),
]
USERS = {
    1: [("wile@acme.test", 1), ("road@acme.test", 0)],
    2: [("hank@globex.test", 1)],
    3: [("peter@initech.test", 1)],
    4: [("alice@umbrella.test", 1), ("bob@umbrella.test", 1)],
}


def tenant_db(tenant_id: int, data: Path = DATA) -> Path:
    return data / f"tenant_{tenant_id}.db"


def create(path: Path = DB, data: Path = DATA) -> bool:
    if path.exists():
        return False
    data.mkdir(exist_ok=True)
    for tenant_id, users in USERS.items():
        with sqlite3.connect(tenant_db(tenant_id, data)) as db:
            db.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL, "
                       "subscribed BOOLEAN NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, \"to\" VARCHAR(200) NOT NULL, "
                       "subject VARCHAR(200) NOT NULL, sent_at DATETIME)")
            db.execute("DELETE FROM users")
            db.executemany("INSERT INTO users (email, subscribed) VALUES (?, ?)", users)
    with sqlite3.connect(path) as db:  # last: its existence says the demo is set up
        db.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN, plan TEXT)")
        db.executemany("INSERT INTO tenants VALUES (?, ?, ?, ?)", TENANTS)
    return True


if __name__ == "__main__":
    if create():
        print(f"Created the demo databases: {DB} (tenants) and {DATA}/tenant_<id>.db (each tenant's data)",
              file=sys.stderr)
