"""Fairness on the fleet (issue #22), standalone: ``.venv/bin/python benchmarks/fairness.py``.

A small invocation (20 tenants) started while a big one (20,000 tenants) runs on the same Celery fleet
(2 workers x 8 threads, Redis broker, PostgreSQL state, batches of 50, every tenant sleeps 20 ms): how long
the small one takes beside the big one, against the small one alone and the big one's own duration; and
the same with every batch sent up front (``[celery] in_flight = 100000``: one FIFO queue, as before the
window), where the small one waits for the big one. The big one's duration beside the small ones shows
what sharing costs it. Needs PostgreSQL and Redis on loopback.

BENCH_QUICK=1: 3,000 tenants (a smoke run). Also part of ``make bench`` (``fairness``).
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import PINSTRIPE, QUICK, make_project, timed  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SMALL_RUNS = 3
JOB = '''
import time
from pathlib import Path

def run(ctx):
    time.sleep(0.02)
    with open(Path(__file__).parent.parent / "{name}.log", "a") as fh:
        fh.write("x\\n")
'''


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PINSTRIPE_")}


def _project(tmp: Path, tenants: int, schema: str, queue: str) -> Path:
    root = make_project(tmp / "fairness", tenants)
    (root / "jobs" / "big.py").write_text(JOB.format(name="big"))
    (root / "jobs" / "small.py").write_text(JOB.format(name="small") + "\n\ndef tenants_filter(tenants):\n"
                                            "    return tenants.limit(20)\n")
    (root / "pinstripe.toml").write_text(
        f'tenants = "sqlite:///tenants.db"\nstate = "{PG}?options=-csearch_path%3D{schema}"\nexecutor = "celery"\n\n'
        f'[celery]\nbroker = "redis://127.0.0.1:6379/3"\nqueue = "{queue}"\nbatch_size = 50\n')
    return root


def _workers(root: Path) -> list[subprocess.Popen]:
    workers = []
    for index in range(2):
        log = open(root / f"worker-{index}.log", "w")
        workers.append(subprocess.Popen([PINSTRIPE, "worker", "--pool", "threads", "--concurrency", "8", "--loglevel",
                                         "INFO"], cwd=root, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))
        log.close()
    deadline = time.monotonic() + 60
    while not all("ready." in (root / f"worker-{i}.log").read_text() for i in range(2)):
        if time.monotonic() > deadline:
            raise SystemExit("the benchmark's workers did not start")
        time.sleep(0.1)
    return workers


def _lines(root: Path, name: str) -> int:
    path = root / f"{name}.log"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def beside(root: Path, runs: int) -> tuple[list[float], float, int]:
    """Start the big invocation; once it is running, run the small one ``runs`` times in a row. The small
    runs' times, the big one's duration, and how many big tenants were done when the small ones were."""
    (root / "big.log").unlink(missing_ok=True)
    started = time.perf_counter()
    big = subprocess.Popen([PINSTRIPE, "run-background-job", "--name", "big"], cwd=root, env=_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while _lines(root, "big") < 200:
        if big.poll() is not None:
            raise SystemExit("the big invocation ended before it was measured")
        time.sleep(0.05)
    smalls = [timed([PINSTRIPE, "run-background-job", "--name", "small"], root)[0] for _ in range(runs)]
    done = _lines(root, "big")
    if big.wait() != 0:
        raise SystemExit("the big invocation failed")
    return smalls, time.perf_counter() - started, done


def measure(tmp: Path) -> dict:
    tenants = 3_000 if QUICK else 20_000
    schema = f"pinstripe_bench_{uuid.uuid4().hex[:8]}"
    queue = f"pinstripe-bench-fair-{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "test", "-qc", f"CREATE SCHEMA {schema}"],
                   check=True, capture_output=True)
    root = _project(tmp, tenants, schema, queue)
    workers = _workers(root)
    try:
        alone = [timed([PINSTRIPE, "run-background-job", "--name", "small"], root)[0] for _ in range(SMALL_RUNS)]
        big_alone = timed([PINSTRIPE, "run-background-job", "--name", "big"], root)[0]
        fair, big_fair, done_fair = beside(root, SMALL_RUNS)
        config = root / "pinstripe.toml"
        config.write_text(config.read_text() + "in_flight = 100000\n")  # every batch up front: one FIFO queue
        fifo, big_fifo, done_fifo = beside(root, 1)
    finally:
        for proc in workers:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "test", "-qc", f"DROP SCHEMA {schema} CASCADE"],
                       capture_output=True)
        subprocess.run(["redis-cli", "-n", "3", "DEL", queue], capture_output=True)
    return {"tenants": tenants, "small_alone_s": round(statistics.median(alone), 2),
            "small_beside_s": round(statistics.median(fair), 2), "big_alone_s": round(big_alone, 2),
            "big_beside_s": round(big_fair, 2), "big_done_when_small_done": done_fair,
            "small_beside_fifo_s": round(fifo[0], 2), "big_beside_fifo_s": round(big_fifo, 2),
            "big_done_when_small_done_fifo": done_fifo}


def fairness_rows(tmp: Path) -> list[dict]:
    """The figures as ``make bench`` rows."""
    m = measure(tmp)
    ratio = m["small_beside_s"] / m["small_alone_s"]
    return [{"name": f"fleet fairness: 20 tenants beside a {m['tenants']:,}-tenant invocation vs alone",
             "value": round(ratio, 2), "unit": "x", "target": 3.0, "ok": ratio <= 3.0,
             "detail": f"beside {m['small_beside_s']:.2f} s (with every batch sent up front: "
                       f"{m['small_beside_fifo_s']:.2f} s), alone {m['small_alone_s']:.2f} s; the big one "
                       f"{m['big_beside_s']:.2f} s beside {SMALL_RUNS} small ones, {m['big_alone_s']:.2f} s alone"}]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="pinstripe-bench-fairness-") as folder:
        result = measure(Path(folder))
    print(result)
    print(f"a 20-tenant invocation: {result['small_alone_s']:.2f} s alone, {result['small_beside_s']:.2f} s beside a "
          f"{result['tenants']:,}-tenant one (median of {SMALL_RUNS}; {result['small_beside_fifo_s']:.2f} s with "
          f"every batch sent up front); the big one: {result['big_alone_s']:.2f} s alone, "
          f"{result['big_beside_s']:.2f} s beside them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
