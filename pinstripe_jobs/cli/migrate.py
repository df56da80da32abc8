"""``pinstripe migrate``: bring the configured state store to this release's schema version, and say from
which version to which.

Registered by ``register`` (called at the end of ``cli/commands.py`` with the shared option and error
decorators, so that this module does not import the command module: no import cycle)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.store.schema import SchemaChange

EPILOG = ("\b\nExamples:\n  pinstripe migrate\n  pinstripe migrate --json\n\n\b\nExit codes:\n"
          "  0   the state store is at this release's schema version (upgraded, created, or already)\n"
          "  3   the state store is not usable, or its schema is newer than this release knows (left untouched)\n"
          "\nEnvironment: PINSTRIPE_CONFIG (like --config), PINSTRIPE_STATE (the state store URL).")


def register(group: click.Group, *, project_options: Callable[..., Any], handle_errors: Callable[..., Any],
             load: Callable[..., Any]) -> click.Command:
    """Add ``migrate`` to ``group``."""

    @group.command("migrate", short_help="Upgrade the state store's tables to this release.", epilog=EPILOG)
    @click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
    @project_options
    @handle_errors
    def migrate_command(as_json: bool, config: str | None, jobs_dir: str | None, tenants: str | None) -> None:
        """Create the state store's tables, or upgrade them to this release's schema version (the numbered
        migrations above the database's version, in one transaction). Commands that run jobs do the same
        on their own; read-only commands (history, list-background-jobs) never do."""
        settings = load(config, jobs_dir, tenants)
        click.echo(report(migrate(settings), settings.state_url, as_json))

    return migrate_command


def migrate(settings: Settings) -> SchemaChange:
    """Open the store (which creates or upgrades its tables, as every command that runs jobs does) and
    return what that did."""
    from pinstripe_jobs.store.state import StateStore

    store = StateStore(settings.state_url, history_days=settings.history_days, retry_s=settings.state_retry_s,
                       lock_stale_s=settings.lock_stale_s)
    try:
        change: SchemaChange = store.schema
        return change
    finally:
        store.close()


def report(change: SchemaChange, url: str, as_json: bool) -> str:
    from pinstripe_jobs.errors import mask_secrets

    if as_json:
        import json

        return json.dumps({"state": mask_secrets(url), **change.as_dict()})
    return f"State store {mask_secrets(url)}: {change.describe()}."
