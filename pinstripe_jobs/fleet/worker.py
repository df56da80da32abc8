"""The Celery side of the fleet: the app a worker runs, and the task that runs a batch of tenants.

``pinstripe worker`` starts a worker for the project's config; ``celery -A pinstripe_jobs.fleet.worker worker``
does the same with ``PINSTRIPE_CONFIG`` (or the config found from the working directory). A task runs its tenants
one by one through the runner's own per-tenant path (``Runner.run_one``: locks, workspace, services, retries,
timeouts, isolation, history) and returns one result per tenant. Before each tenant it checks the run's cancel
request (``pinstripe cancel``) and its sender's cancel marker in the state store, and a tenant that already has a
finished row of this invocation (a batch redelivered after its worker was killed) is not run again: its recorded
outcome is returned instead. Celery's own retries stay off; messages are acknowledged late and rejected when
their worker is lost, so a killed worker's batch goes to another worker.

Imported only by workers (Celery is an optional extra).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from pinstripe_jobs.errors import PinstripeError
from pinstripe_jobs.fleet.broker import TASK, make_app

if TYPE_CHECKING:
    from celery import Celery

    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.execution.runner import Runner
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.tenants import Tenant

HOST = os.uname().nodename
MAX_OUTPUT = 64 * 1024  # what a tenant printed, sent back with its result (the rest is cut, and says so)
NOT_SELECTED = "not in this run's tenant selection: gone from its tenant source, or no longer matched"


def worker_app(settings: Settings) -> Celery:
    """The app a worker runs: the fleet's app with the batch task registered (Celery's retries off)."""
    app = make_app(settings)
    _SETTINGS[:] = [settings]
    app.task(name=TASK, acks_late=True, reject_on_worker_lost=True, max_retries=0, ignore_result=False)(run_batch)
    return app


_WORKER: dict[tuple[int, str], Runner] = {}  # (pid, tenant source) -> a Runner of this process (made after the fork)
_LOCK = threading.Lock()


_SETTINGS: list[Settings] = []  # the worker's settings (made before the pool forks)


def current_settings() -> Settings:
    if not _SETTINGS:
        from pinstripe_jobs.config import load_settings

        _SETTINGS.append(load_settings())
    return _SETTINGS[0]


def _runner(selection: dict[str, Any]) -> Runner:
    """This process's runner for the batch's tenant source: the one of the invocation that sent it (its
    config, --tenants or PINSTRIPE_TENANTS), or this worker's own when the batch names none."""
    import json

    from pinstripe_jobs.execution.runner import Runner

    source = selection.get("tenants")
    key = (os.getpid(), json.dumps([source, selection.get("tenants_table")], default=str))
    with _LOCK:
        runner = _WORKER.get(key)
        if runner is None:
            import copy

            settings = copy.copy(current_settings())
            settings.executor = "local"  # the worker runs its tenants here
            if source is not None:
                settings.sources = {**settings.sources, "tenants": "the run that sent the batch"}
                settings.tenants = source
                settings.tenants_table = selection.get("tenants_table") or settings.tenants_table
            runner = _WORKER[key] = Runner(settings)
            from pinstripe_jobs.observers.telemetry import install

            install(runner)  # traces and metrics of each tenant's run, when on
        return runner


class _Captured(threading.local):
    buffer: _CappedOutput | None = None


_captured = _Captured()


class _CappedOutput:
    """What one tenant prints, sent back with its result: the first ``MAX_OUTPUT`` characters, and a
    visible marker saying how much was cut."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.cut = 0

    def write(self, text: str) -> None:
        room = MAX_OUTPUT - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        self.cut += max(0, len(text) - max(room, 0))

    def text(self) -> str:
        kept = "".join(self.parts)
        if not self.cut:
            return kept
        return (kept + ("" if kept.endswith("\n") else "\n") +
                f"[output cut: {self.cut} more characters not shown; a tenant's output on the fleet is capped at "
                f"{MAX_OUTPUT // 1024} KiB]\n")


class _ThreadStdout:
    """sys.stdout on a worker: what a tenant prints goes to its own buffer (sent back to the CLI with its
    result); anything else goes to the worker's own stdout."""

    def __init__(self, real: TextIO):
        self.real = real

    def write(self, text: str) -> int:
        buffer = _captured.buffer
        if buffer is None:
            return self.real.write(text)
        buffer.write(text)
        return len(text)

    def flush(self) -> None:
        if _captured.buffer is None:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _capture_stdout() -> None:
    if not isinstance(sys.stdout, _ThreadStdout):
        sys.stdout = _ThreadStdout(sys.stdout)


def _here(data: dict[str, Any]) -> dict[str, Any]:
    """A result of this worker: where it was made (the JSON's host and pid)."""
    return {**data, "host": HOST, "pid": os.getpid()}


def _plan(runner: Runner, job: str, options: dict[str, Any], invocation: str) -> Plan:
    """The invocation's plan, as the CLI made it: its options, and its tenant selection (the job's
    tenants_filter and --exclude-tenant apply through the plan's query)."""
    from pinstripe_jobs.model.plan import RunOptions

    values = {k: v for k, v in options.items() if k in RunOptions.FIELDS}
    if values.get("tick"):
        from datetime import datetime

        values["tick"] = datetime.fromisoformat(values["tick"])
    selection = options.get("selection") or {}
    values["exclude_ids"] = tuple(selection.get("exclude_ids") or ())
    return runner.plan(job, RunOptions(**values, invocation=invocation))


def _resolve(plan: Plan, tenants: list[Any], selection: dict[str, Any]) -> dict[str, Tenant]:
    """The batch's tenants as the invocation's selection reads them: in its source and the job's filter,
    not excluded, in its --tenant list and its --shard (those not: left out, so reported skipped)."""
    from pinstripe_jobs.model.plan import shard_of

    if plan.query is None:
        return {}
    only = {str(t) for t in selection.get("tenant_ids") or ()}
    shard = selection.get("shard")
    found = {}
    for tenant in plan.query.only_ids([str(t) for t in tenants]):
        if (only and str(tenant.id) not in only) or (shard and shard_of(tenant.id, shard[1]) != shard[0]):
            continue
        found[str(tenant.id)] = tenant
    return found


def run_batch(job: str, tenants: list[Any], options: dict[str, Any], invocation: str) -> dict[str, Any]:
    """Run ``tenants`` of ``job`` here; one result per tenant, in order. A problem with the job itself
    (its module is not on this worker, it does not load) is returned as ``error`` for the whole batch."""
    from pinstripe_jobs.model.results import skip_status
    from pinstripe_jobs.observers.base import NullObserver
    from pinstripe_jobs.store.cancels import cancel_reason

    _capture_stdout()
    selection = options.get("selection") or {}
    try:
        runner = _runner(selection)
        state = runner.state
        plan = _plan(runner, job, options, invocation)
        from pinstripe_jobs.observers.telemetry import adopt_trace

        adopt_trace(runner.settings, invocation, options.get("trace"))  # join the sender's trace
        found = _resolve(plan, tenants, selection)
        done = state.invocation_outcomes(job, invocation, tenants, ran_only=True)  # a resume runs the rest
    except PinstripeError as exc:
        return _here({"error": exc.render(), "exit_code": int(exc.exit_code)})
    results = []
    for tenant_id in tenants:
        key = "-" if tenant_id is None else str(tenant_id)
        if key in done:  # redelivered: it already ran in this invocation
            status, error = done[key]
            results.append(_here({"tenant": tenant_id, "status": status, "error": error, "redelivered": True}))
            continue
        request = state.cancel_request(invocation)  # `pinstripe cancel`, the dashboard
        cancelled = cancel_reason(request) if request else state.recall(f"cancel:{invocation}")  # or its sender
        tenant = found.get(key)
        reason = cancelled or (NOT_SELECTED if plan.multi_tenant and tenant is None else None)
        if reason:
            runner.record_skipped(plan, [tenant_id], reason)
            results.append(_here({"tenant": tenant_id, "status": skip_status(reason), "reason": reason}))
            continue
        buffer = _captured.buffer = _CappedOutput()
        try:
            result = runner.run_one(plan, tenant, NullObserver())
        finally:
            _captured.buffer = None
        results.append(_here({**result.to_json(), "tenant": tenant_id, "output": buffer.text() or None}))
        if runner.config_error or runner.state_error:
            return _here({"results": results, "error": runner.config_error or runner.state_error, "exit_code": 3})
    state.flush()
    from pinstripe_jobs.observers.telemetry import flush_traces, forget_trace

    forget_trace(invocation)
    flush_traces()
    return _here({"results": results})


def __getattr__(name: str) -> Celery:
    """``celery -A pinstripe_jobs.fleet.worker worker``: the app for PINSTRIPE_CONFIG (or the config found from
    the working directory), made on first use."""
    if name in ("app", "celery"):
        app = worker_app(current_settings())
        globals()["app"] = globals()["celery"] = app
        return app
    raise AttributeError(name)
