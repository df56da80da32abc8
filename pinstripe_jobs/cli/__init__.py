"""The command line: the ``pinstripe`` group and its commands (thin shells over the execution path)."""
from pinstripe_jobs.cli.commands import main

__all__ = ["main"]
