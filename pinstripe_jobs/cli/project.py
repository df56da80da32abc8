"""The options every command that reads the project shares (--config, --jobs-dir, --tenants), given to the
command as one ``Project`` by ``@with_project``; settings are loaded when the command asks (after it has
installed its signal handlers)."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def load(config: str | None, jobs_dir: str | None, tenants: str | None) -> Settings:
    from pinstripe_jobs.config import load_settings

    return load_settings(config, jobs_dir=jobs_dir, tenants=tenants)


class Project:
    """What --config, --jobs-dir and --tenants said; ``settings()`` loads (once) what they name."""

    def __init__(self, config: str | None = None, jobs_dir: str | None = None, tenants: str | None = None):
        self.config = config
        self.jobs_dir = jobs_dir
        self.tenants = tenants
        self.loaded: Settings | None = None

    def settings(self) -> Settings:
        if self.loaded is None:
            self.loaded = load(self.config, self.jobs_dir, self.tenants)
        return self.loaded

    def child_args(self) -> list[str]:
        """The same project for a child ``pinstripe`` process (absolute paths: the child may run elsewhere)."""
        settings = self.settings()
        args = []
        if settings.config_path is not None:
            args += ["--config", str(settings.config_path)]
        if self.jobs_dir:
            args += ["--jobs-dir", str(settings.jobs_dir)]
        if self.tenants:
            args += ["--tenants", self.tenants]
        return args


def project_options(func: F) -> F:
    """--config, --jobs-dir and --tenants (shown last in the help, in this order)."""
    func = click.option("--tenants", "tenants", metavar="SOURCE", default=None,
                        help="Tenant source, overriding the config (URL, .json/.jsonl/.csv, module:callable).")(func)
    func = click.option("--jobs-dir", metavar="DIR", default=None, help="Jobs folder, overriding the config.")(func)
    func = click.option("--config", "config", metavar="PATH", default=None,
                        help="Config file (pinstripe.toml or pyproject.toml); default: found from the cwd "
                             "upward.")(func)
    return func


def with_project(func: Callable[..., Any]) -> Callable[..., Any]:
    """The shared options, passed to the command as ``project: Project``."""

    @functools.wraps(func)
    def command(*args: Any, config: str | None, jobs_dir: str | None, tenants: str | None, **kwargs: Any) -> Any:
        return func(*args, project=Project(config, jobs_dir, tenants), **kwargs)

    return project_options(command)


def handle_errors(func: F) -> F:
    """Kept for commands written before the group mapped errors: the ``pinstripe`` group now turns every
    command's errors into their message and exit code, so this changes nothing."""
    return func


def complete_job_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from pinstripe_jobs.registry.jobs import JobRegistry

        settings = load(ctx.params.get("config"), ctx.params.get("jobs_dir"), ctx.params.get("tenants"))
        return [name for name in JobRegistry(settings).names() if name.startswith(incomplete)]
    except Exception:
        return []
