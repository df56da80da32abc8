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
