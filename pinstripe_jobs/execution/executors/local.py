"""The "local" executor: this machine runs the tenants, spread the way the plan asks.

``async def`` jobs that are not isolated run as asyncio tasks (``tasks.AsyncioExecutor``); with a
concurrency above one, tenants run on worker threads (``threads.ThreadsExecutor``); otherwise one by one
in this thread (``inline.InlineExecutor``). Each module is imported only when chosen.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinstripe_jobs.execution.executors.base import Executor, TenantRunner
    from pinstripe_jobs.model.plan import Plan


def local_executor(runner: TenantRunner, plan: Plan) -> Executor:
    """The local executor that fits ``plan``."""
    if plan.spec.is_async and not plan.isolated:
        from pinstripe_jobs.execution.executors.tasks import AsyncioExecutor

        return AsyncioExecutor(runner)
    if plan.concurrency > 1:
        from pinstripe_jobs.execution.executors.threads import ThreadsExecutor

        return ThreadsExecutor(runner)
    from pinstripe_jobs.execution.executors.inline import InlineExecutor

    return InlineExecutor(runner)
