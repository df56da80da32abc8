"""Deliver each tenant's pending notifications: send its unsent outbox rows and mark them sent."""
import datetime as dt

from sqlalchemy import select

from demo.models import Outbox

schedule = "*/5 * * * *"


def run(ctx):
    pending = ctx.db.scalars(select(Outbox).where(Outbox.sent_at.is_(None)).order_by(Outbox.id)).all()
    for message in pending:
        ctx.mailer.send(message.to, message.subject)
        message.sent_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    print(f"    delivered {len(pending)} notification(s) for {ctx.tenant.name}")
    return len(pending)
