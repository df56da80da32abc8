"""``python manage.py pinstripe run-background-job --name X``: the pinstripe CLI inside a Django project."""
from __future__ import annotations

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run pinstripe (background jobs, once per tenant) in this project: manage.py pinstripe --help"

    def run_from_argv(self, argv: list[str]) -> None:
        from pinstripe_jobs.cli import main

        main(args=argv[2:], prog_name=f"{argv[0]} pinstripe")
