"""Send the newsletter to every subscribed user of every active tenant."""

schedule = "0 * * * *"
multi_tenant = True


def tenants_filter(tenants):
    return tenants.where(active=True)


def run(ctx):
    for email in ctx.users.subscribed():
        ctx.mailer.send(email, f"{ctx.tenant.name} newsletter")
