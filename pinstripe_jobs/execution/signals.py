"""Stopping cleanly: a ``StopFlag`` that signal handlers set, and the handlers themselves.

Handlers only set the flag; the fan-out loops check it before starting each tenant. Escalation is the
one exception: when the grace period is over (or on a second signal) a job that the *main thread* is
running is interrupted by raising ``RunInterrupted`` into it; jobs on worker threads get the same
exception from the loop, and child processes are terminated.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

received: int | None = None  # the first SIGINT/SIGTERM this process got while handlers were installed


def exit_code_for(signum: int | None) -> int:
    """130 for SIGINT, 143 for SIGTERM (128 + the signal's number)."""
    return 128 + (signum or signal.SIGINT)


class RunInterrupted(BaseException):
    """Raised into a running job when its grace period is over or a second signal arrives, and into a
    read that a signal cuts short. ``signum``: the signal that caused it, when known."""

    def __init__(self, *args: object, signum: int | None = None):
        super().__init__(*args)
        self.signum = signum


class StopFlag:
    def __init__(self, grace: float = 30.0) -> None:
        self.event = threading.Event()
        self.signal: int | None = None
        self.cancelled: str | None = None  # why, when the invocation was cancelled (`pinstripe cancel`)
        self.requested_at: float | None = None
        self.aborted = False
        self.grace = grace
        self.armed = False  # handlers installed (stop_on_signals): a KeyboardInterrupt is not a Ctrl-C
        self.escalates = False  # ... and they interrupt running jobs after the grace period
        self._in_job: set[int] = set()  # idents of threads that are inside a job's code right now
        self._blocking: list[bool] = []  # the main thread's interruptible waits (True: only after the grace)

    def request(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
            self.requested_at = time.monotonic()
        self.event.set()

    def cancel(self, reason: str) -> None:
        """The invocation was cancelled (from any thread, e.g. the one that polls the store): as a signal
        would, no new tenant starts and running ones get the grace period (then, with the handlers installed
        and escalation on, they are interrupted), but the run ends ``cancelled`` (exit 5), not interrupted."""
        if self.requested_at is None:
            self.cancelled = reason
            self.requested_at = time.monotonic()
            if self.armed and self.escalates and self.grace >= 0:
                signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))  # SIGALRM: the main thread's handler
        self.event.set()

    def abort(self) -> None:
        """Stop waiting for running jobs: interrupt them now."""
        self.aborted = True
        self.event.set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def grace_over(self) -> bool:
        if self.aborted:
            return True
        return self.requested_at is not None and time.monotonic() >= self.requested_at + self.grace

    @contextmanager
    def job_running(self) -> Iterator[None]:
        """Marks this thread as inside a job's code: only there may ``RunInterrupted`` be raised into it."""
        ident = threading.get_ident()
        self._in_job.add(ident)
        try:
            yield
        finally:
            self._in_job.discard(ident)

    @contextmanager
    def interruptible(self, until_grace: bool = False) -> Iterator[None]:
        """Marks a wait of the main thread on a database that a signal may cut short by raising
        ``RunInterrupted``, so a server that never answers does not outlast a stop request. Reads (config,
        tenants) are cut by the first signal; writes (``until_grace``: history rows) only when the grace
        period is over, so a run that is finishing still records its outcome. Other threads: no effect."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._blocking.append(until_grace)
        try:
            yield
        finally:
            self._blocking.pop()

    def interruptible_write(self) -> _Region:
        """``interruptible(until_grace=True)`` as a plain object: it wraps every state store call."""
        return _Region(self)

    def cut_short(self, grace_over: bool = False) -> None:
        """Called from a signal handler (main thread): end the innermost interruptible wait in progress."""
        if self._blocking and (grace_over or not self._blocking[-1]):
            raise RunInterrupted(signum=self.signal)  # each region pops itself as the exception unwinds

    def escalate(self) -> None:
        """Called from a signal handler (main thread): interrupt the job the main thread runs, if any."""
        ident = threading.main_thread().ident
        if ident in self._in_job:
            self._in_job.discard(ident)
            raise RunInterrupted()

    def interrupt_threads(self) -> int:
        """Raise ``RunInterrupted`` in every worker thread that is inside a job (best effort: it lands at
        the thread's next Python instruction, so a blocking call finishes first)."""
        import ctypes

        main = threading.main_thread().ident
        count = 0
        for ident in list(self._in_job):
            if ident != main:
                count += ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                                    ctypes.py_object(RunInterrupted))
        return count


class _Region:
    __slots__ = ("flag", "active")

    def __init__(self, flag: StopFlag):
        self.flag = flag
        self.active = False

    def __enter__(self) -> None:
        if threading.get_ident() == _MAIN:
            self.flag._blocking.append(True)
            self.active = True

    def __exit__(self, *exc: object) -> None:
        if self.active:
            self.flag._blocking.pop()


_MAIN = threading.main_thread().ident


@contextmanager
def stop_on_signals(flag: StopFlag, *, escalate: bool = True) -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set ``flag``; after ``flag.grace`` seconds, or on a second signal, running jobs are
    interrupted (``escalate``). Outside the main thread this installs nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        flag.abort()
        flag.cut_short(grace_over=True)
        if escalate:
            flag.escalate()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        global received
        received = received or signum
        if flag.requested:  # the second signal: abort at once
            on_alarm(signum, frame)
            return
        flag.request(signum)
        if escalate and flag.grace >= 0:
            signal.setitimer(signal.ITIMER_REAL, max(flag.grace, 0.001))
        flag.cut_short()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, on_alarm)
    flag.armed, flag.escalates = True, escalate
    try:
        yield flag
    finally:
        flag.armed = flag.escalates = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, old in previous.items():
            signal.signal(sig, old)
