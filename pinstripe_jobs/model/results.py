"""What a run produced: one ``RunResult`` per tenant run and a ``Summary`` per job run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.model.status import BAD as BAD_STATUSES  # re-exported: the statuses of a run that did not succeed
from pinstripe_jobs.model.status import Status

SUCCEEDED, FAILED, SKIPPED = Status.SUCCEEDED, Status.FAILED, Status.SKIPPED
TIMED_OUT, INTERRUPTED, CANCELLED = Status.TIMED_OUT, Status.INTERRUPTED, Status.CANCELLED
CANCELLED_BY = "cancelled by "  # how the reason of a tenant not run because its invocation was cancelled begins
ALREADY_RUNNING = "already running"
AT_CAP = "tenant at its concurrency cap"
PAUSED = "paused"  # a reason starting with it: the job or tenant is paused (`pinstripe pause`)
NOT_THIS_SHARD = "not this shard"
# skips that still cover the tenant's turn (exit 0 or 4): any other skip leaves a tenant not run (exit 1)
COVERED_SKIPS = (ALREADY_RUNNING, AT_CAP, PAUSED, NOT_THIS_SHARD)
# the overall word of a run, by exit code ("error": its tenant source, state store or a service broke)
STATUS_OF_EXIT: dict[int, str] = {0: Status.SUCCEEDED, 1: Status.FAILED, 2: "error", 3: "error", 4: Status.SKIPPED,
                                  5: Status.CANCELLED,
                                  124: Status.TIMED_OUT, 130: Status.INTERRUPTED, 143: Status.INTERRUPTED}


def skip_status(reason: str | None) -> Status:
    """How a tenant that was not started is recorded: ``cancelled`` when its invocation was cancelled (the
    reason says by whom, ``cancelled by ...``), else ``skipped``."""
    return CANCELLED if (reason or "").startswith(CANCELLED_BY) else SKIPPED


def tenant_id(tenant: Any) -> Any:
    """The id of a tenant, or None for the single run of a job that does not run per tenant."""
    return None if tenant is None else tenant.id


class RunResult:
    """The outcome of one tenant's run (or of the single run of a non-tenant job)."""

    __slots__ = ("tenant", "status", "duration_s", "error", "reason", "traceback", "attempts", "value", "exception",
                 "host", "pid")

    def __init__(self, tenant: Any, status: str, duration_s: float = 0.0, error: str | None = None,
                 reason: str | None = None, traceback: str | None = None, attempts: int = 1, value: Any = None,
                 exception: BaseException | None = None):
        self.tenant = tenant
        self.status = status
        self.duration_s = duration_s
        self.error = error
        self.reason = reason
        self.traceback = traceback
        self.attempts = attempts
        self.value = value
        self.exception = exception
        self.host: str | None = None  # where it ran (set by the runner; a worker's, on the fleet)
        self.pid: int | None = None

    def __repr__(self) -> str:
        return f"RunResult(tenant={self.tenant!r}, status={self.status!r}, error={self.error!r})"

    @property
    def ok(self) -> bool:
        return self.status not in BAD_STATUSES

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tenant": self.tenant, "status": self.status, "duration_s": round(self.duration_s, 6),
                "error": self.error}
        if self.reason:
            data["reason"] = self.reason
        if self.traceback:
            data["traceback"] = self.traceback
        if self.attempts > 1:
            data["attempts"] = self.attempts
        if self.host is not None:
            data["host"], data["pid"] = self.host, self.pid
        return data


class Summary:
    """A job run: counts by status, the failures, and (when asked for) every run's result."""

    def __init__(self, job: str, runs: list[RunResult] | None = None, signal: int | None = None):
        self.job = job
        self.duration_s = 0.0
        self.counts: dict[str, int] = {}
        self.failures: list[RunResult] = []
        self.runs = runs
        self.signal = signal  # the signal that interrupted the run, if any
        self.already_running = 0  # runs skipped because the job was already running for that tenant
        self.error: str | None = None  # the tenant source broke mid-run: not every tenant could be read
        self.report_error: str | None = None  # a report file (JUnit, the step summary) could not be written
        self.cancelled: str | None = None  # its invocation was cancelled (`pinstripe cancel`): by whom, why
        self.invocation: str | None = None  # the id of the invocation this run recorded (or resumed)
        self.note: str | None = None  # what an operator should know: nothing ran because ... (shown, in the JSON)
        self.recorded_exit: int | None = None  # an idempotency key named a finished invocation: its exit code
        self.uncovered = 0  # tenants skipped for another reason than COVERED_SKIPS: not run (never exit 0)
        self.brake: str | None = None  # why the failure-rate brake stopped new tenants (--max-failure-rate)
        self.limit_waits: dict[str, list[float]] = {}  # limit name -> [waits, seconds waited] (ctx.limit)

    def waited_on(self, limit: str, seconds: float) -> None:
        tally = self.limit_waits.setdefault(limit, [0, 0.0])
        tally[0] += 1
        tally[1] += seconds

    def failure_brake(self, rate: float | None, min_runs: int) -> str | None:
        """The failure-rate brake (``--max-failure-rate`` / ``max_failure_rate``): why no new tenant may start
        once at least ``min_runs`` runs ended and more than ``rate`` of them failed (skipped runs do not
        count), kept as ``brake``; else None."""
        if rate is None:
            return None
        ended = self.total - self.counts.get(Status.SKIPPED, 0)
        failed = len(self.failures)
        if ended < min_runs or failed <= rate * ended:
            return None
        self.brake = self.brake or (f"failure-rate brake: {failed} of {ended} runs failed "
                                    f"(more than {rate:.0%}, --max-failure-rate)")
        return self.brake

    def limits_text(self) -> str:
        """``api 12 waits 3.4s, smtp ...`` (empty when no run waited on a limit)."""
        return ", ".join(f"{name} {int(n)} wait{'s' if n != 1 else ''} {secs:.1f}s"
                         for name, (n, secs) in sorted(self.limit_waits.items()))

    def add(self, result: RunResult) -> None:
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        if not result.ok:
            self.failures.append(result)
        elif result.reason == ALREADY_RUNNING or (result.reason or "").startswith(AT_CAP):
            self.already_running += 1
        elif result.status == SKIPPED and not (result.reason or "").startswith(COVERED_SKIPS):
            self.uncovered += 1
        if self.runs is not None:
            self.runs.append(result)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def status(self) -> str:
        """The overall word, from the same precedence as the exit code: interrupted, cancelled, error (the tenant
        source or state store broke: 3), failed, timed_out, skipped (already running), succeeded."""
        return STATUS_OF_EXIT.get(int(self.exit_code), "error")

    @property
    def exit_code(self) -> ExitCode:
        """Precedence: interrupted (130/143) > cancelled (5) > tenant source broke mid-run, or a report could
        not be written (3) > failed (1) > timed out (124) > tenants skipped for another reason than already
        running, a tenant cap, a pause or not this shard (1) > skipped as already running (4) > 0. An
        idempotency key that named a finished invocation: that invocation's recorded code."""
        import signal

        if self.recorded_exit is not None:
            try:
                return ExitCode(self.recorded_exit)
            except ValueError:  # not one of ours (an older release's): a failure
                return ExitCode.FAILED
        if self.signal is not None:
            return ExitCode.TERMINATED if self.signal == signal.SIGTERM else ExitCode.INTERRUPTED
        if self.cancelled or self.counts.get(CANCELLED):
            return ExitCode.CANCELLED
        if self.error or self.report_error:
            return ExitCode.CONFIG
        if self.counts.get(FAILED) or self.counts.get(INTERRUPTED):
            return ExitCode.FAILED
        if self.counts.get(TIMED_OUT):
            return ExitCode.TIMED_OUT
        if self.uncovered:
            return ExitCode.FAILED
        if self.already_running:
            return ExitCode.SKIPPED
        return ExitCode.OK


CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def job_traceback(exc: BaseException, job_file: Path | str | None) -> str:
    """The traceback of a job's failure without this package's frames, and without what led into the job
    (the frames before the first one in the job file). Chained exceptions are kept, so a nested job's
    failure shows the inner job's file and line, and a failing service factory or clean-up shows its own."""
    import traceback

    package = str(Path(__file__).parent.parent)
    own = str(job_file) if job_file else None
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exc
    link = ""
    while current is not None and all(current is not seen for seen, _ in chain) and len(chain) < 10:
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, CONTEXT
        else:
            current = None
    parts = []
    for item, link_after in reversed(chain):
        frames = traceback.extract_tb(item.__traceback__)
        start = next((i for i, f in enumerate(frames) if f.filename == own), None)
        kept = [f for f in frames[start or 0:] if not f.filename.startswith(package)]
        text = ""
        if kept:
            text = "Traceback (most recent call last):\n" + "".join(traceback.StackSummary.from_list(kept).format())
        if type(item).__module__.startswith("pinstripe_jobs"):  # ours: the plain name, as for builtins
            text += f"{type(item).__name__}: {item}\n"
        else:
            text += "".join(traceback.format_exception_only(type(item), item))
        parts.append(text)
        if link_after:
            parts.append(link_after)
    return "".join(parts).rstrip()
