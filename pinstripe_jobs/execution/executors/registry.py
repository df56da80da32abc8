"""Executors by name: ``executor = "local"`` (the default) or ``"celery"`` in the config, ``--executor``.

Each name maps to a factory ``(runner, plan) -> Executor``, imported only when that name is used (the
fleet needs Celery, an optional extra, and start-up time matters).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pinstripe_jobs.errors import ConfigError

if TYPE_CHECKING:
    from pinstripe_jobs.execution.executors.base import Executor, TenantRunner
    from pinstripe_jobs.model.plan import Plan

Factory = Callable[["TenantRunner", "Plan"], "Executor"]


def _local(runner: TenantRunner, plan: Plan) -> Executor:
    from pinstripe_jobs.execution.executors.local import local_executor

    return local_executor(runner, plan)


def _celery(runner: TenantRunner, plan: Plan) -> Executor:
    from pinstripe_jobs.fleet.executor import FleetExecutor

    return FleetExecutor(runner, plan.options.deadline)


EXECUTORS: dict[str, Factory] = {"local": _local, "celery": _celery}


def executor_for(name: str, runner: TenantRunner, plan: Plan) -> Executor:
    """The executor called ``name`` for ``plan``. An unknown name is a configuration error (exit 3)."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise ConfigError(f"Unknown executor {name!r}: the executors are {', '.join(map(repr, EXECUTORS))}.",
                          'Set executor = "local" (this machine) or "celery" (a worker fleet) in the config, '
                          "PINSTRIPE_EXECUTOR, or --executor.")
    return factory(runner, plan)
