"""Shared by the store's contract suite: stores on the ``state_url`` of tests/conftest.py (a real SQLite file
and a real PostgreSQL schema), and a real child process that holds something and is then killed -9."""
from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from pinstripe_jobs.store import StateStore

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

HOLDER = """
import sys, time
from datetime import datetime
from pinstripe_jobs.store import StateStore
url, what = sys.argv[1], sys.argv[2]
store = StateStore(url)
if what == "run":
    held = store.begin_run("job", 1, "manual") is not None
elif what == "claim":
    held = bool(store.claim("job", [1, 2], "manual"))
elif what == "tick":
    held = store.claim_tick("job", datetime.fromisoformat(sys.argv[3]))
elif what == "slot":
    held = store.take_slot(1, 1) is not None
else:
    store.begin_invocation("inv-dead", "job", "manual")
    store.end_run(store.begin_run("job", 1, "manual", invocation="inv-dead"), "succeeded", duration_s=0.5)
    store.begin_run("job", 2, "manual", invocation="inv-dead")
    held = True
print("held" if held else "refused", flush=True)
time.sleep(120)
"""


@pytest.fixture
def stores(state_url):
    """Open stores on one database (two processes' views: each has its own connection); all closed after."""
    opened: list[StateStore] = []

    def make(**options) -> StateStore:
        store = StateStore(state_url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def killed(state_url):
    """``killed(what, *args)``: a child process takes a run lock / claim / tick / slot / invocation on the
    store, then is killed -9 (no cleanup code runs). Returns its pid."""
    def hold(what: str, *args: str) -> int:
        child = subprocess.Popen([sys.executable, "-c", HOLDER, state_url, what, *args], stdout=subprocess.PIPE,
                                 text=True)
        try:
            line = child.stdout.readline().strip()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert line == "held", f"the child could not take its {what}: {line!r}"
        return child.pid

    return hold
