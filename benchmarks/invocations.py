"""What the invocation record costs, standalone: ``python benchmarks/invocations.py`` (BENCH_PG_URL= for
PostgreSQL, default the test server; BENCH_QUICK=1 for a smoke run). Prints figures:

- per run: recording the invocation (begin, with its selection and options) and ending it (counts, durations);
- per tenant: the scan's progress note on the run path, and the heartbeat's write amortised over the tenants
  run between two heartbeats (at 1,000 tenants a second);
- planning a resume over 100,000 tenants, half of them already run in the invocation: reading what ran,
  then reading the tenant source again and leaving those out (target: under 2 s).
"""
from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinstripe_jobs.config import Settings  # noqa: E402
from pinstripe_jobs.execution.invocations import left_out, options_for_resume, scanning  # noqa: E402
from pinstripe_jobs.execution.planner import Planner  # noqa: E402
from pinstripe_jobs.registry.jobs import JobRegistry  # noqa: E402
from pinstripe_jobs.store.state import StateStore  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TENANTS = 10_000 if QUICK else 100_000
DETAILS = {"selection": {"source": "sqlite:///tenants.db", "tenants": [], "exclude": [], "shard": None,
                         "filter": None, "only_failed": False, "multi_tenant": True},
           "options": {"concurrency": 8}, "started_by": "bench@host", "executor": "local"}


def per_run(store: StateStore, n: int) -> tuple[float, float]:
    begins, ends = [], []
    for i in range(n):
        started = time.perf_counter()
        store.begin_invocation(f"bench-{time.time_ns()}-{i}", "bench", "manual", details=DETAILS)
        begins.append(time.perf_counter() - started)
    for row in store.list_invocations(job="bench", status="running", limit=n):
        started = time.perf_counter()
        store.end_invocation(row["id"], "succeeded", 0, {"succeeded": 1})
        ends.append(time.perf_counter() - started)
    return statistics.median(begins) * 1000, statistics.median(ends) * 1000


def per_tenant(store: StateStore) -> tuple[float, float]:
    store.begin_invocation("bench-tenant", "bench", "manual", details=DETAILS)
    items = list(range(200_000))
    started = time.perf_counter()
    for _ in scanning(iter(items), "bench-tenant", store, 0):
        pass
    with_note = time.perf_counter() - started
    started = time.perf_counter()
    for _ in iter(items):
        pass
    plain = time.perf_counter() - started
    beats = []
    for _ in range(20):
        started = time.perf_counter()
        store.renew()
        beats.append(time.perf_counter() - started)
    store.end_invocation("bench-tenant", "succeeded", 0, {})
    per_beat = statistics.median(beats)
    tenants_between_beats = 1000 * store.heartbeat_every
    return (with_note - plain) / len(items) * 1e9, per_beat / tenants_between_beats * 1e9


def resume_planning(root: Path, url: str) -> float:
    (root / "jobs").mkdir(exist_ok=True)
    (root / "jobs" / "fast.py").write_text("multi_tenant = True\n\ndef run(ctx):\n    pass\n")
    db = root / "tenants.db"
    if not db.exists():
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT)")
            conn.executemany("INSERT INTO tenants VALUES (?, 't')", ((i,) for i in range(1, TENANTS + 1)))
    store = StateStore(url)
    invocation = f"bench-resume-{time.time_ns()}"
    store.begin_invocation(invocation, "fast", "manual", details=DETAILS)
    ran = list(range(1, TENANTS // 2 + 1))  # half of them ran: rows that started (a lease), then ended
    for chunk in range(0, len(ran), 500):
        store.claim("fast", ran[chunk:chunk + 500], "manual", invocation=invocation)
    store.engine.call(lambda conn: store.engine.execute(
        conn, "UPDATE pinstripe_runs SET status = ?, ended_at = started_at WHERE invocation = ?",
        ("succeeded", invocation)))
    store.end_invocation(invocation, "interrupted", 130, {})
    record = store.get_invocation(invocation)
    assert record is not None
    settings = Settings(root)
    settings.tenants = f"sqlite:///{db}"
    planner = Planner(settings, JobRegistry(settings), lambda job: [])
    started = time.perf_counter()
    plan = planner.plan("fast", options_for_resume(record, False))
    plan.done = left_out(store, invocation, False)
    remaining = sum(1 for _ in plan.tenants())
    elapsed = time.perf_counter() - started
    assert remaining == TENANTS - TENANTS // 2, remaining
    planner.close()
    store.close()
    return elapsed


def pg_schema(sql: str) -> None:
    """Create or drop the benchmark's own PostgreSQL schema (never the shared one)."""
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(sql)


def main() -> None:
    schema = f"pinstripe_bench_inv_{os.getpid()}"
    try:
        pg_schema(f"CREATE SCHEMA {schema}")
        pg_url: str | None = f"{PG_URL}?options=-csearch_path%3D{schema}"
    except Exception as exc:  # no PostgreSQL here: say so, measure the rest
        print(f"postgres: skipped ({exc})")
        pg_url = None
    try:
        measure(pg_url)
    finally:
        if pg_url:
            pg_schema(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def measure(pg_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        urls = {"sqlite": f"sqlite:///{root / 'state.db'}", **({"postgres": pg_url} if pg_url else {})}
        for name, url in urls.items():
            try:
                store = StateStore(url)
            except Exception as exc:  # no PostgreSQL here: say so, measure the rest
                print(f"{name}: skipped ({exc})")
                continue
            begin_ms, end_ms = per_run(store, 20 if QUICK else 100)
            note_ns, beat_ns = per_tenant(store)
            store.close()
            planning = resume_planning(root, url)
            print(f"{name}: per run: begin {begin_ms:.2f} ms, end {end_ms:.2f} ms (medians)")
            print(f"{name}: per tenant: progress note {note_ns:.0f} ns, heartbeat {beat_ns:.0f} ns amortised "
                  f"(one write per {store.heartbeat_every:.0f} s)")
            print(f"{name}: planning a resume over {TENANTS:,} tenants (half already run): {planning:.2f} s "
                  f"(target < 2 s: {'met' if planning < 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
