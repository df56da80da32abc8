"""Prometheus metrics (the ``metrics`` extra, prometheus-client), never labelled by tenant (cardinality).

- In a process that runs jobs and serves ``--metrics-port`` (``start-bot``, ``pinstripe worker``): counters of
  runs (one per attempt, as history has one row per attempt) and invocations by job and status, a histogram of
  run durations by job, gauges of running runs and of the last success time per job, the schedule lag of fired
  ticks, and skipped tenants by reason. ``PROMETHEUS_MULTIPROC_DIR`` makes them safe for Celery's prefork pool.
- On the dashboard's ``/metrics``: the same questions answered from the state store's history
  (``pinstripe_history_*`` gauges: what history holds now, pruned after ``history_days``).

Imported only when metrics are asked for: importing this module imports prometheus-client.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import Observer

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import RunResult, Summary
    from pinstripe_jobs.store.reads import HistoryQueries
    from pinstripe_jobs.tenants import Tenant

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
RUNS = Counter("pinstripe_runs", "Tenant runs by job and status (one per attempt, like history rows).",
               ["job", "status"])
INVOCATIONS = Counter("pinstripe_invocations", "Invocations (commands, ticks) by job and status.",
                      ["job", "status"])
DURATION = Histogram("pinstripe_run_duration_seconds", "How long tenant runs took, by job.", ["job"],
                     buckets=BUCKETS)
RUNNING = Gauge("pinstripe_runs_running", "Tenant runs in progress, by job.", ["job"], multiprocess_mode="livesum")
LAST_SUCCESS = Gauge("pinstripe_last_success_timestamp_seconds", "When a run of the job last succeeded (Unix time).",
                     ["job"], multiprocess_mode="max")
LAG = Gauge("pinstripe_schedule_lag_seconds", "The last fired tick's lag: fired at minus due at.", ["job"],
            multiprocess_mode="mostrecent")
SKIPPED = Counter("pinstripe_skipped_tenants", "Tenants not run, by job and reason.", ["job", "reason"])
# what a skip reason is labelled as (its text may name a host or a number: never a label as it is)
REASONS = ("already running", "tenant at its concurrency cap", "not this shard", "interrupted", "fail-fast",
           "max failures", "state store unavailable", "configuration error", "deadline", "not started",
           "no longer in the tenant source", "its tick was interrupted")


def reason_label(reason: str | None) -> str:
    text = (reason or "").strip().lower()
    for known in REASONS:
        if text.startswith(known):
            return known
    return "other"


@contextmanager
def run_scope(plan: Plan, tenant: Tenant | None, attempt: int) -> Iterator[Callable[[RunResult], None]]:
    """Around one attempt: the running gauge, then its status, duration and (on success) the time."""
    job = plan.spec.name
    running = RUNNING.labels(job)
    running.inc()

    def told(result: RunResult) -> None:
        RUNS.labels(job, str(result.status)).inc()
        DURATION.labels(job).observe(float(result.duration_s or 0.0))
        if result.status == Status.SUCCEEDED:
            LAST_SUCCESS.labels(job).set(time.time())

    try:
        yield told
    finally:
        running.dec()


class Metrics(Observer):
    """The observer: invocations, the schedule lag of a fired tick, and tenants not run (skipped)."""

    def __init__(self) -> None:
        self.job = ""

    def started(self, plan: Plan) -> None:
        self.job = plan.spec.name
        tick = plan.options.tick
        if plan.options.trigger == "schedule" and isinstance(tick, datetime):
            LAG.labels(self.job).set(max(0.0, time.time() - tick.timestamp()))

    def run_finished(self, result: RunResult) -> None:
        if result.status == Status.SKIPPED:
            RUNS.labels(self.job, str(Status.SKIPPED)).inc()
            SKIPPED.labels(self.job, reason_label(result.reason)).inc()

    def finished(self, summary: Summary) -> None:
        INVOCATIONS.labels(summary.job, str(summary.status)).inc()


def registry() -> Any:
    """What to serve: this process's metrics, or every process's under ``PROMETHEUS_MULTIPROC_DIR``."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


def serve(port: int, host: str = "0.0.0.0") -> Any:
    """``--metrics-port``: ``/metrics`` on a daemon thread of this process. Returns the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry())
    return server


class HistoryCollector:
    """The dashboard's ``/metrics``: history as it stands, read at each scrape."""

    def __init__(self, history: HistoryQueries | None):
        self.history = history

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = self.history.totals() if self.history is not None else {}
        runs = GaugeMetricFamily("pinstripe_history_runs", "Tenant runs in history, by job and status.",
                                 labels=["job", "status"])
        for job, status, count in totals.get("runs", []):
            runs.add_metric([job, status], count)
        invocations = GaugeMetricFamily("pinstripe_history_invocations", "Invocations in history, by job and "
                                        "status (running: not finished).", labels=["job", "status"])
        for job, status, count in totals.get("invocations", []):
            invocations.add_metric([job, status or "running"], count)
        last = GaugeMetricFamily("pinstripe_history_last_success_timestamp_seconds", "When a run of the job last "
                                 "succeeded (Unix time).", labels=["job"])
        for job, ended_at in totals.get("last_success", []):
            if ended_at:
                last.add_metric([job], _timestamp(ended_at))
        yield from (runs, invocations, last)


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def history_exposition(history: HistoryQueries | None) -> tuple[bytes, str]:
    """The text a scrape of the dashboard's ``/metrics`` gets, and its content type."""
    collected = CollectorRegistry(auto_describe=False)
    collected.register(HistoryCollector(history))
    return generate_latest(collected), CONTENT_TYPE_LATEST
