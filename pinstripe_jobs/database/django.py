"""Django, set up once and lazily, and the scope of one tenant's run (``pip install 'pinstripe-jobs[django]'``).

- ``django_settings = "proj.settings"`` in the config (else ``DJANGO_SETTINGS_MODULE``) names the settings;
  ``django.setup()`` runs on first need (listing tenants, or a run's scope), once per process.
- ``run_scope(mode, tenant)``: with django-tenants, the run executes inside the tenant's schema
  (``schema_context``); for any Django project, the thread's connections are then reset the way Django does
  at the end of a request (closed when unusable, past ``CONN_MAX_AGE``, or left inside a transaction).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pinstripe_jobs.errors import ConfigError

INSTALL_HINT = "Install the Django integration: pip install 'pinstripe-jobs[django]'."
_configured: str | None = None
_ready = False
_lock = threading.Lock()


def configure(settings_module: str | None) -> None:
    """Remember the config's ``django_settings`` (nothing is imported until Django is needed)."""
    global _configured
    _configured = settings_module


def setup(settings_module: str | None = None) -> None:
    """``django.setup()`` once per process, with a clear error for each way it can fail. The settings:
    ``settings_module``, else the config's last ``django_settings``, else ``DJANGO_SETTINGS_MODULE``."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        module = settings_module or _configured or os.environ.get("DJANGO_SETTINGS_MODULE")
        if not module:
            raise ConfigError("The tenants come from Django, but no Django settings module is named.",
                              'Set django_settings = "myproject.settings" in the config, or DJANGO_SETTINGS_MODULE.')
        try:
            import django
        except ImportError:
            raise ConfigError("The tenants come from Django, but Django is not installed.", INSTALL_HINT) from None
        from django.apps import apps

        if apps.ready:  # already set up by the project itself (manage.py pinstripe ...)
            _ready = True
            return
        os.environ["DJANGO_SETTINGS_MODULE"] = module
        try:
            django.setup()
        except Exception as exc:
            raise ConfigError(f"Django could not be set up with settings {module!r}: {type(exc).__name__}: {exc}",
                              "Check django_settings (a module importable from the config file's folder) "
                              "and the project's settings.") from None
        _ready = True


def uses_django(tenants: Any, settings_module: str | None = None) -> str | None:
    """``"django-tenants"``, ``"django"`` (a plain model, or ``django_settings`` set) or ``None``."""
    if tenants == "django-tenants":
        return "django-tenants"
    if (isinstance(tenants, str) and tenants.startswith("django:")) or settings_module:
        return "django"
    return None


@contextmanager
def run_scope(mode: str, tenant: Mapping[str, Any] | None, settings_module: str | None = None) -> Iterator[None]:
    """One run of a Django project's job: in its tenant's schema (django-tenants), connections reset after."""
    setup(settings_module)
    try:
        if mode == "django-tenants" and tenant is not None:
            _refuse_event_loop()
            from django_tenants.utils import schema_context

            with schema_context(tenant["schema_name"]):
                yield
        else:
            yield
    finally:
        reset_connections()


def _refuse_event_loop() -> None:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("An async def job cannot run inside a django-tenants schema: Django's connection is per "
                       "thread, shared by every task of the event loop. Write the job as a plain def run(ctx).")


def reset_connections() -> None:
    """What Django does after each request, in this thread: a connection left in a transaction, broken, or
    past ``CONN_MAX_AGE`` is closed; a healthy one is kept for the next run."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block or conn.needs_rollback:
            conn.close()
        else:
            conn.close_if_unusable_or_obsolete()
