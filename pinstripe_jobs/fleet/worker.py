"""The Celery side of the fleet: the app a worker runs, and the task that runs a batch of tenants.

``pinstripe worker`` starts a worker for the project's config; ``celery -A pinstripe_jobs.fleet.worker worker``
does the same with ``PINSTRIPE_CONFIG`` (or the config found from the working directory). A task runs its
tenants one by one through the runner's own per-tenant path (``Runner.run_one``: locks, workspace,
services, retries, timeouts, isolation, history) and returns one result per tenant. Before each tenant it
checks the run's cancel marker in the state store, and a tenant that already has a finished row of this
invocation (a batch redelivered after its worker was killed) is not run again: its recorded outcome is
returned instead. Celery's own retries stay off; messages are acknowledged late and rejected when their
worker is lost, so a killed worker's batch goes to another worker.

Imported only by workers (Celery is an optional extra).
"""
from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any

from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.fleet.broker import TASK, make_app

HOST = os.uname().nodename
MAX_OUTPUT = 64 * 1024  # what a tenant printed, sent back with its result (the rest is cut)


def worker_app(settings):
    """The app a worker runs: the fleet's app with the batch task registered (Celery's retries off)."""
    app = make_app(settings)
    _SETTINGS[:] = [settings]
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True, max_retries=0, ignore_result=False)(run_batch)
    return app


_WORKER: dict[int, Any] = {}  # pid -> the Runner of this worker process (made after the fork)
_LOCK = threading.Lock()


_SETTINGS: list = []  # the worker's settings (made before the pool forks)


def current_settings():
    if not _SETTINGS:
        from pinstripe_jobs.config import load_settings

        _SETTINGS.append(load_settings())
    return _SETTINGS[0]


def _runner():
    from pinstripe_jobs.execution.runner import Runner

    with _LOCK:
        runner = _WORKER.get(os.getpid())
        if runner is None:
            import copy

            settings = copy.copy(current_settings())
            settings.executor = "local"  # the worker runs its tenants here
            runner = _WORKER[os.getpid()] = Runner(settings)
            from pinstripe_jobs.observers.telemetry import install

            install(runner)  # traces and metrics of each tenant's run, when on
        return runner


class _Captured(threading.local):
    buffer: io.StringIO | None = None


_captured = _Captured()


class _ThreadStdout:
    """sys.stdout on a worker: what a tenant prints goes to its own buffer (sent back to the CLI with its
    result); anything else goes to the worker's own stdout."""

    def __init__(self, real):
        self.real = real

    def write(self, text: str) -> int:
        buffer = _captured.buffer
        if buffer is None:
            return self.real.write(text)
        if buffer.tell() < MAX_OUTPUT:
            buffer.write(text[:MAX_OUTPUT - buffer.tell()])
        return len(text)

    def flush(self) -> None:
        if _captured.buffer is None:
            self.real.flush()

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def _capture_stdout() -> None:
    if not isinstance(sys.stdout, _ThreadStdout):
        sys.stdout = _ThreadStdout(sys.stdout)


def run_batch(job: str, tenants: list, options: dict, invocation: str) -> dict:
    """Run ``tenants`` of ``job`` here; one result per tenant, in order. A problem with the job itself
    (its module is not on this worker, it does not load) is returned as ``error`` for the whole batch."""
    from pinstripe_jobs.model.plan import RunOptions
    from pinstripe_jobs.model.results import SKIPPED

    _capture_stdout()
    try:
        runner = _runner()
        state = runner.state
        values = {k: v for k, v in options.items() if k in RunOptions.FIELDS}
        if values.get("tick"):
            from datetime import datetime

            values["tick"] = datetime.fromisoformat(values["tick"])
        plan = runner.plan(job, RunOptions(**values, invocation=invocation))
        from pinstripe_jobs.observers.telemetry import adopt_trace

        adopt_trace(runner.settings, invocation, options.get("trace"))  # join the sender's trace
        if plan.multi_tenant:
            found = {str(t.id): t for t in plan.query.only_ids([str(t) for t in tenants])}
        else:
            found = {}
        done = state.invocation_outcomes(job, invocation, tenants)
    except PinstripeError as exc:
        return {"error": exc.render(), "exit_code": int(exc.exit_code), "host": HOST, "pid": os.getpid()}
    results = []
    for tenant_id in tenants:
        key = "-" if tenant_id is None else str(tenant_id)
        if key in done:  # redelivered: it already ran in this invocation
            status, error = done[key]
            results.append({"tenant": tenant_id, "status": status, "error": error, "redelivered": True,
                            "host": HOST, "pid": os.getpid()})
            continue
        cancelled = state.recall(f"cancel:{invocation}")
        if cancelled:
            results.append({"tenant": tenant_id, "status": SKIPPED, "reason": cancelled, "host": HOST,
                            "pid": os.getpid()})
            runner.record_skipped(plan, [tenant_id], cancelled)
            continue
        tenant = found.get(key) if plan.multi_tenant else None
        if plan.multi_tenant and tenant is None:
            reason = "no longer in the tenant source (as this worker reads it)"
            runner.record_skipped(plan, [tenant_id], reason)
            results.append({"tenant": tenant_id, "status": SKIPPED, "reason": reason, "host": HOST,
                            "pid": os.getpid()})
            continue
        _captured.buffer = io.StringIO()
        try:
            result = runner.run_one(plan, tenant)
        finally:
            output, _captured.buffer = _captured.buffer.getvalue(), None
        data = result.to_json()
        data.update(tenant=tenant_id, host=HOST, pid=os.getpid(), output=output or None)
        results.append(data)
        if runner.config_error or runner.state_error:
            return {"results": results, "error": runner.config_error or runner.state_error, "exit_code": 3,
                    "host": HOST, "pid": os.getpid()}
    state.flush()
    from pinstripe_jobs.observers.telemetry import flush_traces, forget_trace

    forget_trace(invocation)
    flush_traces()
    return {"results": results, "host": HOST, "pid": os.getpid()}


def __getattr__(name: str):
    """``celery -A pinstripe_jobs.fleet.worker worker``: the app for PINSTRIPE_CONFIG (or the config found from
    the working directory), made on first use."""
    if name in ("app", "celery"):
        app = worker_app(current_settings())
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(name)
