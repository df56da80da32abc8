"""One vocabulary for the status of a run: a ``str`` enum, so a status compares equal to its text and is stored,
printed and serialised as that text. Every list of statuses (the SQL ones included) is derived from here."""
from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """The status of one tenant's run, as history records it."""

    QUEUED = "queued"  # claimed ahead (its lock taken, its row written) but not started yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"  # its holder is provably gone (killed mid-run)
    CANCELLED = "cancelled"  # not run, or stopped, because its invocation was cancelled (`pinstripe cancel`)


class InvocationStatus(StrEnum):
    """The status of an invocation (one command, tick or resume over its tenants)."""

    RUNNING = "running"  # its holder is alive
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # it ran to its end, and a tenant did not succeed (or a tenant was skipped: not covered)
    INTERRUPTED = "interrupted"  # stopped by a signal (SIGINT/SIGTERM) before it covered every tenant
    CANCELLED = "cancelled"  # `pinstripe cancel`, the dashboard
    CRASHED = "crashed"  # its holder is provably gone (dead on this host, or its heartbeat stale)


# An invocation that ran to its end: its idempotency key runs nothing again. The others can be resumed (an ended
# invocation may also read ``skipped``: some tenants were already running, exit 4; or ``error``: exit 3).
INVOCATION_FINISHED: tuple[str, ...] = (InvocationStatus.SUCCEEDED, InvocationStatus.FAILED, "timed_out")


ALL: tuple[Status, ...] = tuple(Status)
FINISHED: tuple[Status, ...] = tuple(s for s in Status if s not in (Status.QUEUED, Status.RUNNING))
HELD: tuple[Status, ...] = (Status.QUEUED, Status.RUNNING)  # the statuses that hold a (job, tenant) lock
FAILING: tuple[Status, ...] = (Status.FAILED, Status.TIMED_OUT)  # a tenant "failing since"
BAD: tuple[Status, ...] = (Status.FAILED, Status.TIMED_OUT, Status.INTERRUPTED)  # a run that did not succeed
RERUN: tuple[Status, ...] = (Status.FAILED, Status.TIMED_OUT, Status.INTERRUPTED, Status.ABANDONED, Status.SKIPPED,
                             Status.QUEUED, Status.CANCELLED)  # what --only-failed reruns
# The dashboard grid's order: failing tenants first.
RANK: dict[Status, int] = {Status.FAILED: 0, Status.TIMED_OUT: 0, Status.ABANDONED: 1, Status.INTERRUPTED: 1,
                           Status.CANCELLED: 1, Status.SKIPPED: 2, Status.QUEUED: 2, Status.RUNNING: 3,
                           Status.SUCCEEDED: 4}


def sql_list(statuses: tuple[Status, ...]) -> str:
    """``('a', 'b')``: a status list for SQL, from the enum (the values are fixed identifiers, never input)."""
    return "(" + ", ".join(f"'{s.value}'" for s in statuses) + ")"
