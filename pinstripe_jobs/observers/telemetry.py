"""Telemetry switched on and assembled: which of traces (OpenTelemetry), metrics (Prometheus) and heartbeat
monitors a run gets, as observers plus the scope entered around each attempt. Imports neither OpenTelemetry
nor prometheus-client: a run with telemetry off pays nothing for it.

Traces are on when ``[telemetry] traces = true``, or (unless ``traces = false``) when ``OTEL_TRACES_EXPORTER``
names an exporter other than ``none``, or when a tracer provider is already installed
(``opentelemetry-instrument``); ``OTEL_SDK_DISABLED=true`` turns them off whatever else says. Metrics are
recorded in a process that serves them (``--metrics-port``); the dashboard's ``/metrics`` reads history.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import RunResult
    from pinstripe_jobs.tenants import Tenant

TELEMETRY_KEYS = {"traces": bool}
_METRICS: list[bool] = []  # [True] once this process serves metrics (inherited by forked workers)


def telemetry_table(table: Any, where: str) -> dict[str, Any]:
    """``[telemetry]`` checked."""
    example = "Example: [telemetry]\ntraces = true"
    if not isinstance(table, dict):
        raise ConfigError(f"'telemetry' in {where} must be a table.", example)
    for key, value in table.items():
        if key not in TELEMETRY_KEYS:
            raise ConfigError(f"Unknown key '{key}' in [telemetry] of {where}.",
                              "Known keys: " + ", ".join(sorted(TELEMETRY_KEYS)) + ". The exporter, endpoint and "
                              "service name are set with the standard OTEL_* environment variables.")
        if not isinstance(value, TELEMETRY_KEYS[key]):
            raise ConfigError(f"'{key}' in [telemetry] of {where} must be true or false.", example)
    return dict(table)


def tracing_enabled(settings: Any, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    traces = (getattr(settings, "telemetry", None) or {}).get("traces")
    if traces is not None:
        return bool(traces)
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    api = sys.modules.get("opentelemetry.trace")  # a provider installed already (opentelemetry-instrument)
    return api is not None and type(api.get_tracer_provider()).__name__ != "ProxyTracerProvider"


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"Telemetry asks for {module}, which is not installed.",
                          f"pip install 'pinstripe-jobs[{extra}]', or turn it off.")


def install(runner: Any) -> None:
    """The scope around each attempt of ``runner``'s runs: the run's span and/or its metrics (or none)."""
    scopes: list[Callable[..., Any]] = []
    if tracing_enabled(runner.settings):
        _require("opentelemetry.sdk", "otel")
        from pinstripe_jobs.observers.tracing import flush, run_span, setup

        setup()
        scopes.append(run_span)
        runner.attempts.child_ends = flush  # an isolated run's own spans, sent before its child process ends
    if _METRICS:
        from pinstripe_jobs.observers.metrics import run_scope

        scopes.append(run_scope)
    if not scopes:
        runner.attempts.scope = None
    elif len(scopes) == 1:
        runner.attempts.scope = scopes[0]
    else:
        runner.attempts.scope = _combined(scopes)


def _combined(scopes: list[Callable[..., Any]]) -> Callable[..., Any]:
    @contextmanager
    def scope(plan: Plan, tenant: Tenant | None, attempt: int) -> Iterator[Callable[[RunResult], None]]:
        with ExitStack() as stack:
            tells = [stack.enter_context(one(plan, tenant, attempt)) for one in scopes]

            def told(result: RunResult) -> None:
                for tell in tells:
                    tell(result)

            yield told

    return scope


def observers_for(runner: Any) -> list[Any]:
    """The telemetry observers of a run (tracing, metrics, the heartbeat monitor); installs the attempt scope."""
    install(runner)
    settings = runner.settings
    found: list[Any] = []
    if runner.attempts.scope is not None and tracing_enabled(settings):
        from pinstripe_jobs.observers.tracing import Tracing

        found.append(Tracing(settings.executor))
    if _METRICS:
        from pinstripe_jobs.observers.metrics import Metrics

        found.append(Metrics())
    if getattr(settings, "monitor", None) is not None:  # [monitor], even empty (then only jobs' own URLs)
        from pinstripe_jobs.observers.monitor import Monitor

        found.append(Monitor(settings.monitor))
    return found


def observe(runner: Any, observer: Any) -> Any:
    """``observer`` with the telemetry observers beside it (the Python API, nested-free)."""
    extra = observers_for(runner)
    if not extra:
        return observer
    from pinstripe_jobs.observers.ci import Tee

    return Tee(observer, *extra)


# -- fleet ----------------------------------------------------------------------------------------------
def trace_carrier(invocation: str) -> dict[str, str]:
    """The trace context a fleet batch carries (empty when tracing is off)."""
    tracing = sys.modules.get("pinstripe_jobs.observers.tracing")
    return tracing.carrier(invocation) if tracing is not None else {}


def adopt_trace(settings: Any, invocation: str, carrier: Any) -> None:
    """A worker: the batch's runs join the trace of the command that sent it (when tracing is on here)."""
    if carrier and isinstance(carrier, dict) and tracing_enabled(settings):
        from pinstripe_jobs.observers.tracing import adopt

        adopt(invocation, carrier)


def forget_trace(invocation: str) -> None:
    tracing = sys.modules.get("pinstripe_jobs.observers.tracing")
    if tracing is not None:
        tracing.forget(invocation)


def flush_traces() -> None:
    """Send the spans still batched (a worker after each batch: a prefork child may be recycled any time)."""
    tracing = sys.modules.get("pinstripe_jobs.observers.tracing")
    if tracing is not None:
        tracing.flush()


# -- metrics endpoints ----------------------------------------------------------------------------------
def serve_metrics(port: int, host: str = "0.0.0.0", prefork: bool = False) -> None:
    """``--metrics-port``: serve ``/metrics`` from this process (and its forked pool, with ``prefork``)."""
    try:
        import importlib.util

        missing = importlib.util.find_spec("prometheus_client") is None
    except ValueError:
        missing = True
    if missing:
        raise UsageError("--metrics-port needs prometheus-client, which is not installed.",
                         "pip install 'pinstripe-jobs[metrics]'")
    if prefork and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before prometheus_client is imported
        import tempfile

        folder = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pinstripe-metrics-")
        _remove_at_exit(folder)
    from pinstripe_jobs.observers.metrics import serve

    try:
        serve(port, host)
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: cannot listen on {host}:{port}: {exc.strerror}.",
                         "Choose a free port.") from None
    _METRICS[:] = [True]


def _remove_at_exit(folder: str) -> None:
    """The metrics folder this process made goes when it exits (not when a forked pool process does)."""
    import atexit
    import shutil

    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)


def metrics_endpoint(history: Callable[[], Any]) -> Callable[[Any], Any]:
    """The dashboard's ``/metrics`` route function: history as Prometheus gauges, read at each scrape."""

    def metrics(request: Any) -> Any:
        from starlette.responses import PlainTextResponse, Response

        try:
            from pinstripe_jobs.observers.metrics import history_exposition
        except ImportError:
            return PlainTextResponse("/metrics needs prometheus-client: pip install 'pinstripe-jobs[metrics]'\n",
                                     status_code=501)
        body, content_type = history_exposition(history())
        return Response(body, media_type=content_type)

    return metrics
