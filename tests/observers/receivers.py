"""Real HTTP receivers on 127.0.0.1 for the telemetry tests: an OTLP/HTTP trace collector that decodes the
protobuf payloads (opentelemetry-proto's ExportTraceServiceRequest), and a recorder of heartbeat pings."""
from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Span:
    def __init__(self, span, resource: dict):
        self.name = span.name
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex()
        self.status_code = span.status.code  # 0 unset, 1 ok, 2 error
        self.status_message = span.status.message
        self.attributes = {a.key: _value(a.value) for a in span.attributes}
        self.events = [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events]
        self.duration_s = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
        self.resource = resource

    def __repr__(self) -> str:
        return f"Span({self.name}, {self.attributes})"


def _value(value):
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class Receiver:
    """Start with ``with Receiver(kind) as r``; ``r.url`` is its base URL."""

    def __init__(self, handle):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self._handle("POST")

            def do_GET(self):
                self._handle("GET")

            def _handle(self, method):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status = handle(receiver, method, self.path, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class OtlpReceiver(Receiver):
    """Collects the spans sent to ``/v1/traces``."""

    def __init__(self):
        self.spans: list[Span] = []
        super().__init__(OtlpReceiver._take)

    @staticmethod
    def _take(receiver, method, path, body) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [Span(s, resource) for s in scope_spans.spans]
        with receiver.lock:
            receiver.spans += found
        return 200

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.name == name]

    def wait(self, condition, timeout: float = 30, what: str = "spans"):
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; received {self.spans}")
            time.sleep(0.05)


class PingReceiver(Receiver):
    """Records each call (method, path, JSON body); answers ``status``."""

    def __init__(self, status: int = 200, delay: float = 0):
        self.calls: list[tuple[str, str, dict | None]] = []
        self.status = status
        self.delay = delay
        super().__init__(PingReceiver._take)

    @staticmethod
    def _take(receiver, method, path, body) -> int:
        if receiver.delay:
            time.sleep(receiver.delay)  # a slow monitor: the caller's timeout must cut it short
        with receiver.lock:
            receiver.calls.append((method, path, json.loads(body) if body else None))
        return receiver.status
