"""Services the demo jobs use through ctx (see [tool.pinstripe.services] in pyproject.toml)."""
from __future__ import annotations

import sqlite3

from .setup import DB


class Mailer:
    def __init__(self, tenant):
        self.tenant = tenant
        self.sent = 0

    def send(self, to: str, subject: str) -> None:
        self.sent += 1
        print(f"    mail to {to}: {subject}")


def mailer(ctx):
    """One mailer per workspace; the code after `yield` runs when the workspace ends."""
    service = Mailer(ctx.tenant)
    yield service
    ctx.log.debug("mailer sent %d message(s)", service.sent)


def users(ctx):
    """The tenant's users, from the demo database (closed when the workspace ends)."""
    return _Users(ctx.tenant.id)


class _Users:
    def __init__(self, tenant_id):
        self.tenant_id = tenant_id
        self.db = sqlite3.connect(DB)

    def subscribed(self) -> list[str]:
        rows = self.db.execute("SELECT email FROM users WHERE tenant_id = ? AND subscribed", (self.tenant_id,))
        return [email for (email,) in rows]

    def close(self) -> None:
        self.db.close()
