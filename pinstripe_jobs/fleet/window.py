"""Fairness on the fleet: how many batches one invocation keeps in the broker at once (its window).

Invocations that run at the same time share one queue, so each keeps at most ``size`` batches in flight
(sent, result not back) and sends the next one as a result comes back: a small invocation started beside a
big one waits behind that window only, not behind every batch of the big one. The window stays
work-conserving: an invocation alone keeps every worker process busy with one batch queued behind each.

Its base is ``[celery] in_flight`` when set, else ``max(2 x the worker processes consuming the queue,
MIN_IN_FLIGHT)``: the processes are found with Celery's remote control (``inspect active_queues`` then
``stats``), in a background thread, first when the window fills, then every ``REDISCOVER_S`` while it stays
full (a fleet that scales up is used). Until the fleet answers, the base is ``MIN_IN_FLIGHT``. A job's
``priority`` p (0..9, ``--priority``) multiplies the window by ``1 + p``: beside each other, invocations get
the workers in proportion to their windows (the queue is FIFO, so each one's throughput is its batches in
flight over the same time in the queue).

Imported only by the celery executor (Celery is an optional extra).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.model.ranges import MAX_PRIORITY

if TYPE_CHECKING:
    from celery import Celery

MIN_IN_FLIGHT = 8  # batches: the window before (or without) an answer from the fleet
REDISCOVER_S = 30.0  # how often a full window asks the fleet again how many processes it has
INSPECT_TIMEOUT_S = 1.0  # how long each of the two remote-control calls waits for the workers' replies
log = logging.getLogger("pinstripe.fleet")


def weight(priority: int) -> int:
    """How many times the base window an invocation of ``priority`` keeps in flight."""
    return 1 + max(0, min(MAX_PRIORITY, priority))


def fleet_processes(app: Celery, queue: str, timeout: float = INSPECT_TIMEOUT_S) -> int:
    """The worker processes (or threads) of every worker that consumes ``queue`` and answers within
    ``timeout``: the sum of their pools' ``max-concurrency``. 0 when none answers."""
    queues: dict[str, Any] = app.control.inspect(timeout=timeout).active_queues() or {}
    names = [name for name, found in queues.items()
             if any(isinstance(q, dict) and q.get("name") == queue for q in found or ())]
    if not names:
        return 0
    stats: dict[str, Any] = app.control.inspect(timeout=timeout, destination=names, limit=len(names)).stats() or {}
    return sum(int((one.get("pool") or {}).get("max-concurrency") or 0) for one in stats.values()
               if isinstance(one, dict))


class Window:
    """One invocation's bound on its batches in flight; ``size`` may grow (or shrink) while it runs, as
    the fleet is found out."""

    def __init__(self, app: Celery, queue: str, configured: int | None, priority: int,
                 clock: Callable[[], float] = time.monotonic):
        self.app, self.queue, self.clock = app, queue, clock
        self.priority = priority
        self.base = configured or MIN_IN_FLIGHT
        self.discovering = configured is None  # [celery] in_flight set: the base is that, never asked
        self.processes: int | None = None  # what the fleet said, once it answered
        self._thread: threading.Thread | None = None
        self._asked = float("-inf")

    @property
    def size(self) -> int:
        return self.base * weight(self.priority)

    def full(self, in_flight: int) -> bool:
        """True while ``in_flight`` batches fill the window; a full window asks the fleet (in the
        background, never blocking) when it has not for ``REDISCOVER_S``."""
        if in_flight < self.size:
            return False
        if self.discovering and self.clock() - self._asked >= REDISCOVER_S and \
                (self._thread is None or not self._thread.is_alive()):
            self._asked = self.clock()
            self._thread = threading.Thread(target=self._discover, daemon=True, name="pinstripe-fleet-window")
            self._thread.start()
        return True

    def _discover(self) -> None:
        try:
            found = fleet_processes(self.app, self.queue)
        except Exception as exc:  # the broker hiccuped: keep the window as it is, ask again later
            log.debug("could not ask the fleet for its worker processes: %s: %s", type(exc).__name__, exc)
            return
        if not found:  # nobody answered (a fleet not up yet, or busy): keep the window, ask again later
            return
        self.processes = found
        self.base = max(2 * found, MIN_IN_FLIGHT)
        log.debug("fleet on queue %s: %d worker processes; window %d batches", self.queue, found, self.size)
