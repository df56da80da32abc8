"""What telemetry costs (issue #23), standalone: ``.venv/bin/python benchmarks/telemetry.py``.

1. Per-tenant cost of a no-op job with tracing off and on (OTLP/HTTP, the SDK's batch span processor, to a
   receiver in this process that accepts and drops the payloads): one run of N tenants timed inside its own
   process (start-up left out, the spans' final export included) / N, medians of interleaved runs.
2. Start-up of ``run-background-job --name noop`` with telemetry off: a regular install with the otel and
   metrics extras against one without them (two fresh virtual environments, runs interleaved).

BENCH_QUICK=1: smaller sizes and fewer runs (a smoke run). BENCH_ONLY=pertenant or startup: one of them.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import QUICK, make_project, timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


# One run timed inside its process, from the plan to the last span sent (start-up left out): the machine's
# load moves a whole command's wall time more than tracing does.
RUN = """
import sys, time
from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.model.plan import NullObserver, RunOptions
from pinstripe_jobs.observers.telemetry import flush_traces, observe
runner = Runner(load_settings())
observer = observe(runner, NullObserver())
plan = runner.plan("tenant_noop", RunOptions())
started = time.perf_counter()
summary = runner.execute(plan, observer)
flush_traces()
print(time.perf_counter() - started)
assert summary.exit_code == 0
runner.close()
"""


def per_tenant(tmp: Path) -> dict:
    n = 500 if QUICK else 3000
    runs = 3 if QUICK else 7
    project = make_project(tmp / "many", n)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    on = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
          "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PINSTRIPE_", "OTEL_"))}
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(runs):
        for label, env in (("off", {}), ("on", on)):
            done = subprocess.run([sys.executable, "-c", RUN], cwd=project, env={**base, **env}, capture_output=True,
                                  text=True, check=True)
            times[label].append(float(done.stdout.split()[-1]))
    server.shutdown()
    off, on_ = (statistics.median(times[k]) / n * 1e6 for k in ("off", "on"))
    return {"name": f"per-tenant cost, no-op job, {n} tenants, SQLite state: tracing off / on (OTLP/HTTP batch "
                    "exporter to a local receiver)", "off_us": round(off, 1), "on_us": round(on_, 1),
            "added_us": round(on_ - off, 1), "runs": runs}


def _install(target: Path, extras: str) -> Path:
    venv.EnvBuilder(with_pip=True).create(target)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [f"{ROOT}{extras}"], check=True)
    return target / "bin"


def startup(tmp: Path) -> dict:
    without = _install(tmp / "without", "")
    with_extras = _install(tmp / "with", "[otel,metrics]")
    project = make_project(tmp / "startup", 10)
    runs = 7 if QUICK else 21
    times: dict[str, list[float]] = {"without": [], "with": []}
    env = {"OTEL_TRACES_EXPORTER": "", "OTEL_SDK_DISABLED": ""}
    for _ in range(runs):
        for label, bin_dir in (("without", without), ("with", with_extras)):
            times[label].append(timed([str(bin_dir / "pinstripe"), "run-background-job", "--name", "noop"], project,
                                      env=env)[0])
    med = {key: statistics.median(values) * 1e3 for key, values in times.items()}
    return {"name": "start-up, run-background-job --name noop, telemetry off: extras installed / not installed",
            "with_ms": round(med["with"], 1), "without_ms": round(med["without"], 1),
            "ratio": round(med["with"] / med["without"], 3)}


def main() -> int:
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    with tempfile.TemporaryDirectory(prefix="pinstripe-bench-telemetry-") as folder:
        tmp = Path(folder)
        for name, bench in (("pertenant", per_tenant), ("startup", startup)):
            if not only or name in only:
                print(bench(tmp), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
