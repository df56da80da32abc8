"""The per-run ``ctx``: tenant, args, a logger, lazily created services and their cleanup.

Every execution (one tenant's run, or the single run of a non-tenant job) gets a fresh ``Workspace``.
The current one is held in a ``ContextVar`` so nested calls know which tenant they run for.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.registry.loading import describe_exception, import_ref

if TYPE_CHECKING:
    import logging

    from pinstripe_jobs.database import DatabaseSettings
    from pinstripe_jobs.model.results import Summary
    from pinstripe_jobs.tenants import Tenant

# ``ctx.run_background_job``: (job name, args, params, the calling workspace) -> the nested run's summary
Nested = Callable[[str, "tuple[Any, ...]", "dict[str, Any]", "Workspace | None"], "Summary"]

current_workspace: ContextVar[Workspace | None] = ContextVar("pinstripe_workspace", default=None)
_log_setup: Callable[[], None] | None = None


def on_first_log(setup: Callable[[], None]) -> None:
    """Run ``setup`` (configure log handlers) when a job first uses ``ctx.log``: logging costs start-up time."""
    global _log_setup
    _log_setup = setup


class ServiceFactories:
    """``name -> "module:factory"`` from the config, imported on first use and shared across workspaces."""

    def __init__(self, refs: dict[str, str], database: DatabaseSettings | None = None,
                 django: tuple[str, str | None] | None = None):
        self.refs = refs
        self.database = database  # [database]: ctx.db, a session bound to the run's tenant
        self.django = django  # a Django project: (mode, settings module); each run in its tenant's scope
        self._factories: dict[str, Callable[[Any], Any]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.refs

    def get(self, name: str) -> Callable[[Any], Any]:
        if name not in self._factories:
            try:
                factory = import_ref(self.refs[name], f"service '{name}'")
            except ConfigError as exc:
                raise ServiceConfigError(exc.message, exc.hint) from exc.__cause__
            if not callable(factory):
                raise ServiceConfigError(f"Service '{name}' ({self.refs[name]}) is not callable.",
                                         "A service factory is a function taking ctx and returning the service.")
            self._factories[name] = factory
        return self._factories[name]


class ServiceCleanupError(Exception):
    pass


class ServiceConfigError(ConfigError):
    """A service named in the config cannot be imported: the run stops (exit 3), it is not the job's fault."""


class Workspace:
    """What a job's ``run(ctx, ...)`` receives."""

    def __init__(self, *, job: str, tenant: Tenant | None, args: tuple[Any, ...], params: dict[str, Any],
                 factories: ServiceFactories, nested: Nested, attempt: int = 1, tick: Any = None,
                 limit: Callable[[str, Any], Any] | None = None):
        self.job = job
        self.tick = tick  # the scheduled tick (aware datetime) when the scheduler fired this run, else None
        self.tenant = tenant
        self.args = args
        self.params = params
        self.attempt = attempt
        self._factories = factories
        self._services: dict[str, Any] = {}
        self._teardowns: list[tuple[str, Callable[[], None]]] = []
        self._nested = nested
        self._limit = limit
        self._closed = False
        self._succeeded = False  # the run's outcome, for teardowns that depend on it (ctx.db commits or not)

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines carry the job and the tenant (created on first use)."""
        global _log_setup
        adapter = self.__dict__.get("_log")
        if adapter is None:
            from pinstripe_jobs.execution.logs import job_adapter

            setup, _log_setup = _log_setup, None
            if setup is not None:
                setup()
            adapter = self.__dict__["_log"] = job_adapter(self.job, self.tenant.id if self.tenant else None,
                                                          self.attempt)
        return adapter

    @property
    def db(self) -> Any:
        """``[database]``: a SQLAlchemy session bound to this run's tenant, opened on first use."""
        database = self._factories.database
        if database is None:  # no [database]: a service called "db", or the usual error
            return self.__dict__["db"] if "db" in self.__dict__ else self.__getattr__("db")
        if "_db" not in self.__dict__:
            if self._closed:
                raise RuntimeError("ctx.db used after its workspace was closed.")
            from pinstripe_jobs.database.session import open_run_session

            session, finish = open_run_session(database, self.tenant)
            self.__dict__["_db"] = session
            self._teardowns.append(("db", lambda: finish(self._succeeded)))
        return self.__dict__["_db"]

    def __getattr__(self, name: str) -> Any:
        factories = self.__dict__.get("_factories")
        if factories is None or name.startswith("_") or name not in factories:
            known = ", ".join(sorted(factories.refs)) if factories else ""
            raise AttributeError(f"ctx has no attribute or service {name!r}"
                                 + (f" (services: {known})" if known else " (no [services] configured)"))
        if self._closed:
            raise RuntimeError(f"Service {name!r} used after its workspace was closed.")
        value = self._create(name, factories.get(name))
        self._services[name] = value
        self.__dict__[name] = value
        return value

    def _create(self, name: str, factory: Callable[[Any], Any]) -> Any:
        made = factory(self)
        if inspect.isgenerator(made):
            value = next(made)

            def finish_generator() -> None:
                try:
                    next(made)
                except StopIteration:
                    return
                made.close()
                raise RuntimeError("service generator yielded more than once")

            self._teardowns.append((name, finish_generator))
            return value
        if hasattr(made, "__enter__") and hasattr(made, "__exit__"):
            value = made.__enter__()
            self._teardowns.append((name, lambda: made.__exit__(None, None, None)))
            return value
        close = getattr(made, "close", None)
        if callable(close):
            self._teardowns.append((name, close))
        return made

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Around the job's call: with Django tenants, inside the tenant's schema, connections reset after."""
        if self._factories.django is None:
            yield
            return
        from pinstripe_jobs.database.django import run_scope

        with run_scope(self._factories.django[0], self.tenant, self._factories.django[1]):
            yield

    def close(self, succeeded: bool = False) -> None:
        """Tear down services, newest first. Every teardown runs; the first failure is raised after.
        ``succeeded``: the run's outcome (ctx.db commits the run's transaction only then)."""
        self._closed = True
        self._succeeded = succeeded
        problems = []
        first: Exception | None = None
        while self._teardowns:
            name, teardown = self._teardowns.pop()
            try:
                teardown()
            except Exception as exc:
                first = first or exc
                problems.append(f"cleanup of service '{name}' failed: {describe_exception(exc)}")
        if problems:
            raise ServiceCleanupError("; ".join(problems)) from first  # its traceback shows where

    def limit(self, name: str, key: Any = None) -> Any:
        """A token of the named limit of ``[limits]`` (``with ctx.limit("partner_api"):`` or ``async with``),
        shared by every process and host on the state store; ``key`` gives each value its own bucket. The
        wait honours stops (``RunInterrupted``) and the run's timeout (see ``execution/limits.py``)."""
        if self._limit is None:
            raise RuntimeError("ctx.limit is not available here (no runner)")
        return self._limit(name, key)

    def run_background_job(self, name: str, *args: Any, **params: Any) -> Summary:
        """Run another job now: for this workspace's tenant only, or fanned out if there is none."""
        return self._nested(name, args, params, self)

    async def arun_background_job(self, name: str, *args: Any, **params: Any) -> Summary:
        import asyncio

        return await asyncio.to_thread(self._nested, name, args, params, self)

    def __repr__(self) -> str:
        tenant = self.tenant.id if self.tenant is not None else None
        return f"<Workspace job={self.job!r} tenant={tenant!r}>"
