"""Send one email now."""

multi_tenant = False


def run(ctx, to: str, subject: str):
    ctx.mailer.send(to, subject)
