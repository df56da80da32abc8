"""A bounded, thread-safe LRU of SQLAlchemy engines, one per tenant database (``tenancy = "database"``):
100,000 tenants do not mean 100,000 pools. The least recently used engine is disposed when a new one would
pass the limit; connections a run still holds stay usable and are closed when that run returns them.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class EngineCache:
    def __init__(self, make: Callable[[str], Engine], limit: int):
        if limit < 1:
            raise ValueError("an engine cache holds at least one engine")
        self._make = make
        self.limit = limit
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self.created = 0  # engines made so far (for tests and benchmarks)
        self.disposed = 0

    def get(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is not None:
                self._engines.move_to_end(url)
                return engine
            engine = self._make(url)
            self.created += 1
            self._engines[url] = engine
            while len(self._engines) > self.limit:
                _, old = self._engines.popitem(last=False)
                old.dispose()
                self.disposed += 1
            return engine

    def __len__(self) -> int:
        return len(self._engines)

    def __contains__(self, url: str) -> bool:
        return url in self._engines

    def dispose(self, close: bool = True) -> None:
        """Drop every engine. ``close=False`` after a fork: the parent's connections are the parent's."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.dispose(close=close)
