"""Process isolation: one tenant's attempt in a forked child, so a crash, ``os._exit``, a memory blow-up
or leaked global state stays that tenant's failure, and a hung job can be stopped by its timeout."""
from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

from .results import FAILED, INTERRUPTED, TIMED_OUT, RunResult

if TYPE_CHECKING:
    from .runner import Plan, Runner
    from .tenants import Tenant

POLL_S = 0.02
KILL_AFTER_S = 1.0  # after SIGTERM, how long a child gets before SIGKILL


def run_in_child(runner: "Runner", plan: "Plan", tenant: "Tenant | None", attempt: int) -> RunResult:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(runner, plan, tenant, attempt, writer), daemon=True,
                            name=f"pinstripe-{plan.spec.name}")
    started = runner.clock()
    child.start()
    writer.close()
    tenant_id = None if tenant is None else tenant.id
    try:
        while True:
            if reader.poll(POLL_S):
                try:
                    payload = reader.recv()
                except (EOFError, OSError):
                    payload = None
                break
            if not child.is_alive():
                payload = reader.recv() if reader.poll(0) else None
                break
            elapsed = runner.clock() - started
            if plan.timeout and elapsed > plan.timeout:
                _stop(child)
                return RunResult(tenant_id, TIMED_OUT, elapsed, error=f"timed out after {plan.timeout:g}s")
            if runner.stop.grace_over():
                _stop(child)
                return RunResult(tenant_id, INTERRUPTED, elapsed, error="interrupted before it finished")
    finally:
        reader.close()
    child.join()
    duration = runner.clock() - started
    if payload is None:
        return RunResult(tenant_id, FAILED, duration, error=_death(child.exitcode))
    return RunResult(tenant_id, payload["status"], duration, error=payload["error"], traceback=payload["traceback"],
                     value=payload.get("value"))


def _stop(child) -> None:
    child.terminate()
    child.join(KILL_AFTER_S)
    if child.is_alive():
        child.kill()
        child.join()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"ChildProcessError: the tenant's process was killed by {name}"
    return f"ChildProcessError: the tenant's process exited with status {exitcode} before reporting a result"


def _child_main(runner: "Runner", plan: "Plan", tenant: "Tenant | None", attempt: int, writer: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a child stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    runner._state = None  # never share the parent's database connection; nested runs open their own
    runner._active = {}
    result = runner.attempt_here(plan, tenant, attempt)
    payload = {"status": result.status, "error": result.error, "traceback": result.traceback}
    try:
        writer.send({**payload, "value": result.value})
    except Exception:  # the return value does not pickle: report the outcome without it
        writer.send(payload)
    writer.close()
    os._exit(0)
