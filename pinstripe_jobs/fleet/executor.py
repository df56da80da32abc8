"""The celery executor: a run's tenants spread over a Celery worker fleet, reported as a local run is.

The CLI reads the plan's tenants as a local run does (shard, filters, --only-failed), sends them in
batches of ``[celery] batch_size`` as plain task messages (a flat set: no chords, no canvases), at most a
window of batches in flight at once (``fleet.window``: invocations running at the same time share the
workers instead of queueing behind each other), and reports each tenant as its result comes back: the
same per-tenant lines, progress, summary, JSON (with ``host`` and ``pid`` of the worker), JUnit and exit
code. Workers take the locks and write the history (the state store must be one all hosts share). A stop
(SIGINT/SIGTERM) or the ``--deadline`` revokes the batches not started and writes a cancel marker to the
state store, which workers check before each tenant; tenants whose result never comes back are reported
``interrupted``, tenants never sent ``skipped``.

Imported only when ``executor = "celery"``. An ``Executor`` (``execution.executors.base``): it knows the
runner only through ``TenantRunner``.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError
from pinstripe_jobs.execution.executors.base import Executor, TenantRunner
from pinstripe_jobs.model.results import RunResult, Summary, skip_status
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.tenants.query import Tenant

if TYPE_CHECKING:
    from celery import Celery

    from pinstripe_jobs.fleet.window import Window
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.observers.base import Observer

POLL_S = 0.2
FEED_POLL_S = 0.05  # while the window is full: a freed slot is filled this soon (the workers' queued batch covers it)
SKIPPED_CHUNK = 1000  # tenants never sent are reported and recorded this many at a time
BACKEND_RETRY_S = 30
OPTIONS = ("args", "params", "trigger", "tick", "timeout", "retries", "isolation", "wait", "grace")


class FleetExecutor(Executor):
    """``check`` before anything is printed or sent; ``run`` sends and collects. Workers take the locks and
    write the history rows: the runner claims nothing ahead."""

    name = "celery"
    claims_ahead = False

    def __init__(self, runner: TenantRunner, deadline: float | None = None):
        super().__init__(runner)
        self.deadline = deadline
        self.app: Celery | None = None  # made by ``check``
        self.conf: dict[str, Any] = {}
        self.results: dict[str, Any] = {}  # task id -> AsyncResult, for an RPC result backend
        self.polling = True
        self.window: Window | None = None  # made by ``run``: how many batches this invocation keeps in flight
        self.not_sent: str | None = None  # why tenants are no longer sent (a stop, the deadline, the broker)
        self.failing_since: float | None = None  # since when the result backend fails
        self.collected = time.monotonic()  # when results were last collected

    @property
    def celery(self) -> Celery:
        """The fleet's Celery app, made (and its broker reached) by ``check``."""
        if self.app is None:
            raise ConfigError("The celery executor ran before it was checked.", "Call check(plan) before run().")
        return self.app

    def check(self, plan: Plan) -> None:
        from pinstripe_jobs.errors import UsageError
        from pinstripe_jobs.fleet.broker import celery_settings, check_broker, make_app

        asked = [flag for flag, value in (("--fail-fast", plan.options.fail_fast), ("--max-failures",
                 plan.options.max_failures), ("--spread", plan.options.spread)) if value]
        if asked:
            raise UsageError(f"{', '.join(asked)} {'is' if len(asked) == 1 else 'are'} not supported with the celery "
                             "executor yet: its batches are already queued on the fleet.",
                             "Drop the option, or run with --executor local.")
        if plan.spread:
            import logging

            logging.getLogger("pinstripe.fleet").warning(
                "%s: spread = %gs is not applied on the celery executor; tenants start as workers take them",
                plan.spec.name, plan.spread)
        state = self.runner.state
        if state.local:
            raise ConfigError("The celery executor needs a state store that every worker host shares; "
                              f"this run's is SQLite ({self.runner.settings.source_of('state')}).",
                              'Set state = "postgresql+psycopg://user@db-host/db" (or PINSTRIPE_STATE), the same '
                              "for the CLI and the workers.")
        self.conf = celery_settings(self.runner.settings)
        attempts = 1 + plan.retries
        if plan.timeout and plan.timeout * attempts * self.conf["batch_size"] >= self.conf["visibility_timeout"]:
            raise ConfigError(
                f"A batch of job '{plan.spec.name}' may take {plan.timeout * attempts * self.conf['batch_size']:g}s "
                f"(timeout {plan.timeout:g}s x {attempts} attempt(s) x batch_size {self.conf['batch_size']}), "
                f"longer than the broker's visibility_timeout ({self.conf['visibility_timeout']:g}s): the broker "
                "would deliver it twice.", "Raise [celery] visibility_timeout, or lower batch_size.")
        app = self.app = make_app(self.runner.settings)
        if hasattr(app.backend, "get_many"):  # polled (Redis): no pub/sub subscription per task message
            app.backend.on_task_call = lambda *args, **kwargs: None
        check_broker(app, self.conf["broker"], " Nothing was sent.")

    def run(self, plan: Plan, tenants: Iterator[Tenant | None], observer: Observer, summary: Summary) -> None:
        """Send the tenants in batches, at most ``window.size`` batches in flight (a result back frees room
        for the next one), then wait for the rest. Tenants never sent (a stop, the deadline, the broker) are
        reported skipped as they are read."""
        from pinstripe_jobs.fleet.window import Window

        runner = self.runner
        if self.app is None:
            self.check(plan)
        self.window = Window(self.celery, self.conf["queue"], self.conf.get("in_flight"), priority_of(plan))
        options = self._options(plan)
        pending: dict[str, list[Any]] = {}  # task id -> its tenants not yet reported
        started = time.monotonic()
        self.polling = hasattr(self.celery.backend, "get_many")
        batch: list[Any] = []
        unsent: list[Any] = []
        for tenant in tenants:
            tenant_id = None if tenant is None else tenant.id
            if self.not_sent is None and (runner.stop.requested or self._past_deadline(started)):
                self.not_sent = (runner.stop.cancelled or "interrupted") if runner.stop.requested else \
                    "deadline passed before it was sent"
            if self.not_sent is not None:
                unsent.append(tenant_id)  # read on: every tenant is reported
                if len(unsent) >= SKIPPED_CHUNK:
                    self._give_up_tenants(plan, unsent, skip_status(self.not_sent), self.not_sent, observer, summary)
                    unsent = []
                continue
            batch.append(tenant_id)
            if len(batch) >= self.conf["batch_size"]:
                unsent += self._send(plan, batch, options, pending)
                batch = []
                self._make_room(pending, plan, observer, summary, started)
        if batch:
            unsent += self._send(plan, batch, options, pending)
        if unsent:
            self._give_up_tenants(plan, unsent, skip_status(self.not_sent), self.not_sent or "interrupted", observer,
                                  summary)
        self._wait(pending, plan, observer, summary, started)

    def _send(self, plan: Plan, batch: list[Any], options: dict[str, Any], pending: dict[str, list[Any]]
              ) -> list[Any]:
        """One task message for ``batch``; its tenants back when the broker failed (then no more is sent)."""
        from pinstripe_jobs.fleet.broker import TASK

        try:
            result = self.celery.send_task(TASK, args=(plan.spec.name, batch, options, plan.invocation),
                                           queue=self.conf["queue"])
        except Exception as exc:  # the broker went away mid-run: the rest is reported, not sent
            from pinstripe_jobs.errors import mask_secrets

            self.not_sent = mask_secrets(f"not sent: the Celery broker failed: {type(exc).__name__}: {exc}")[:500]
            self.runner.config_error = self.runner.config_error or self.not_sent
            return batch
        if not self.polling:  # an RPC backend: its replies come to this process's queue
            self.celery.backend.add_pending_result(result)
            self.results[result.id] = result
        pending[result.id] = batch
        return []

    def _make_room(self, pending: dict[str, list[Any]], plan: Plan, observer: Observer, summary: Summary,
                   started: float) -> None:
        """Wait while the window is full, reporting results as they come; a stop or the deadline ends the
        wait (the caller notes it). Results of a window that is not full are still shown every second."""
        window = self.window
        if window is None:
            return
        if not window.full(len(pending)):
            if time.monotonic() - self.collected > 1:
                self._gather(pending, plan, observer, summary, wait=0)
            return
        while window.full(len(pending)):
            if self.runner.stop.requested or self._past_deadline(started):
                return
            lost = self._gather(pending, plan, observer, summary, wait=FEED_POLL_S)
            if lost:
                self.not_sent = lost
                self.runner.config_error = self.runner.config_error or lost
                return

    def _gather(self, pending: dict[str, list[Any]], plan: Plan, observer: Observer, summary: Summary,
                wait: float) -> str | None:
        """Collect the results in (waiting up to ``wait`` seconds for one) and report them. Returns why the
        result backend is taken as lost once it has failed for ``BACKEND_RETRY_S``, else None."""
        self.collected = time.monotonic()
        try:
            arrived = self._collect(pending, wait=wait)
            self.failing_since = None
        except Exception as exc:  # the result backend went away: retry for a while, then say so
            self.failing_since = self.failing_since or time.monotonic()
            if time.monotonic() - self.failing_since > BACKEND_RETRY_S:
                from pinstripe_jobs.errors import mask_secrets

                return mask_secrets(f"lost the Celery result backend: {type(exc).__name__}: {exc}")[:500]
            time.sleep(0.5)  # not the stop event: once set, it would not wait at all
            return None
        for task_id, meta in arrived:  # outside the try: a bug of ours is not taken for a backend fault
            self._report(task_id, meta, pending, plan, observer, summary)
        return None

    def _options(self, plan: Plan) -> dict[str, Any]:
        """What every batch carries besides its tenants: the run's options, and its tenant selection (the
        source this invocation reads, --tenant, --exclude-tenant, --shard), which workers resolve the
        batch's tenants against instead of their own config's source."""
        options: dict[str, Any] = {name: getattr(plan.options, name) for name in OPTIONS}
        options["tick"] = plan.options.tick.isoformat() if plan.options.tick else None
        options["args"] = list(plan.options.args)
        from pinstripe_jobs.observers.telemetry import trace_carrier

        options["trace"] = trace_carrier(plan.invocation)  # workers' spans join this trace (when tracing is on)
        settings = self.runner.settings
        options["selection"] = {
            "tenants": settings.tenants, "tenants_table": settings.tenants_table,
            "tenant_ids": [str(t) for t in plan.options.tenant_ids],
            "exclude_ids": [str(t) for t in plan.options.exclude_ids],
            "shard": list(plan.options.shard) if plan.options.shard else None}
        return options

    # -- collecting --------------------------------------------------------------------------------
    def _past_deadline(self, started: float) -> bool:
        return self.deadline is not None and time.monotonic() - started >= self.deadline

    def _wait(self, pending: dict[str, list[Any]], plan: Plan, observer: Observer, summary: Summary,
              started: float) -> None:
        runner = self.runner
        cancelled = None
        while pending:
            if cancelled is None and (runner.stop.requested or self._past_deadline(started)):
                cancelled = (runner.stop.cancelled or "interrupted (the run was stopped)") \
                    if runner.stop.requested else f"no result before the run's deadline ({self.deadline:g}s)"
                self._cancel(plan, pending, cancelled)
                if not runner.stop.requested:
                    break  # the deadline: report what is missing now
            if cancelled and runner.stop.grace_over():
                break
            lost = self._gather(pending, plan, observer, summary, wait=POLL_S)
            if lost:
                cancelled = lost
                runner.config_error = runner.config_error or lost
                break
        if pending:
            reason = cancelled or "interrupted"
            missing = [t for tenants in pending.values() for t in tenants]
            self._record_missing(plan, missing, reason, observer, summary,
                                 **({"status": Status.CANCELLED} if runner.stop.cancelled else {}))
            pending.clear()

    def _collect(self, pending: dict[str, list[Any]], wait: float) -> list[tuple[str, dict[str, Any]]]:
        """The batches whose result is in (task id, result meta); wait up to ``wait`` seconds for one. A
        key-value result backend (Redis) is polled many ids at a time (MGET; nothing is kept per batch but its
        tenant ids); an RPC one (RabbitMQ) is drained from this process's reply queue."""
        backend = self.celery.backend
        if not self.polling:

            try:
                backend.result_consumer.drain_events(timeout=wait or 0.01)
            except TimeoutError:
                pass
            ready = [task_id for task_id, result in self.results.items() if result.on_ready.ready]
            return [(task_id, _ready_meta(self.results.pop(task_id))) for task_id in ready]
        from celery.exceptions import TimeoutError as CeleryTimeout

        ids = list(pending)[:500]
        arrived: list[tuple[str, dict[str, Any]]] = []
        if not ids:
            return arrived
        try:
            for task_id, meta in backend.get_many(ids, timeout=wait or 0.001, interval=0.05, no_ack=True):
                self.results.pop(task_id, None)
                arrived.append((task_id, meta))
        except CeleryTimeout:
            pass
        return arrived

    def _report(self, task_id: str, meta: dict[str, Any], pending: dict[str, list[Any]], plan: Plan, observer: Observer,
                summary: Summary) -> None:
        value = meta.get("result")
        if meta.get("status") == "FAILURE" and _worker_lost(value):
            # its worker was killed: the broker delivers the batch again (acks_late, reject_on_worker_lost),
            # and its final result replaces this one
            if not self.polling and task_id in pending:
                from celery.result import AsyncResult

                again = AsyncResult(task_id, app=self.celery)
                self.celery.backend.add_pending_result(again)
                self.results[task_id] = again
            return
        tenants = pending.pop(task_id, None)
        if tenants is None:
            return
        if meta.get("status") == "REVOKED":  # cancelled before a worker started it
            why = self.runner.stop.cancelled
            self._record_missing(plan, tenants, why or "cancelled before it started", observer, summary,
                                 status=skip_status(why))
            return
        if meta.get("status") != "SUCCESS" or not isinstance(value, dict):
            error = f"the task failed on the worker: {value!r}"[:2000]
            self._record_missing(plan, tenants, error, observer, summary, status=Status.FAILED)
            return
        reported = set()
        for data in value.get("results", []):
            result = RunResult(data["tenant"], data["status"], data.get("duration_s") or 0.0, data.get("error"),
                               reason=data.get("reason") or ("already ran (its batch was delivered again)"
                                                              if data.get("redelivered") else None),
                               traceback=data.get("traceback"), attempts=data.get("attempts", 1))
            result.host, result.pid = data.get("host"), data.get("pid")
            output = data.get("output")
            observer.run_started(_tenant(result.tenant))
            if output:
                import sys

                sys.stdout.write(output)
                end_run = getattr(sys.stdout, "end_run", None)
                if end_run is not None:
                    end_run()
            summary.add(result)
            observer.run_finished(result)
            reported.add(_key(result.tenant))
        if value.get("error"):
            self.runner.config_error = self.runner.config_error or \
                f"On worker {value.get('host')} (pid {value.get('pid')}): {value['error']}"
        rest = [t for t in tenants if _key(t) not in reported]
        if rest:
            reason = "not run: " + (value.get("error") or "the worker returned no result for it").splitlines()[0]
            self._record_missing(plan, rest, reason, observer, summary, status=Status.SKIPPED)

    def _cancel(self, plan: Plan, pending: dict[str, list[Any]], reason: str) -> None:
        """Workers check the marker before each tenant (revokes live only in worker memory); batches not
        started are revoked too."""
        try:
            self.runner.state.remember(f"cancel:{plan.invocation}", reason)
        except Exception:
            pass
        try:
            self.celery.control.revoke(list(pending), terminate=False)
        except Exception:
            pass

    def _record_missing(self, plan: Plan, tenants: list[Any], reason: str, observer: Observer, summary: Summary,
                        status: str = Status.INTERRUPTED) -> None:
        """Tenants with no result from the fleet: reported, and recorded unless a worker recorded them."""
        try:
            known = self.runner.state.invocation_outcomes(plan.spec.name, plan.invocation, tenants, running=True)
        except Exception:
            known = {}
        for tenant in tenants:
            outcome = known.get(_key(tenant))
            if outcome is not None and outcome[0] == Status.RUNNING:  # still going on a worker, which records it
                result = RunResult(tenant, Status.INTERRUPTED, error=f"{reason} (still running on a worker, which "
                                                              "records its outcome)")
            elif outcome is not None:  # it finished after all (its batch result was lost)
                result = RunResult(tenant, outcome[0], error=outcome[1])
            else:
                result = RunResult(tenant, status, error=reason if status != Status.SKIPPED else None,
                                   reason=reason if status == Status.SKIPPED else None)
            observer.run_started(_tenant(tenant))
            summary.add(result)
            observer.run_finished(result)
        self._write(plan, [t for t in tenants if _key(t) not in known], status, reason)

    def _give_up_tenants(self, plan: Plan, tenants: list[Any], status: str, reason: str, observer: Observer,
                         summary: Summary) -> None:
        for tenant in tenants:
            result = RunResult(tenant, status, reason=reason)
            observer.run_started(_tenant(tenant))
            summary.add(result)
            observer.run_finished(result)
        self._write(plan, tenants, status, reason)

    def _write(self, plan: Plan, tenants: list[Any], status: str, reason: str) -> None:
        if not tenants:
            return
        try:
            self.runner.state.record_many(plan.spec.name, tenants, plan.options.trigger, status, error=reason,
                                          tick=plan.options.tick, invocation=plan.invocation)
        except Exception as exc:
            self.runner.state_error = self.runner.state_error or getattr(exc, "message", str(exc))


def priority_of(plan: Plan) -> int:
    """The invocation's priority: ``--priority`` (``RunOptions.priority``), else the job's ``priority``."""
    asked = getattr(plan.options, "priority", None)
    return int(asked if asked is not None else getattr(plan.spec, "priority", 0) or 0)


def _ready_meta(result: Any) -> dict[str, Any]:
    """A ready ``AsyncResult``'s state and value (read from what it holds: no round trip)."""
    return {"status": result.state, "result": result.result}


def _worker_lost(value: Any) -> bool:
    name = value.get("exc_type") if isinstance(value, dict) else type(value).__name__
    return name == "WorkerLostError"


def _tenant(tenant_id: Any) -> Tenant | None:
    """What observers are told of a tenant reported from the fleet: its id."""
    return None if tenant_id is None else Tenant({"id": tenant_id})


def _key(tenant: Any) -> str:
    return "-" if tenant is None else str(tenant)
