"""Exceptions that carry a message, a hint and an exit code, and the named exit codes.

Deep code raises these; only ``cli.py`` turns them into exit codes.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Any, Protocol

from pinstripe_jobs.model.status import Status


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # a run failed
    USAGE = 2  # bad command line: unknown job, bad arguments, bad --tenant
    CONFIG = 3  # bad configuration, broken job module, unreachable tenant source
    SKIPPED = 4  # a run was skipped because the job was already running
    CANCELLED = 5  # the invocation was cancelled (`pinstripe cancel`, the dashboard)
    TIMED_OUT = 124  # a run timed out and none failed otherwise
    INTERRUPTED = 130  # SIGINT
    TERMINATED = 143  # SIGTERM


# Bounded repetitions keep this linear in the text's length (an unbounded scheme or password part made
# it quadratic: minutes for a 200 kB exception message).
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]{0,40}://[^:/@\s]{0,256}:)(?P<pw>[^@\s]{0,1024})(?P<at>@)")


def mask_secrets(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``."""
    text = str(text)
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)


def cap(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit + 40
    return f"{text[:limit - 40]} … [{cut} more characters]"


class PinstripeError(Exception):
    """An error the user can fix. ``str()`` gives the message; ``hint`` says how to fix it."""

    exit_code: ExitCode = ExitCode.CONFIG
    label = "Error"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(mask_secrets(message))
        self.message = mask_secrets(message)
        self.hint = mask_secrets(hint) if hint else None

    def render(self) -> str:
        text = f"{self.label}: {self.message}"
        if self.hint:
            text += f"\n{self.hint}"
        return text


class UsageError(PinstripeError):
    exit_code = ExitCode.USAGE
    label = "Usage error"


class ConfigError(PinstripeError):
    exit_code = ExitCode.CONFIG
    label = "Configuration error"


class UnknownJob(UsageError):
    pass


class JobImportError(ConfigError):
    """A job module exists but raised while importing (or lacks ``run``)."""

    def __init__(self, name: str, path: str, line: int | None, error: str, hint: str | None = None):
        where = f"{path}:{line}" if line else path
        super().__init__(
            f"Job '{name}' could not be loaded: {where}: {error}",
            hint or "Fix the job module; run `pinstripe list-background-jobs` to see every job's state.",
        )
        self.job_name = name
        self.path = path
        self.line = line
        self.error = error


class TenantSourceError(ConfigError):
    pass


class _Run(Protocol):
    """What ``JobFailed`` reads of a run (a ``model.results.RunResult``; not imported: it imports this module)."""

    @property
    def tenant(self) -> Any: ...

    @property
    def status(self) -> str: ...

    @property
    def error(self) -> str | None: ...


class _Runs(Protocol):
    """What ``JobFailed`` reads of a job run (a ``model.results.Summary``)."""

    @property
    def job(self) -> str: ...

    @property
    def runs(self) -> Sequence[_Run] | None: ...


class JobFailed(Exception):
    """Raised by the Python API when one or more runs of a job failed.

    ``result`` carries the per-run outcomes; ``__cause__`` is the first original exception.
    """

    exit_code = ExitCode.FAILED

    def __init__(self, result: _Runs):
        self.result = result
        lines = [f"Background job '{result.job}' failed:"]
        for run in result.runs or ():
            if run.status not in (Status.SUCCEEDED, Status.SKIPPED):
                who = "no tenant" if run.tenant is None else f"tenant {run.tenant}"
                lines.append(f"  {who}: {run.status}: {run.error}")
        super().__init__("\n".join(lines))


class RetryAfter(Exception):  # noqa: N818 - the name says what a job asks for, as the HTTP header does
    """Raised by a job: try this tenant's run again after ``seconds`` (0 to 86400), within the same
    invocation, without holding its lock or slots meanwhile (each attempt is recorded). At most the job's
    ``max_retry_after`` times; then the run is failed with this error."""

    def __init__(self, seconds: float, reason: str = ""):
        seconds = float(seconds)
        if not 0 <= seconds <= 86400:  # NaN too
            raise ValueError(f"RetryAfter seconds must be at least 0 and at most 86400, got {seconds!r}")
        self.seconds = seconds
        self.reason = reason
        super().__init__(f"retry after {seconds:g}s" + (f": {reason}" if reason else ""))


class PermanentError(Exception):
    """Raised by a job for an error that can never succeed on retry (a tenant deleted upstream, invalid
    data): the run fails at once, whatever ``retries`` and ``retry_on`` say."""
