"""Summary: the exit code and the overall status word follow one precedence."""
from __future__ import annotations

import signal

from pinstripe_jobs.errors import ExitCode
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import Status


def summary_of(*statuses: Status) -> Summary:
    summary = Summary("job")
    for number, status in enumerate(statuses):
        summary.add(RunResult(number, status))
    return summary


def test_a_report_that_could_not_be_written_is_an_error_above_failures_below_a_signal():
    summary = summary_of(Status.SUCCEEDED, Status.FAILED)
    assert (summary.exit_code, summary.status) == (ExitCode.FAILED, "failed")
    summary.report_error = "Could not write the JUnit report x.xml: No such file or directory."
    assert (summary.exit_code, summary.status) == (ExitCode.CONFIG, "error")
    summary.signal = signal.SIGTERM
    assert (summary.exit_code, summary.status) == (ExitCode.TERMINATED, "interrupted")


def test_statuses_are_their_text():
    summary = summary_of(Status.SUCCEEDED, Status.TIMED_OUT)
    assert summary.status == "timed_out" and f"{summary.status}" == "timed_out"
    assert summary.counts == {"succeeded": 1, "timed_out": 1}
    assert [str(s) for s in Status] == [s.value for s in Status]


def test_a_tenant_skipped_for_another_reason_than_already_running_a_cap_a_pause_or_its_shard_is_not_a_success():
    from pinstripe_jobs.model.results import ALREADY_RUNNING, AT_CAP

    covered = Summary("job")
    for number, reason in enumerate([ALREADY_RUNNING, f"{AT_CAP} (2)", "paused by ops: incident",
                                     "not this shard: a job that does not run per tenant runs on shard 0 only"]):
        covered.add(RunResult(number, Status.SKIPPED, reason=reason))
    covered.add(RunResult(9, Status.SUCCEEDED))
    assert (covered.exit_code, covered.uncovered) == (ExitCode.SKIPPED, 0)  # 4: already running / at its cap
    for reason in ("its tick was interrupted and is past misfire_grace", "not run: the worker returned no result",
                   None):
        summary = summary_of(Status.SUCCEEDED)
        summary.add(RunResult(1, Status.SKIPPED, reason=reason))
        assert (summary.exit_code, summary.status) == (ExitCode.FAILED, "failed"), reason


def test_a_finished_key_exits_with_its_recorded_code():
    summary = Summary("job")
    summary.recorded_exit = 5
    assert (summary.exit_code, summary.status) == (ExitCode.CANCELLED, "cancelled")


def test_a_cancelled_invocation_exits_5_unless_a_signal_stopped_it():
    import signal as signals

    from pinstripe_jobs.errors import ExitCode
    from pinstripe_jobs.model.results import RunResult, Summary, skip_status
    from pinstripe_jobs.model.status import Status

    summary = Summary("job")
    summary.add(RunResult(1, Status.FAILED, error="boom"))
    summary.add(RunResult(2, skip_status("cancelled by ann@host: oops"), reason="cancelled by ann@host: oops"))
    assert summary.counts == {Status.FAILED: 1, Status.CANCELLED: 1}
    assert summary.exit_code == ExitCode.CANCELLED and summary.status == "cancelled"  # cancelled > failed
    summary.signal = signals.SIGTERM
    assert summary.exit_code == ExitCode.TERMINATED  # a signal > cancelled
    quiet = Summary("job")
    quiet.cancelled = "cancelled by ann@host"  # cancelled before any tenant was reported
    assert quiet.exit_code == ExitCode.CANCELLED
    assert skip_status("paused") == Status.SKIPPED and skip_status(None) == Status.SKIPPED
