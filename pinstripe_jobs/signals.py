"""Signal handlers that only set a flag; the loops check it and stop cleanly."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .runner import StopFlag


@contextmanager
def stop_on_signals(flag: StopFlag, on_repeat: Callable[[int], None] | None = None) -> Iterator[StopFlag]:
    """SIGINT/SIGTERM set ``flag``; a second signal calls ``on_repeat`` (e.g. to abort at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame) -> None:
        if flag.requested and on_repeat is not None:
            on_repeat(signum)
        flag.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
