"""The Observer base class: every hook a documented no-op, subclasses override what they need, and Tee
passes every hook to every observer."""
from __future__ import annotations

import inspect
import io

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.model.plan import RunOptions
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import NullObserver, Observer, Tee
from pinstripe_jobs.observers.ci import JUnitReporter
from pinstripe_jobs.observers.notify import Notifier
from pinstripe_jobs.observers.terminal import JsonReporter, PlainReporter

HOOKS = ["started", "run_started", "waiting", "retrying", "run_finished", "closing", "finished"]


class Failures(Observer):
    """Overrides one hook only."""

    def __init__(self) -> None:
        self.seen: list[RunResult] = []

    def run_finished(self, result: RunResult) -> None:
        if result.status == Status.FAILED:
            self.seen.append(result)


def test_every_hook_is_a_documented_no_op():
    for name in HOOKS:
        hook = getattr(Observer, name)
        assert inspect.getdoc(hook), name
    observer = Observer()
    assert observer.started(None) is None
    assert observer.run_started(None) is None
    assert observer.waiting(1, "host 1") is None
    assert observer.retrying(1, 1, 2, 0.5, "boom") is None
    assert observer.run_finished(RunResult(1, Status.SUCCEEDED)) is None
    assert observer.closing(Summary("job")) is None
    assert observer.finished(Summary("job")) is None


def test_the_reporters_and_the_notifier_are_observers():
    for kind in (PlainReporter, JsonReporter, JUnitReporter, Notifier, NullObserver, Tee):
        assert issubclass(kind, Observer), kind


def test_tee_passes_every_hook_to_observers_that_override_it_and_those_that_do_not():
    calls: list[tuple[str, tuple[object, ...]]] = []

    class Everything(Observer):
        pass

    for name in HOOKS:
        setattr(Everything, name, lambda self, *args, name=name: calls.append((name, args)))
    failures = Failures()
    tee = Tee(failures, Everything(), Observer())
    failed = RunResult(2, Status.FAILED, error="boom")
    tee.started("plan")
    tee.run_started(None)
    tee.waiting(2, "host 9")
    tee.retrying(2, 1, 3, 0.25, "boom")
    tee.run_finished(failed)
    tee.run_finished(RunResult(3, Status.SUCCEEDED))
    tee.closing(Summary("job"))
    tee.finished(Summary("job"))
    assert [name for name, _ in calls] == ["started", "run_started", "waiting", "retrying", "run_finished",
                                           "run_finished", "closing", "finished"]
    assert calls[3] == ("retrying", (2, 1, 3, 0.25, "boom"))
    assert failures.seen == [failed]


def test_a_subclass_overriding_one_hook_sees_a_real_run_through_tee(tenant_project):
    tenant_project.job("flaky", """
        def run(ctx):
            if ctx.tenant.id == 2:
                raise ValueError("tenant 2 is broken")
        retries = 1
        retry_backoff = 0
    """)
    failures = Failures()
    out = io.StringIO()
    runner = Runner(load_settings(cwd=tenant_project.root, env={}))
    try:
        summary = runner.run("flaky", RunOptions(), Tee(failures, PlainReporter(out)))
    finally:
        runner.close()
    assert summary.counts == {Status.SUCCEEDED: 3, Status.FAILED: 1}
    assert [(r.tenant, r.error) for r in failures.seen] == [(2, "ValueError: tenant 2 is broken")]
    text = out.getvalue()
    assert "RETRY       tenant 2  attempt 2/2" in text  # the reporter got the retry through Tee
    assert "FAILED      tenant 2" in text and text.rstrip().splitlines()[-1].startswith("flaky: failed")
