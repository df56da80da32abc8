"""The window's size from the fleet itself: Celery's remote control asked for the worker processes that
consume the invocation's queue (real ``pinstripe worker`` processes on Redis and RabbitMQ)."""
from __future__ import annotations

import uuid

import pytest

from tests.procs import wait_until
from tests.test_fleet import _stop_workers, broker, fleet, worker  # noqa: F401 - fixtures used by name

pytest.importorskip("celery", reason="the celery extra is not installed")


def test_the_fleet_is_counted_on_its_own_queue_and_a_full_window_grows_to_it(fleet):  # noqa: F811
    from pinstripe_jobs.config import load_settings
    from pinstripe_jobs.fleet.broker import make_app
    from pinstripe_jobs.fleet.window import MIN_IN_FLIGHT, Window, fleet_processes

    settings = load_settings(fleet.root / "pinstripe.toml")
    queue = settings.celery["queue"]
    worker(fleet, "--concurrency", "3")
    worker(fleet, "--concurrency", "4", "--pool", "threads")
    worker(fleet, "--concurrency", "5", "--pool", "threads", "--queue", f"{queue}-other")  # not this queue's
    app = make_app(settings)
    assert fleet_processes(app, queue) == 7
    assert fleet_processes(app, f"pst-nobody-{uuid.uuid4().hex[:8]}") == 0
    window = Window(app, queue, None, priority=1)
    assert window.size == MIN_IN_FLIGHT * 2 and not window.full(MIN_IN_FLIGHT * 2 - 1)
    assert window.processes is None  # a window that is not full asks nobody
    assert window.full(MIN_IN_FLIGHT * 2)  # full: the fleet is asked in the background
    wait_until(lambda: window.processes == 7, timeout=30, what="the fleet's answer")
    assert window.size == 2 * 7 * 2 and not window.full(27)  # 2 x 7 processes, x (1 + priority 1)
