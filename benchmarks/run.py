"""`make bench`: every figure with a target (start-up, fan-out, concurrency, memory, output, due tenants,
dashboard, fleet), each beside its target.

Everything is measured side by side in one run, as medians of repeated runs and as ratios (machines
are noisy). Figures are printed as a table and saved to benchmarks/results.json. Nothing here is tuned
to its target: where a target is missed the table says so.
"""
from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
# BENCH_PINSTRIPE=/path/to/other/venv/bin/pinstripe measures another build (a previous release) the same way
PINSTRIPE = os.environ.get("BENCH_PINSTRIPE") or str(BIN / "pinstripe")
QUICK = os.environ.get("BENCH_QUICK") == "1"  # smaller sizes, for a smoke run
# BENCH_ONLY=output,startup runs only those (names: startup, fanout, fanout-pg, concurrency, memory,
# one-tenant, output, due, dashboard, fleet, telemetry, database, fairness, invocations, limits). The speed
# issue's six figures are numbered 1-6 (speed.py).


def make_project(root: Path, tenants: int) -> Path:
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "jobs" / "noop.py").write_text("multi_tenant = False\n\ndef run(ctx):\n    pass\n")
    (root / "jobs" / "tenant_noop.py").write_text("def run(ctx):\n    pass\n")
    (root / "jobs" / "sleepy.py").write_text("import time\n\ndef run(ctx):\n    time.sleep(0.02)\n")
    (root / "jobs" / "async_sleepy.py").write_text(
        "import asyncio\n\nasync def run(ctx):\n    await asyncio.sleep(0.02)\n")
    db = root / "tenants.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT, active BOOLEAN)")
        conn.executemany("INSERT INTO tenants VALUES (?, ?, 1)", ((i, f"tenant-{i}") for i in range(1, tenants + 1)))
    (root / "pinstripe.toml").write_text('tenants = "sqlite:///tenants.db"\n')
    return root


def timed(cmd: list[str], cwd: Path, stdout=subprocess.PIPE, env: dict | None = None) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of one command; its output is read from a pipe (or sent to ``stdout``)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}, **(env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
    if stdout is subprocess.PIPE:
        for _ in iter(lambda: proc.stdout.read(65536), b""):
            pass
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return elapsed, usage.ru_maxrss


def median_of(cmd: list[str], cwd: Path, runs: int, **kw) -> float:
    return statistics.median(timed(cmd, cwd, **kw)[0] for _ in range(runs))


def bench_memory(tmp: Path) -> dict:
    small, large = 1_000, (50_000 if QUICK else 1_000_000)
    peaks = {}
    for n in (small, large):
        root = make_project(tmp / f"memory-{n}", n)
        with open(os.devnull, "wb") as devnull:
            _, peaks[n] = timed([PINSTRIPE, "run-background-job", "--name", "tenant-noop", "--json"], root,
                                stdout=devnull)
    ratio = peaks[large] / peaks[small]
    return {"name": f"5. memory: peak RSS over {large:,} tenants vs {small:,} (--json to /dev/null)",
            "value": round(ratio, 2), "unit": "x", "target": 1.25, "ok": ratio <= 1.25,
            "detail": f"{peaks[large] / 1024:.1f} MiB vs {peaks[small] / 1024:.1f} MiB"}


PRINTER = """
import time
from pathlib import Path

def run(ctx, lines: int = 10000):
    started = time.perf_counter()
    for i in range(lines):
        print(f"tenant {ctx.tenant.id} line {i} of the job's own output")
    Path(f"own-{ctx.tenant.id}.txt").write_text(str(time.perf_counter() - started))
"""


def run_on_pty(cmd: list[str], cwd: Path) -> float:
    """Wall time of a command on a pseudo-terminal (rich output, as a person sees it), its output read."""
    import pty
    import select

    env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
    leader, follower = pty.openpty()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    while True:
        if select.select([leader], [], [], 0.5)[0]:
            try:
                if not os.read(leader, 1 << 16):
                    break
            except OSError:
                break
        elif proc.poll() is not None:
            break
    proc.wait()
    elapsed = time.perf_counter() - started
    os.close(leader)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed on a terminal: {' '.join(cmd)}")
    return elapsed


def bench_terminal_output(tmp: Path) -> list[dict]:
    """4 tenants x 10,000 lines (40,000 lines): on a terminal, piped, and piped with --concurrency 4."""
    import xml.etree.ElementTree as ET

    root = make_project(tmp / "output", 4)
    (root / "jobs" / "printer.py").write_text(PRINTER)
    lines = "2500" if QUICK else "10000"
    base = [PINSTRIPE, "run-background-job", "--name", "printer", "--arg", lines, "--junit-xml", "junit.xml"]
    runs = 3 if QUICK else 5
    times: dict[str, list[float]] = {"pipe": [], "terminal": [], "concurrency 4": []}
    drift: dict[str, list[float]] = {mode: [] for mode in times}
    for _ in range(runs):
        for mode in times:
            if mode == "terminal":
                times[mode].append(run_on_pty(base, root))
            else:
                extra = ["--concurrency", "4"] if mode == "concurrency 4" else []
                times[mode].append(timed(base + extra, root)[0])
            reported = sum(float(case.get("time")) for case in ET.parse(root / "junit.xml").iter("testcase"))
            own = sum(float((root / f"own-{i}.txt").read_text()) for i in range(1, 5))
            drift[mode].append(abs(reported - own) / own)
    pipe = statistics.median(times["pipe"])
    rows = []
    for mode in ("terminal", "concurrency 4"):
        ratio = statistics.median(times[mode]) / pipe
        rows.append({"name": f"output: 4 x {int(lines):,} printed lines, {mode} vs pipe",
                     "value": round(ratio, 2), "unit": "x", "target": 2.0, "ok": ratio <= 2.0,
                     "detail": f"{statistics.median(times[mode]):.2f} s vs {pipe:.2f} s"})
    medians = {mode: statistics.median(values) * 100 for mode, values in drift.items()}
    worst = max(medians.values())
    rows.append({"name": "output: reported job durations vs the jobs' own measured time (worst mode)",
                 "value": round(worst, 1), "unit": "%", "target": 10, "ok": worst <= 10,
                 "detail": "from --junit-xml; median per mode: " + ", ".join(f"{m} {v:.1f}%"
                                                                           for m, v in medians.items())})
    return rows


DUE_BENCH = """
import sys, time
from datetime import datetime, timezone
from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.scheduling.bot import Scheduler

runner = Runner(load_settings())
scheduler = Scheduler(runner)
scheduler.specs()
times, due = [], 0
for hour, minute in ((8, 0), (8, 15), (8, 30), (8, 45), (9, 0)):  # five minutes, different tenants due
    at = datetime(2026, 6, 1, hour, minute, tzinfo=timezone.utc)
    started = time.perf_counter()
    preview = scheduler.preview(at)
    times.append(time.perf_counter() - started)
    due = max(due, sum(len(tenants) for _, tenants in preview))
times.sort()
print(times[len(times) // 2], due)
"""


def bench_due_tenants(tmp: Path) -> dict:
    """Which of 100,000 tenants (30 time zones, a schedule_for per tenant) are due for one minute."""
    n = 20_000 if QUICK else 100_000
    root = tmp / "due"
    (root / "jobs").mkdir(parents=True)
    zones = ["UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome",
             "Europe/Athens", "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Kolkata",
             "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Asia/Seoul", "Australia/Perth",
             "Australia/Sydney", "Pacific/Auckland", "America/New_York", "America/Chicago", "America/Denver",
             "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "America/Sao_Paulo",
             "America/Mexico_City", "America/Toronto", "Africa/Johannesburg"]
    crons = ["0 9 * * *", "0 8 * * 1-5", "*/15 * * * *", "30 7 * * *", None]
    with sqlite3.connect(root / "tenants.db") as conn:
        conn.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, timezone TEXT, cron TEXT)")
        conn.executemany("INSERT INTO tenants VALUES (?, ?, ?)",
                         ((i, zones[i % 30], crons[i % 5]) for i in range(1, n + 1)))
    (root / "pinstripe.toml").write_text('tenants = "sqlite:///tenants.db"\n')
    (root / "jobs" / "digest.py").write_text('timezone = "tenant"\n\ndef schedule_for(tenant):\n'
                                             '    return tenant["cron"]\n\ndef run(ctx):\n    pass\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}
    out = subprocess.run([sys.executable, "-c", DUE_BENCH], cwd=root, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    seconds, due = float(out[0]), int(out[1])
    return {"name": f"per-tenant schedules: which of {n:,} tenants (30 zones, schedule_for) are due in a minute",
            "value": round(seconds, 3), "unit": "s", "target": 1.0, "ok": seconds <= 1.0,
            "detail": f"median of 5 minutes; up to {due:,} tenants due in one"}


DASHBOARD_BENCH = r"""
import statistics, sys, time
from pinstripe_jobs.config import load_settings
from pinstripe_jobs.web.app import Dashboard, create_app
from starlette.testclient import TestClient

client = TestClient(create_app(Dashboard(load_settings("pinstripe.toml"))))
def med(path, **params):
    times = []
    for _ in range(7):
        started = time.perf_counter()
        response = client.get(path, params=params)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:300]
    return statistics.median(times), response
page, html = med("/jobs/bench")
assert html.text.count("<tr class=") >= 50
failed, _ = med("/api/jobs/bench/tenants", status="failed")
search, _ = med("/api/jobs/bench/tenants", q="4321")
deep, _ = med("/api/jobs/bench/tenants", cursor="4|0090000")
failures, _ = med("/api/failures")
print(page, failed, search, deep, failures)
"""


def bench_dashboard(tmp: Path) -> dict:
    """The job page (tenant grid, invocations, chart) at 100,000 tenants over 1,000,000 history rows."""
    tenants = 20_000 if QUICK else 100_000
    invocations = 10
    root = tmp / "dashboard"
    (root / "jobs").mkdir(parents=True)
    (root / "jobs" / "bench.py").write_text("def run(ctx):\n    pass\n")
    (root / "pinstripe.toml").write_text('tenants = "tenants.json"\n')
    (root / "tenants.json").write_text("[]")
    sys.path.insert(0, str(HERE.parent))
    from pinstripe_jobs.store import StateStore

    store = StateStore(f"sqlite:///{root / '.pinstripe' / 'state.db'}", history_days=0)

    def load(conn) -> None:  # a history written in bulk, then each tenant's newest status folded
        conn.execute("BEGIN")
        run_id = 0
        for inv in range(invocations):
            started = f"2026-11-{inv + 10:02d}T03:00:00.000000+00:00"
            ended = f"2026-11-{inv + 10:02d}T03:10:00.000000+00:00"
            conn.execute("INSERT INTO pinstripe_invocations (id, job, trigger, started_at, ended_at, status, "
                         "exit_code, counts, p50_ms, p95_ms, max_ms) VALUES (?, 'bench', 'schedule', ?, ?, 'failed', "
                         "1, ?, 20, 40, 90)",
                         (f"inv{inv}", started, ended, f"failed={tenants // 50},succeeded={tenants - tenants // 50}"))
            rows = []
            for tenant in range(1, tenants + 1):
                run_id += 1
                failed = (tenant * 7 + inv) % 50 == 0
                rows.append(("bench", f"{tenant:07d}", "manual", started, ended, "failed" if failed else "succeeded",
                             f"ValueError: tenant {tenant % 3}" if failed else None, f"inv{inv}", 20.0 + tenant % 30))
            conn.executemany("INSERT INTO pinstripe_runs (job, tenant, trigger, started_at, ended_at, status, error, "
                             "invocation, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    store.engine.call(load)
    store.rebuild_latest()
    store.engine.call(lambda conn: conn.execute("ANALYZE"))
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}
    out = subprocess.run([sys.executable, "-c", DASHBOARD_BENCH], cwd=root, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    page, failed, search, deep, failures = (float(x) for x in out.stdout.split())
    return {"name": f"dashboard: job page (grid, invocations, chart) at {tenants:,} tenants, "
                    f"{tenants * invocations:,} runs", "value": round(page * 1000, 1), "unit": "ms", "target": 250,
            "ok": page <= 0.25,
            "detail": f"median of 7, in-process; API grid filtered by status {failed * 1000:.1f} ms, by tenant id "
                      f"{search * 1000:.1f} ms, a page deep in the grid {deep * 1000:.1f} ms, failures page "
                      f"{failures * 1000:.1f} ms; SQLite state"}


SUBMIT_BENCH = r"""
import sys, time
from pinstripe_jobs.config import load_settings
from pinstripe_jobs.fleet.executor import FleetExecutor
from pinstripe_jobs.model.plan import RunOptions
from pinstripe_jobs.observers.base import NullObserver
from pinstripe_jobs.model.results import Summary
from pinstripe_jobs.execution.runner import Runner

settings = load_settings()
settings.executor = "celery"
settings.celery["queue"] = sys.argv[1]  # a queue no worker reads: only the sending is timed
settings.celery["in_flight"] = 100000  # every batch sent at once (no window waiting for results)
runner = Runner(settings)
plan = runner.plan("tenant-noop", RunOptions())
executor = FleetExecutor(runner)
executor.check(plan)
executor._wait = lambda *args, **kwargs: None
started = time.perf_counter()
executor.run(plan, plan.tenants(), NullObserver(), Summary("tenant-noop"))
print(time.perf_counter() - started)
"""


def bench_fleet(tmp: Path) -> list[dict]:
    """The celery executor on this machine: 2 workers x 8 threads vs --concurrency 16; submitting 100,000
    tenants; the CLI's memory while 100,000 results come back. Needs PostgreSQL and Redis on loopback."""
    import uuid

    n, big = (500, 20_000) if QUICK else (2_000, 100_000)
    schema = f"pinstripe_bench_{uuid.uuid4().hex[:8]}"
    pg = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "test", "-qc", f"CREATE SCHEMA {schema}"],
                   check=True, capture_output=True)
    queue = f"pinstripe-bench-{uuid.uuid4().hex[:8]}"
    workers = []
    try:
        rows = []
        for size in (n, 1_000, big):
            root = make_project(tmp / f"fleet-{size}", size)
            (root / "pinstripe.toml").write_text(
                f'tenants = "sqlite:///tenants.db"\nstate = "{pg}?options=-csearch_path%3D{schema}"\n\n[celery]\n'
                f'broker = "redis://127.0.0.1:6379/3"\nqueue = "{queue}"\nbatch_size = 50\n')
        root = tmp / f"fleet-{big}"  # workers read the largest tenant table: every run's tenants are in it
        env = {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}
        for index in range(2):
            log = root / f"worker-{index}.log"
            workers.append(subprocess.Popen([PINSTRIPE, "worker", "--pool", "threads", "--concurrency", "8",
                                             "--loglevel", "INFO"], cwd=root, env=env, stdout=open(log, "w"),
                                            stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while not all("ready." in (root / f"worker-{i}.log").read_text() for i in range(2)):
            if time.monotonic() > deadline:
                raise SystemExit("the benchmark's workers did not start")
            time.sleep(0.1)
        small = tmp / f"fleet-{n}"
        fleet = median_of([PINSTRIPE, "run-background-job", "--name", "sleepy", "--executor", "celery"], small, 3)
        local = median_of([PINSTRIPE, "run-background-job", "--name", "sleepy", "--concurrency", "16"], small, 3)
        ideal = n * 0.02 / 16
        rows.append({"name": f"fleet: {n:,} tenants x 20 ms, 2 workers x 8 threads vs local --concurrency 16",
                     "value": round((fleet - local) / n * 1000, 2), "unit": "ms/tenant", "target": "-", "ok": True,
                     "detail": f"fleet {fleet:.2f} s, local {local:.2f} s, ideal {ideal:.2f} s; both with "
                               "PostgreSQL state and history"})
        out = subprocess.run([sys.executable, "-c", SUBMIT_BENCH, f"{queue}-nobody"], cwd=tmp / f"fleet-{big}",
                             env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        submit = float(out.stdout.split()[-1])
        subprocess.run(["redis-cli", "-n", "3", "DEL", f"{queue}-nobody"], capture_output=True)
        rows.append({"name": f"fleet: time to submit {big:,} tenants (batches of 50)", "value": round(submit, 2),
                     "unit": "s", "target": 60, "ok": submit < 60,
                     "detail": f"{big // 50:,} task messages to Redis, tenants read from SQLite"})
        peaks = {}
        for size in (1_000, big):
            _, peaks[size] = timed([PINSTRIPE, "run-background-job", "--name", "tenant-noop", "--executor", "celery"],
                                   tmp / f"fleet-{size}")
        ratio = peaks[big] / peaks[1_000]
        rows.append({"name": f"fleet: the CLI's peak RSS while {big:,} results come back vs 1,000",
                     "value": round(ratio, 2), "unit": "x", "target": 1.25, "ok": ratio <= 1.25,
                     "detail": f"{peaks[big] / 1024:.1f} MiB vs {peaks[1_000] / 1024:.1f} MiB"})
        return rows
    finally:
        import signal

        for proc in workers:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "test", "-qc",
                        f"DROP SCHEMA {schema} CASCADE"], capture_output=True)


def bench_telemetry(tmp: Path) -> list[dict]:
    """Issue 23's figures (benchmarks/telemetry.py), as rows of this table."""
    import telemetry

    per = telemetry.per_tenant(tmp)
    start = telemetry.startup(tmp)
    return [
        {"name": per["name"], "value": per["added_us"], "unit": "us", "target": "(measured)", "ok": True,
         "detail": f"{per['off_us']} us off, {per['on_us']} us on, medians of {per['runs']} interleaved runs"},
        {"name": start["name"], "value": start["ratio"], "unit": "x", "target": 1.05, "ok": start["ratio"] <= 1.05,
         "detail": f"{start['with_ms']} ms with the extras, {start['without_ms']} ms without"},
    ]


def bench_database(tmp: Path) -> list[dict]:
    """Issue 21's figures (benchmarks/database.py): ctx.db over PostgreSQL schemas, beside django-tenants."""
    import database

    return database.bench_database(tmp)


def bench_script(script: str) -> list[dict]:
    """A benchmark that prints its own figures (benchmarks/invocations.py, limits.py): each line a row."""
    done = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, check=True)
    return [{"name": f"{script}: {line.strip()}", "value": "", "unit": "", "target": "(see README)", "ok": True,
             "detail": "printed by the script"} for line in done.stdout.splitlines() if line.strip()]


def main() -> int:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "pinstripe_jobs")], check=True)
    with tempfile.TemporaryDirectory(prefix="pinstripe-bench-") as name:
        tmp = Path(name)
        from speed import BENCHES

        benches = {name: (lambda bench=bench: bench(tmp)) for name, bench in BENCHES.items()}
        benches.update({"memory": lambda: [bench_memory(tmp)], "output": lambda: bench_terminal_output(tmp),
                        "due": lambda: [bench_due_tenants(tmp)], "dashboard": lambda: [bench_dashboard(tmp)],
                        "fleet": lambda: bench_fleet(tmp), "telemetry": lambda: bench_telemetry(tmp),
                        "database": lambda: bench_database(tmp),
                        "invocations": lambda: bench_script("invocations.py"),
                        "limits": lambda: bench_script("limits.py")})
        from fairness import fairness_rows

        benches["fairness"] = lambda: fairness_rows(tmp)  # benchmarks/fairness.py
        only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name] or list(benches)
        results = [row for name in only for row in benches[name]()]
    width = max(len(r["name"]) for r in results)
    print(f"{'benchmark':<{width}}  {'measured':>14}  {'target':>12}  result")
    for r in results:
        relation = ">=" if r.get("higher_is_better") else "<="
        print(f"{r['name']:<{width}}  {r['value']:>8} {r['unit']:<5}  {relation} {str(r['target']):<9}  "
              f"{'met' if r['ok'] else 'MISSED'}  ({r['detail']})")
    out = HERE / "results.json"
    out.write_text(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(), "quick": QUICK,
                               "results": results}, indent=2) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
