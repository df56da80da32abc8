"""Deliver each tenant's pending notifications."""

schedule = "*/5 * * * *"


def run(ctx):
    print(f"    delivered notifications for {ctx.tenant.name}")
