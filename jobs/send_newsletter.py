"""Queue the newsletter for every subscribed user of every active tenant: one outbox row per message.

The rows are written in the run's transaction (ctx.db): they are committed when the tenant's run succeeds,
and a tenant whose run fails (a malformed address, say) leaves no partial rows behind.
"""
from sqlalchemy import select

from demo.models import Outbox, User

schedule = "0 * * * *"
multi_tenant = True


def tenants_filter(tenants):
    return tenants.where(active=True)


def run(ctx):
    subject = f"{ctx.tenant.name} newsletter"
    queued = 0
    for user in ctx.db.scalars(select(User).where(User.subscribed).order_by(User.id)):
        if "@" not in user.email:
            raise ValueError(f"user {user.id} has a malformed address {user.email!r}")
        ctx.db.add(Outbox(to=user.email, subject=subject))
        queued += 1
    print(f"    queued {queued} newsletter(s) for {ctx.tenant.name}")
    return queued
