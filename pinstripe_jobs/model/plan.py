"""What one run was asked for and how it is told about: ``RunOptions``, the checked ``Plan`` (job,
arguments, tenant selection, effective settings) and the stable per-tenant numbers (shard, spread offset).
Knows nothing of running nor of who is told about it: the runner and the executors build on it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from pinstripe_jobs.registry.jobs import JobSpec
    from pinstripe_jobs.tenants import Tenant, TenantQuery




class LimitWaits(Protocol):
    """What a plan tells of waits on limits (``ctx.limit``, ``rate_limit``): the Observer hook of that name."""

    def limit_waited(self, tenant: Any, limit: str, seconds: float) -> None: ...

class RunOptions:
    """What one run was asked for: arguments, tenant selection and the knobs that override the job module."""

    FIELDS: ClassVar[dict[str, Any]] = {
        "args": (), "params": None, "tenant_ids": (), "exclude_ids": (), "fail_fast": False, "concurrency": None,
        "shard": None, "trigger": "manual", "tick": None, "wait": False, "only_failed": False, "keep_runs": False,
        "timeout": None, "retries": None, "isolation": None, "max_failures": None, "grace": 30.0,
        "skip_reason": None, "spread": None, "invocation": None, "deadline": None, "priority": None,
        "key": None, "unique": False, "resume": None, "include_abandoned": False, "started_by": None,
        "max_failure_rate": None, "min_runs": 20}

    args: tuple[Any, ...]
    params: dict[str, Any]
    tenant_ids: tuple[str, ...]
    exclude_ids: tuple[str, ...]
    fail_fast: bool
    concurrency: int | None
    shard: tuple[int, int] | None
    trigger: str
    tick: datetime | None
    wait: bool
    only_failed: bool
    keep_runs: bool
    timeout: float | None
    retries: int | None
    isolation: str | None
    max_failures: int | None
    grace: float
    skip_reason: str | None
    spread: float | None
    invocation: str | None
    deadline: float | None
    priority: int | None  # on the fleet: this invocation's share beside others (None: the job's `priority`)
    key: str | None  # idempotency key (--key, PINSTRIPE_INVOCATION_KEY): names at most one invocation
    unique: bool  # --unique: no second live invocation of this job with these arguments
    resume: str | None  # the invocation to run the rest of (`pinstripe resume ID`)
    include_abandoned: bool  # a resume reruns tenants that started but whose outcome is unknown
    started_by: str | None  # who started it (the dashboard's identity); default user@host
    max_failure_rate: float | None
    min_runs: int

    def __init__(self, **values: Any):
        unknown = set(values) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"unknown run options: {', '.join(sorted(unknown))}")
        for name, default in self.FIELDS.items():
            setattr(self, name, values.get(name, default))
        self.args = tuple(self.args)
        self.params = dict(self.params or {})


def new_invocation_id() -> str:
    """Sortable by start time, unique across hosts: a hex timestamp and random bits."""
    import os
    import time

    return f"{time.time_ns() // 1000:014x}-{os.urandom(5).hex()}"


class Plan:
    """A checked run: the job, converted arguments, the tenant query and the effective settings."""

    def __init__(self, spec: JobSpec, args: tuple[Any, ...], params: dict[str, Any], options: RunOptions,
                 query: TenantQuery | None = None):
        self.spec = spec
        self.args = args
        self.params = params
        self.options = options
        self.query = query
        self.fixed: list[Tenant] | None = None  # tenants already read (--tenant, --only-failed, nested)
        self.done: set[str] = set()  # tenants (as text) a resumed tick already ran: left out
        self.claims: dict[str, Any] = {}  # tenant (as text) -> lease claimed ahead, not started yet
        self.io_pool: Any = None  # async jobs: threads for the leases' database work (see Leases.aacquire)
        # the id that groups this run's history rows (one per command or tick)
        self.invocation: str = options.invocation or new_invocation_id()
        self.admit: Callable[[Tenant], bool] | None = None  # per-tenant schedules: is this tenant due?
        self.observer: LimitWaits | None = None  # the run's Observer (set by Runner.execute): told of limit waits
        # the failure-rate brake: stop starting tenants once more than this share of at least min_runs failed
        self.max_failure_rate: float | None = options.max_failure_rate if options.max_failure_rate is not None \
            else spec.max_failure_rate
        # spread: each tenant starts at base + a stable offset within this many seconds (scheduled runs of
        # a job with `spread`, or --spread); None: at once
        self.spread = options.spread if options.spread is not None else (
            spec.spread if options.trigger == "schedule" else None)
        self.spread_base: float | None = None  # time.time() the offsets count from (set when the run starts)
        self.concurrency = options.concurrency or spec.concurrency
        self.timeout = options.timeout if options.timeout is not None else spec.timeout
        self.retries = options.retries if options.retries is not None else spec.retries
        isolation = options.isolation or spec.isolation
        # A plain function cannot be stopped from outside: a timeout runs it in a child process.
        self.isolated = isolation == "process" or (bool(self.timeout) and not spec.is_async)

    @property
    def multi_tenant(self) -> bool:
        return self.query is not None

    def tenants(self) -> Iterator[Tenant | None]:
        if self.query is None:
            yield None
            return
        source: Iterable[Tenant] = self.fixed if self.fixed is not None else self.query
        shard = self.options.shard
        done, admit = self.done, self.admit
        selected = (t for t in source if (shard is None or shard_of(t.id, shard[1]) == shard[0])
                    and not (done and str(t.id) in done) and (admit is None or admit(t)))
        spread = self.spread
        if spread:  # start order = offset order (this reads the selected tenants into memory)
            yield from sorted(selected, key=lambda t: spread_offset(t.id, spread))
        else:
            yield from selected

    def count(self) -> int:
        if self.query is None:
            return 1
        if self.fixed is None and self.options.shard is None and not self.done and self.admit is None:
            return self.query.count()
        return sum(1 for _ in self.tenants())


def shard_of(tenant_id: Any, shards: int) -> int:
    """A stable shard number for a tenant id (CRC-32 of its text: the same on every machine and run)."""
    import zlib

    return zlib.crc32(str(tenant_id).encode("utf-8")) % shards


def spread_offset(tenant_id: Any, window: float) -> float:
    """A tenant's stable start offset within ``window`` seconds (CRC-32 of its id, like ``--shard``: the
    same in every process and on every machine)."""
    import zlib

    return (zlib.crc32(str(tenant_id).encode("utf-8")) % 1_000_000) / 1_000_000 * window
