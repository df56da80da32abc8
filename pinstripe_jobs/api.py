"""The Python API: ``run_background_job`` and its awaitable form."""
from __future__ import annotations

import os
from typing import Any

from pinstripe_jobs.errors import JobFailed
from pinstripe_jobs.execution.workspace import current_workspace
from pinstripe_jobs.model.results import Summary


def run_background_job(name: str, *args: Any, config: str | os.PathLike[str] | None = None, **params: Any) -> Summary:
    """Run job ``name`` now and return its ``Summary`` (``.runs`` holds each run's outcome).

    Called inside a running job, it runs for that job's tenant only. Raises ``JobFailed`` when any run
    fails (its ``__cause__`` is the first original exception), ``UsageError``/``ConfigError`` on bad input.
    """
    workspace = current_workspace.get()
    if workspace is not None and config is None:
        return workspace.run_background_job(name, *args, **params)
    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.model.plan import RunOptions

    runner = Runner(load_settings(config))
    try:
        from pinstripe_jobs.observers.base import NullObserver
        from pinstripe_jobs.observers.telemetry import observe

        summary = runner.run(name, RunOptions(args=args, params=params, trigger="api", keep_runs=True),
                             observe(runner, NullObserver()))
    finally:
        runner.close()
    if summary.error:  # the tenant source, the state store or a service broke mid-run (exit 3 on the CLI)
        from pinstripe_jobs.errors import ConfigError

        label, _, rest = summary.error.partition(": ")
        message, _, hint = (rest if label.endswith("error") else summary.error).partition("\n")
        raise ConfigError(message, hint or None)
    if summary.failures:
        raise JobFailed(summary) from summary.failures[0].exception
    return summary


async def arun_background_job(name: str, *args: Any, config: str | os.PathLike[str] | None = None,
                              **params: Any) -> Summary:
    """The awaitable form: runs the job in a worker thread so the caller's event loop stays free."""
    import asyncio

    return await asyncio.to_thread(run_background_job, name, *args, config=config, **params)
