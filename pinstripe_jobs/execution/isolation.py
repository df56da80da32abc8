"""Process isolation: one tenant's attempt in a forked child, so a crash, ``os._exit``, a memory blow-up
or leaked global state stays that tenant's failure, and a hung job can be stopped by its timeout.

The child is safe to fork from a threaded parent: it never touches a stream, lock or connection of the
parent (its stdout is a fresh pipe whose text the parent passes on, its stderr a fresh stream on fd 2).
It runs in its own process group, so a signal to the parent's group (systemd, ``timeout``, Ctrl-C) does
not kill it: the parent decides, giving it the grace period. A timeout or an interrupt kills the whole
group (the job's own child processes too), and the child dies with its parent (``PR_SET_PDEATHSIG``).

This module knows nothing of the runner: it is handed the function to run in the child.
"""
from __future__ import annotations

import codecs
import os
import pickle
import select
import signal
import sys
from collections.abc import Callable
from typing import Any

from pinstripe_jobs.model.results import FAILED, INTERRUPTED, TIMED_OUT, RunResult

POLL_S = 0.02
KILL_AFTER_S = 1.0  # after SIGTERM, how long the child's group gets before SIGKILL
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run_in_child(attempt: Callable[[], RunResult], tenant_id: Any, *, timeout: float | None,
                 stopping: Callable[[], bool], clock: Callable[[], float]) -> RunResult:
    """Run ``attempt()`` in a forked child and return its result. ``stopping()`` true: the grace period
    is over, stop the child now."""
    result_r, result_w = os.pipe()
    out_r, out_w = os.pipe()
    sys.stdout.flush()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # no group signal before setpgid
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (measured through its effects)
            os.close(result_r)
            os.close(out_r)
            _child(attempt, result_w, out_w, old_mask)
        try:
            os.setpgid(pid, pid)
        except OSError:  # the child did it first, or is already gone
            pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    os.close(result_w)
    os.close(out_w)
    started = clock()
    return _watch(pid, result_r, out_r, tenant_id, timeout, stopping, clock, started)


def _watch(pid: int, result_r: int, out_r: int, tenant_id: Any, timeout: float | None,
           stopping: Callable[[], bool], clock: Callable[[], float], started: float) -> RunResult:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    payload = bytearray()
    open_fds = {result_r, out_r}
    status: int | None = None
    outcome: RunResult | None = None
    try:
        while open_fds:
            ready, _, _ = select.select(list(open_fds), [], [], POLL_S)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                elif fd == out_r:
                    _pass_on(decoder.decode(chunk))
                else:
                    payload += chunk
            if status is None:
                done, status_now = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = status_now
                    _drain(open_fds, out_r, payload, decoder)
                    break  # a grandchild may hold the pipes open: do not wait for their end
            elapsed = clock() - started
            if timeout and elapsed > timeout:
                outcome = RunResult(tenant_id, TIMED_OUT, elapsed, error=f"timed out after {timeout:g}s")
                break
            if stopping():
                outcome = RunResult(tenant_id, INTERRUPTED, elapsed, error="interrupted before it finished")
                break
    finally:
        if status is None:
            status = _kill_group(pid)
        else:
            _kill_group_quietly(pid)  # what the job left behind in its group goes with it
        _pass_on(decoder.decode(b"", final=True))
        os.close(result_r)
        os.close(out_r)
    if outcome is not None:
        return outcome
    duration = clock() - started
    try:
        data = pickle.loads(bytes(payload)) if payload else None
    except Exception:
        data = None
    if data is None:
        return RunResult(tenant_id, FAILED, duration, error=_death(status))
    return RunResult(tenant_id, data["status"], duration, error=data["error"], traceback=data["traceback"],
                     value=data.get("value"), exception=data.get("exception"))


def _drain(open_fds: set[int], out_r: int, payload: bytearray, decoder: codecs.IncrementalDecoder) -> None:
    """Read what the dead child left in the pipes, without blocking."""
    for fd in list(open_fds):
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if fd == out_r:
                _pass_on(decoder.decode(chunk))
            else:
                payload += chunk


def _pass_on(text: str) -> None:
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()


def _kill_group(pid: int) -> int:
    """SIGTERM the child's process group, SIGKILL it after ``KILL_AFTER_S``; reap the child."""
    import time

    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + KILL_AFTER_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _kill_group_quietly(pid)
            return status
        time.sleep(POLL_S)
    _kill_group_quietly(pid)
    return os.waitpid(pid, 0)[1]


def _kill_group_quietly(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _death(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"ChildProcessError: the tenant's process was killed by {name}"
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    return f"ChildProcessError: the tenant's process exited with status {code} before reporting a result"


def _child(attempt: Callable[[], RunResult], result_w: int, out_w: int,
           old_mask: set[int | signal.Signals]) -> None:  # pragma: no cover
    """The child: its own process group, dies with the parent, fresh streams; reports one result."""
    try:
        os.setpgid(0, 0)
        _die_with_parent()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a child stops
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # drops a group signal that came before setpgid
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _fresh_streams(out_w)
        result = attempt()
        payload = {"status": result.status, "error": result.error, "traceback": result.traceback}
        try:
            data = pickle.dumps({**payload, "value": result.value, "exception": result.exception})
        except Exception:  # the return value does not pickle: report the outcome without it
            data = pickle.dumps(payload)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        with os.fdopen(result_w, "wb") as fh:
            fh.write(data)
    finally:
        os._exit(0)


def _die_with_parent() -> None:  # pragma: no cover - child only
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _fresh_streams(out_w: int) -> None:  # pragma: no cover - child only
    """New stdout (a pipe to the parent) and stderr (fd 2) objects: the parent's may be locked by one of
    its threads that does not exist here. Log handlers are moved onto the new stderr."""
    import io
    import logging

    sys.stdout = io.TextIOWrapper(io.FileIO(out_w, "w", closefd=True), encoding="utf-8", errors="replace",
                                  line_buffering=True, write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(2), "w", closefd=True), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True, write_through=True)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.stream = sys.stderr  # not setStream(): it would flush the old, maybe locked, stream
