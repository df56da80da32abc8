"""OpenTelemetry traces (the ``otel`` extra): an invocation is a ``pinstripe.invocation`` span, each attempt of a
tenant's run a child ``pinstripe.run`` span that is the current context while the job runs (in its thread,
asyncio task or child process), so the job's own instrumented calls nest under it.

Imported only when tracing is on (``observers/telemetry.py`` decides): importing this module imports
OpenTelemetry. Set up the standard way: the ``OTEL_*`` variables (exporter, endpoint, protocol, service name,
resource attributes), or a tracer provider already installed by ``opentelemetry-instrument``.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import Observer

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import RunResult, Summary
    from pinstripe_jobs.tenants import Tenant

_SETUP = threading.Lock()
_PARENTS: dict[str, otel_context.Context] = {}  # invocation id -> the context its runs' spans are children of
_PROVIDER: list[Any] = []  # the SDK provider this module made
_TRACER: list[trace.Tracer] = []  # made once: a provider's get_tracer costs as much as a span


def setup() -> trace.Tracer:
    """The tracer; on first use, an SDK tracer provider from the ``OTEL_*`` variables, unless one is set
    already (``opentelemetry-instrument``, or the application's own)."""
    with _SETUP:
        if not _PROVIDER and not _provider_installed():
            _PROVIDER.append(_make_provider())
            trace.set_tracer_provider(_PROVIDER[0])
        if not _TRACER:
            _TRACER.append(trace.get_tracer("pinstripe_jobs"))
    return _TRACER[0]


def _provider_installed() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _make_provider() -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "pinstripe-jobs"})
    resource = resource.merge(OTELResourceDetector().detect())
    provider = TracerProvider(resource=resource)
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        exporter = _exporter(name.strip().lower())
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str) -> Any:
    from pinstripe_jobs.errors import ConfigError

    if name in ("none", ""):
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported.", "Use otlp, console or none.")
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    import importlib

    kind = "grpc" if protocol == "grpc" else "http"
    try:
        exporter = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter")
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-grpc" if protocol == "grpc" else "pinstripe-jobs[otel]"
        raise ConfigError(f"Tracing is on (OTLP over {protocol or 'http/protobuf'}), but its exporter is not "
                          "installed.", f"pip install {package}, or set OTEL_TRACES_EXPORTER=none.") from None
    return exporter.OTLPSpanExporter()


def flush(timeout_ms: int = 5000) -> None:
    """Send the spans still batched (a forked child before it ends; a test)."""
    provider = _PROVIDER[0] if _PROVIDER else trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


def carrier(invocation: str) -> dict[str, str]:
    """The W3C trace context of an invocation's span, for a fleet batch (empty when it has none)."""
    parent = _PARENTS.get(invocation)
    found: dict[str, str] = {}
    if parent is not None:
        propagate.inject(found, context=parent)
    return found


def adopt(invocation: str, headers: dict[str, str] | None) -> None:
    """A worker: the runs of ``invocation`` join the trace of the command that sent them."""
    if headers:
        setup()
        _PARENTS[invocation] = propagate.extract(headers)


def forget(invocation: str) -> None:
    _PARENTS.pop(invocation, None)


class Tracing(Observer):
    """The observer: the invocation's span, from ``started`` to ``finished``."""

    def __init__(self, executor: str = "local"):
        self.tracer = setup()
        self.executor = executor
        self.span: Span | None = None
        self.invocation: str | None = None

    def started(self, plan: Plan) -> None:
        options = plan.options
        attributes = {"pinstripe.job": plan.spec.name, "pinstripe.trigger": options.trigger,
                      "pinstripe.invocation_id": plan.invocation, "pinstripe.executor": self.executor}
        if options.tick is not None:
            attributes["pinstripe.tick"] = options.tick.isoformat()
        self.span = self.tracer.start_span("pinstripe.invocation", kind=SpanKind.INTERNAL, attributes=attributes)
        self.invocation = plan.invocation
        _PARENTS[plan.invocation] = trace.set_span_in_context(self.span)

    def finished(self, summary: Summary) -> None:
        if self.span is None:
            return
        span, self.span = self.span, None
        span.set_attribute("pinstripe.tenant_count", sum(summary.counts.values()))
        span.set_attribute("pinstripe.status", str(summary.status))
        span.set_attribute("pinstripe.exit_code", int(summary.exit_code))
        for status, count in summary.counts.items():
            span.set_attribute(f"pinstripe.count.{status}", count)
        if int(summary.exit_code) not in (0, 4):  # 4: skipped, already running (not an error)
            span.set_status(StatusCode.ERROR, summary.error or f"{len(summary.failures)} run(s) did not succeed")
        span.end()
        if self.invocation is not None:
            forget(self.invocation)


@contextmanager
def run_span(plan: Plan, tenant: Tenant | None, attempt: int) -> Iterator[Callable[[RunResult], None]]:
    """One attempt of a tenant's run as a ``pinstripe.run`` span, the current context while the job runs.
    Its parent: the invocation's span (or the trace a fleet batch carried); a nested run, whatever is current."""
    tracer = _TRACER[0] if _TRACER else setup()
    parent = _PARENTS.get(plan.invocation)
    attributes: dict[str, Any] = {"pinstripe.job": plan.spec.name, "pinstripe.attempt": attempt,
                                  "pinstripe.invocation_id": plan.invocation}
    if tenant is not None:
        attributes["pinstripe.tenant_id"] = str(tenant.id)
    span = tracer.start_span("pinstripe.run", context=parent, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span, parent))

    def told(result: RunResult) -> None:
        span.set_attribute("pinstripe.status", str(result.status))
        span.set_attribute("pinstripe.duration_s", float(result.duration_s or 0.0))
        if result.status != Status.SUCCEEDED:
            if result.exception is not None:
                span.record_exception(result.exception)
            span.set_status(StatusCode.ERROR, (result.error or str(result.status)).splitlines()[0][:500])

    try:
        yield told
    finally:
        otel_context.detach(token)
        span.end()
