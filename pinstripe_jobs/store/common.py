"""What every part of the store shares: who this process is (host, pid, process start time), times as
stored text, text made safe to store, the lease of a run, and the one error a caller sees when the
database cannot be reached."""
from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError, cap, mask_secrets
from pinstripe_jobs.model.status import HELD, RERUN, Status, sql_list

if TYPE_CHECKING:
    import logging

HOST = os.uname().nodename
LIVE = Status.RUNNING
QUEUED = Status.QUEUED
ABANDONED = Status.ABANDONED
SKIPPED = Status.SKIPPED
HELD_SQL = sql_list(HELD)
LIVE_OR_GONE = (Status.ABANDONED, Status.RUNNING)  # a running row may read as abandoned, and the other way round
LIVE_OR_GONE_SQL = sql_list(LIVE_OR_GONE)
BAD = RERUN
MAX_ERROR = 4000  # characters of an error message kept in history
MAX_TRACEBACK = 20000
COLUMNS = ("id", "job", "tenant", "trigger", "tick", "attempt", "started_at", "ended_at", "status", "error",
           "host", "pid", "pid_token", "heartbeat_at", "tenant_kind", "invocation", "duration_ms")
Row = dict[str, Any]  # a run as read: COLUMNS (less pid_token and tenant_kind), tenant ids as they were given


class StateUnavailable(ConfigError):
    """The state store could not be reached within the retry budget, or refused an operation (exit 3).
    ``cause`` is the driver's first line (secrets masked)."""

    def __init__(self, message: str, hint: str | None = None, cause: str = ""):
        super().__init__(message, hint)
        self.cause = cause


class Lease:
    """A claimed or started run: its row id (the lock, when it took one), and the tenant slot it holds under
    ``tenant_concurrency`` (tenant, slot number), if any."""

    __slots__ = ("run_id", "slot")

    def __init__(self, run_id: int, slot: tuple[str, int] | None = None):
        self.run_id = run_id
        self.slot = slot


def process_token(pid: int) -> str:
    """The start time of a process (from /proc), so a reused pid is not taken for the old process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int | None, token: str) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not token or process_token(pid) in ("", token)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def stamp(moment: datetime) -> str:
    """A time as stored: ISO 8601 in UTC, to the microsecond (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def storable(text: str | None, limit: int = MAX_ERROR) -> str | None:
    """Text made safe to store: NUL bytes replaced, secrets masked, at most ``limit`` characters."""
    if text is None:
        return None
    return mask_secrets(cap(str(text), limit).replace("\0", "\\0"))


def tenant_kind(tenant: object) -> str | None:
    """'int' for integer tenant ids: history gives back 7, not "7"."""
    return "int" if isinstance(tenant, int) and not isinstance(tenant, bool) else None


def tenant_key(tenant: object) -> str:
    """The lock key of a tenant: its id as text, ``-`` for a job that has no tenants."""
    return "-" if tenant is None else str(tenant)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return mask_secrets(f"{type(exc).__name__}: {line}" if line else type(exc).__name__)


def log() -> logging.Logger:
    import logging

    return logging.getLogger("pinstripe.state")


def parse_counts(text: str | None) -> dict[str, int]:
    """An invocation's counts as stored (``status=n`` pairs, no JSON on the run path) -> a dict."""
    counts: dict[str, int] = {}
    for pair in (text or "").split(","):
        if "=" in pair:
            key, value = pair.split("=", 1)
            counts[key] = int(value)
    return counts
