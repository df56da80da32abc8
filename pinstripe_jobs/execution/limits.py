"""Named limits (issue #22): the ``[limits]`` table, checked at load, and ``ctx.limit(name, key=...)``.

``partner_api = "100/s"`` (also ``/m``, ``/h``): never more than that many calls in any window of that
length, counted across every process and host that share the state store (``store/limits.py`` says how).
``smtp = { concurrency = 5 }``: at most five holders at once, across processes and hosts; both may be
combined: ``{ rate = "10/s", concurrency = 2 }``.

Waiting: a plain job's thread sleeps on the stop flag (no CPU, no connection held; a stop raises
``RunInterrupted``, a timeout ends the child process as it ends any run); an ``async def`` job awaits, so
its event loop runs other tenants meanwhile (a timeout cancels the wait like any await). Tokens are taken
from the store in small blocks that grow while a process uses all it gets and shrink when some go unused
(those are given back): one round trip serves many calls at high rates.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from pinstripe_jobs.errors import ConfigError, PinstripeError
from pinstripe_jobs.execution.signals import RunInterrupted, StopFlag

WINDOWS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_COUNT = 1_000_000  # tokens per window
MAX_CONCURRENCY = 10_000
MAX_BLOCK = 100  # tokens per round trip at most
HOLD_S = 0.02  # a block's tokens are used within this long (at most 2% of the window)
SLOT_POLL_S = (0.02, 0.5)  # a concurrency limit's wait: first and longest poll
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
EXAMPLE = 'Example: [limits]\npartner_api = "100/s"\nsmtp = { concurrency = 5 }'


class LimitSpec:
    """One named limit: ``count`` per ``window`` seconds, and/or ``concurrency`` holders at once."""

    __slots__ = ("name", "count", "window", "concurrency")

    def __init__(self, name: str, count: int | None = None, window: float | None = None,
                 concurrency: int | None = None):
        self.name, self.count, self.window, self.concurrency = name, count, window, concurrency

    def describe(self) -> str:
        parts = []
        if self.count is not None and self.window is not None:
            unit = {1.0: "s", 60.0: "m", 3600.0: "h"}[self.window]
            parts.append(f"{self.count}/{unit}")
        if self.concurrency is not None:
            parts.append(f"concurrency {self.concurrency}")
        return ", ".join(parts)


def parse_rate(value: object, where: str) -> tuple[int, float]:
    """``"100/s"`` -> (100, 1.0); a ``ConfigError`` naming ``where`` and the range otherwise."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{where} must be a rate such as \"100/s\", \"600/m\" or \"5000/h\", got {value!r}.",
                          EXAMPLE)
    count = int(match[1])
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"{where}: the count must be at least 1 and at most {MAX_COUNT}, got {count}.", EXAMPLE)
    return count, WINDOWS[match[2]]


def limits_table(table: object, where: str) -> dict[str, LimitSpec]:
    """The ``[limits]`` table of ``where``, checked: names, rates and concurrencies in range."""
    if not isinstance(table, dict):
        raise ConfigError(f"'limits' in {where} must be a table.", EXAMPLE)
    specs = {}
    for name, value in table.items():
        label = f"[limits] {name} in {where}"
        if not _NAME.match(name):
            raise ConfigError(f"Limit name {name!r} in {where} is not a name.", "Use letters, digits, _ and -.")
        if isinstance(value, str):
            specs[name] = LimitSpec(name, *parse_rate(value, label))
            continue
        if not isinstance(value, dict) or not value or set(value) - {"rate", "concurrency"}:
            raise ConfigError(f"{label} must be a rate (\"100/s\") or a table with rate and/or concurrency, "
                              f"got {value!r}.", EXAMPLE)
        spec = LimitSpec(name)
        if "rate" in value:
            spec.count, spec.window = parse_rate(value["rate"], f"{label}: rate")
        if "concurrency" in value:
            number = value["concurrency"]
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_CONCURRENCY:
                raise ConfigError(f"{label}: concurrency must be a whole number at least 1 and at most "
                                  f"{MAX_CONCURRENCY}, got {number!r}.", EXAMPLE)
            spec.concurrency = number
        specs[name] = spec
    return specs


class UnknownLimit(PinstripeError):
    """A job named a limit that ``[limits]`` does not define (fails that tenant's run)."""


class _Block:
    """Tokens this process was granted and may still use: ``left`` of them, until ``until`` (monotonic)."""

    __slots__ = ("block", "left", "until", "size")

    def __init__(self, block: int | None, left: int, until: float, size: int):
        self.block, self.left, self.until, self.size = block, left, until, size


Waited = Callable[[str, float], None]  # (limit name, seconds waited): told when a wait ended


class LimitStore(Protocol):
    """What the limiter uses of the state store (``store.contracts.Limits`` and ``Slots``; not imported here:
    the config reads ``[limits]`` through this module)."""

    def take_tokens(self, name: str, bucket: str, count: int, window: float, want: int, hold: float) -> Any: ...

    def return_tokens(self, block: int, unused: int) -> None: ...

    def take_limit_slot(self, name: str, bucket: str, cap: int) -> tuple[str, int] | None: ...

    def release_slot(self, slot: tuple[str, int]) -> None: ...


class Limiter:
    """This process's side of the named limits: local blocks of tokens over the shared store."""

    def __init__(self, specs: dict[str, LimitSpec], store: Callable[[], LimitStore], stop: StopFlag):
        self.specs = specs
        self.store = store
        self.stop = stop
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.blocks: dict[tuple[str, str], _Block] = {}

    def spec(self, name: str) -> LimitSpec:
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UnknownLimit(f"ctx.limit({name!r}): no limit of that name (limits: {known}).",
                               f"Define it in [limits] of the config, e.g. {name} = \"10/s\".")
        return spec

    # -- rate: one token --------------------------------------------------------------------------
    def _local(self, name: str, bucket: str) -> tuple[bool, float]:
        """A token from this process's block if one is left (True); else ask the store: (granted, wait)."""
        spec = self.spec(name)
        assert spec.count is not None and spec.window is not None
        if os.getpid() != self.pid:  # a forked child: never its parent's tokens, nor a lock a parent thread held
            self.pid, self.blocks, self.lock = os.getpid(), {}, threading.Lock()
        with self.lock:
            now = time.monotonic()
            held = self.blocks.get((name, bucket))
            size = 1
            if held is not None:
                if held.left > 0 and now < held.until:
                    held.left -= 1
                    return True, 0.0
                size = _next_size(held, spec.count)
                if held.left > 0 and held.block is not None:  # expired unused: give them back
                    self.store().return_tokens(held.block, held.left)
            hold = min(HOLD_S, spec.window * 0.02)
            sent = time.monotonic()
            grant = self.store().take_tokens(name, bucket, spec.count, spec.window, size, hold)
            if grant.tokens <= 0:
                self.blocks.pop((name, bucket), None)
                return False, grant.retry_in
            self.blocks[(name, bucket)] = _Block(grant.block, grant.tokens - 1, sent + hold, size)
            return True, 0.0

    def take(self, name: str, bucket: str) -> float:
        """One token (waiting as long as needed, on the stop flag): the seconds waited."""
        started = time.monotonic()
        while True:
            granted, wait = self._local(name, bucket)
            if granted:
                return time.monotonic() - started
            if self.stop.event.wait(min(wait, 1.0)):
                raise RunInterrupted("stopped while waiting for a limit")

    async def atake(self, name: str, bucket: str) -> float:
        import asyncio

        started = time.monotonic()
        while True:
            granted, wait = await asyncio.to_thread(self._local, name, bucket)
            if granted:
                return time.monotonic() - started
            await asyncio.sleep(min(wait, 0.25))
            if self.stop.requested:
                raise RunInterrupted("stopped while waiting for a limit")

    # -- concurrency: one slot --------------------------------------------------------------------
    def slot(self, name: str, bucket: str, cap: int) -> tuple[tuple[str, int], float]:
        started, delay = time.monotonic(), SLOT_POLL_S[0]
        while (held := self.store().take_limit_slot(name, bucket, cap)) is None:
            if self.stop.event.wait(delay):
                raise RunInterrupted("stopped while waiting for a limit")
            delay = min(delay * 2, SLOT_POLL_S[1])
        return held, time.monotonic() - started

    async def aslot(self, name: str, bucket: str, cap: int) -> tuple[tuple[str, int], float]:
        import asyncio

        started, delay = time.monotonic(), SLOT_POLL_S[0]
        while (held := await asyncio.to_thread(self.store().take_limit_slot, name, bucket, cap)) is None:
            await asyncio.sleep(delay)
            if self.stop.requested:
                raise RunInterrupted("stopped while waiting for a limit")
            delay = min(delay * 2, SLOT_POLL_S[1])
        return held, time.monotonic() - started

    def pace(self, job: str, rate: tuple[int, float] | None, told: Waited | None) -> bool:
        """A job's ``rate_limit``: wait for a start token of its own limit (``job:<name>``, shared like the
        others). False when a stop came first."""
        if rate is None:
            return True
        name = f"job:{job}"
        self.specs.setdefault(name, LimitSpec(name, rate[0], rate[1]))
        try:
            waited = self.take(name, "")
        except RunInterrupted:
            return False
        if told is not None and waited >= 0.001:
            told(name, waited)
        return True

    def release(self, slot: tuple[str, int]) -> None:
        self.store().release_slot(slot)

    def close(self) -> None:
        """Give back the tokens of every block still held (the store stays open)."""
        with self.lock:
            blocks, self.blocks = self.blocks, {}
            if os.getpid() != self.pid:
                return
        for held in blocks.values():
            if held.left > 0 and held.block is not None:
                try:
                    self.store().return_tokens(held.block, held.left)
                except PinstripeError:  # they leave the window on their own
                    pass


def _next_size(held: _Block, count: int) -> int:
    """Double the block while every token of the last one was used, halve it when some went unused."""
    largest = max(1, min(count // 10, MAX_BLOCK))
    return min(held.size * 2, largest) if held.left <= 0 else max(1, held.size // 2)


class Limit:
    """What ``ctx.limit(name, key=...)`` returns: ``with`` / ``async with`` it around one call."""

    def __init__(self, limiter: Limiter, name: str, key: object, told: Waited | None):
        self.limiter, self.name, self.told = limiter, name, told
        self.bucket = "" if key is None else str(key)
        self.spec = limiter.spec(name)
        self.held: tuple[str, int] | None = None
        self.waited = 0.0

    def __enter__(self) -> Limit:
        spec, waited = self.spec, 0.0
        if spec.count is not None:
            waited += self.limiter.take(self.name, self.bucket)
        if spec.concurrency is not None:
            self.held, slot_wait = self.limiter.slot(self.name, self.bucket, spec.concurrency)
            waited += slot_wait
        self._tell(waited)
        return self

    async def __aenter__(self) -> Limit:
        spec, waited = self.spec, 0.0
        if spec.count is not None:
            waited += await self.limiter.atake(self.name, self.bucket)
        if spec.concurrency is not None:
            self.held, slot_wait = await self.limiter.aslot(self.name, self.bucket, spec.concurrency)
            waited += slot_wait
        self._tell(waited)
        return self

    def _tell(self, waited: float) -> None:
        self.waited = waited
        if self.told is not None and waited >= 0.001:
            self.told(self.name, waited)

    def __exit__(self, *exc: object) -> None:
        held, self.held = self.held, None
        if held is not None:
            self.limiter.release(held)

    async def __aexit__(self, *exc: object) -> None:
        held, self.held = self.held, None
        if held is not None:
            import asyncio

            await asyncio.to_thread(self.limiter.release, held)

