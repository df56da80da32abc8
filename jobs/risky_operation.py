"""An operation that fails, to show how failures are reported."""

multi_tenant = False


def run(ctx):
    raise RuntimeError("the risky operation failed")
