"""Services the demo jobs use through ctx (see [tool.pinstripe.services] in pyproject.toml). The tenant's
data needs no service: ctx.db is the tenant's database ([tool.pinstripe.database])."""
from __future__ import annotations


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
