"""Named limits (issue #22), standalone: ``.venv/bin/python benchmarks/limits.py`` (BENCH_QUICK=1: shorter).

1. The cost of taking a token: uncontended (one process, a limit it never reaches), and contended by four
   processes taking from the same limit at once; per token, and per store round trip (block of one).
2. How close the achieved rate comes to the configured one at 10/s, 100/s and 1,000/s: two processes take
   tokens as fast as they can; the most tokens seen in any one-second window is printed beside it.

On the embedded SQLite store and, when ``PINSTRIPE_TEST_PG_URL`` (or the default local server) answers, on
PostgreSQL. Each process opens its own store, as separate commands or hosts would.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinstripe_jobs.execution.limits import Limiter, LimitSpec  # noqa: E402
from pinstripe_jobs.execution.signals import StopFlag  # noqa: E402
from pinstripe_jobs.store.state import StateStore  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
PG_URL = os.environ.get("PINSTRIPE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _taker(url: str, spec: tuple[int, float], name: str, tokens: int | None, seconds: float | None,
           start_at: float, out: multiprocessing.Queue) -> None:
    store = StateStore(url)
    limiter = Limiter({name: LimitSpec(name, *spec)}, lambda: store, StopFlag())
    times: list[float] = []
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.perf_counter()
    while (tokens is None or len(times) < tokens) and (seconds is None or time.perf_counter() - began < seconds):
        limiter.take(name, "")
        times.append(time.time())
    elapsed = time.perf_counter() - began
    limiter.close()
    store.close()
    out.put((elapsed, times))


def together(url: str, spec: tuple[int, float], name: str, processes: int, tokens: int | None = None,
             seconds: float | None = None) -> list[tuple[float, list[float]]]:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=_taker, args=(url, spec, name, tokens, seconds, start_at, out))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def most_in_window(times: list[float], window: float) -> int:
    times, best, low = sorted(times), 0, 0
    for high, t in enumerate(times):
        while times[low] <= t - window:
            low += 1
        best = max(best, high - low + 1)
    return best


def round_trip_us(url: str) -> float:
    store = StateStore(url)
    n = 100 if QUICK else 400
    began = time.perf_counter()
    for _ in range(n):
        store.take_tokens("bench-rt", "", 10**6, 1.0, 1, 0.02)
    cost = (time.perf_counter() - began) / n * 1e6
    store.close()
    return cost


def bench(label: str, url: str) -> None:
    print(f"\n{label}")
    tokens = 5000 if QUICK else 20000
    [(elapsed, _)] = together(url, (10**6, 1.0), "bench-free", 1, tokens=tokens)
    print(f"  take a token, uncontended:         {elapsed / tokens * 1e6:8.1f} us/token "
          f"(blocks of up to 100 per round trip)")
    print(f"  one store round trip (block of 1): {round_trip_us(url):8.1f} us")
    results = together(url, (10**6, 1.0), "bench-shared", 4, tokens=tokens // 4)
    per = sum(e for e, _ in results) / sum(len(t) for _, t in results)
    print(f"  take a token, 4 processes at once: {per * 1e6:8.1f} us/token (each process's own time)")
    for rate in (10, 100, 1000):
        seconds = 3.0 if QUICK else 6.0
        results = together(url, (rate, 1.0), f"bench-rate-{rate}", 2, seconds=seconds)
        times = sorted(t for _, ts in results for t in ts)
        achieved = (len(times) - 1) / (times[-1] - times[0])
        print(f"  {rate:5d}/s configured: achieved {achieved:8.1f}/s ({achieved / rate:6.1%}) over "
              f"{times[-1] - times[0]:.1f}s by 2 processes; most in any 1s window: {most_in_window(times, 1.0)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        bench("SQLite state store (processes on one machine)", f"sqlite:///{folder}/state.db")
    try:
        StateStore(PG_URL, retry_s=2).close()
    except Exception as exc:  # no server: SQLite only
        print(f"\nPostgreSQL not measured: {exc}")
        return
    bench("PostgreSQL state store (local server)", PG_URL)


if __name__ == "__main__":
    main()
