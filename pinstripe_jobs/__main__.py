"""``python -m pinstripe_jobs``: the same as the ``pinstripe`` command."""
from pinstripe_jobs.cli import main

main(prog_name="pinstripe")
