"""Planning: a job name and run options become a checked ``Plan`` (the job, converted arguments, and the
tenant query narrowed by the job's ``tenants_filter``, --tenant, --exclude-tenant and --only-failed).
Nothing runs and nothing is written here."""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

from pinstripe_jobs.config import Settings
from pinstripe_jobs.errors import ConfigError, PinstripeError, TenantSourceError, UsageError
from pinstripe_jobs.execution.signals import RunInterrupted, StopFlag
from pinstripe_jobs.model.plan import Plan, RunOptions
from pinstripe_jobs.model.ranges import MAX_CONCURRENCY, MAX_COUNT, MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS
from pinstripe_jobs.model.results import Summary
from pinstripe_jobs.registry.arguments import bind_arguments
from pinstripe_jobs.registry.jobs import JobRegistry, JobSpec
from pinstripe_jobs.registry.loading import describe_exception, error_location
from pinstripe_jobs.textsafe import is_valid_text, literal

if TYPE_CHECKING:  # imported when a plan runs per tenant: a job that does not never loads a source
    from pinstripe_jobs.tenants import Tenant, TenantQuery, TenantSource


class Planner:
    def __init__(self, settings: Settings, registry: JobRegistry, failed_tenants: Callable[[str], list[str]]):
        self.settings = settings
        self.registry = registry
        self.failed_tenants = failed_tenants  # job -> tenants whose newest run did not succeed (history)
        self._source: TenantSource | None = None

    @property
    def source(self) -> TenantSource:
        if self._source is None:
            if self.settings.tenants is None:
                raise ConfigError("No tenant source is configured.",
                                  "Set `tenants` in pinstripe.toml or pass --tenants / PINSTRIPE_TENANTS.")
            from pinstripe_jobs.tenants import open_source

            self._source = open_source(self.settings.tenants, self.settings.tenants_table)
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def tenant_query(self, spec: JobSpec) -> TenantQuery:
        from pinstripe_jobs.tenants import TenantQuery

        query = TenantQuery(self.source)
        if spec.tenants_filter is None:
            return query
        try:
            narrowed = spec.tenants_filter(query)
        except Exception as exc:
            _, line = error_location(exc, str(spec.path))
            raise ConfigError(f"tenants_filter of job '{spec.name}' raised at {spec.path}:{line}: "
                              f"{describe_exception(exc)}") from exc
        if not isinstance(narrowed, TenantQuery):
            raise ConfigError(f"tenants_filter of job '{spec.name}' ({spec.path}) returned "
                              f"{type(narrowed).__name__}, not the tenant query.",
                              "Return the narrowed query, e.g. `return tenants.where(active=True)`.")
        return narrowed

    def plan(self, job: str | JobSpec, options: RunOptions) -> Plan:
        spec = job if isinstance(job, JobSpec) else self.registry.load(job)
        args, params = bind_arguments(spec.run, spec.name, options.args, options.params)
        check_options(options)
        if not spec.multi_tenant:
            if options.tenant_ids or options.exclude_ids or options.only_failed:
                raise UsageError(f"Job '{spec.name}' does not run per tenant, so --tenant, --exclude-tenant and "
                                 "--only-failed do not apply.", "Drop those options, or set multi_tenant = True.")
            return Plan(spec, args, params, options)
        query = self.tenant_query(spec)
        if options.exclude_ids:
            query = query.without_ids(options.exclude_ids)
        plan = Plan(spec, args, params, options, query=query)
        if options.tenant_ids:
            plan.fixed = self._fixed_tenants(spec, query, options.tenant_ids)
        if options.only_failed:
            failed = set(self.failed_tenants(spec.name))
            candidates = plan.fixed if plan.fixed is not None else query.only_ids(failed)
            plan.fixed = [t for t in candidates if str(t.id) in failed]
        return plan

    def checked(self, tenants: Iterator[Tenant | None]) -> Iterator[Tenant | None]:
        """``tenants``, stopping with a tenant source error at an id that is not valid text (a lone
        surrogate, as JSON's "\\ud800" gives): it could be neither recorded nor shown."""
        for tenant in tenants:
            if tenant is not None and not is_valid_text(str(tenant.id)):
                raise TenantSourceError(
                    f"The tenant source {self.source.description} gave the tenant id '{literal(tenant.id)}', which is "
                    "not valid text: it holds a lone surrogate (half of a UTF-16 pair), so it can be neither "
                    "recorded nor shown.", "Fix that tenant's id in the source (in JSON, a \\ud800-\\udbff escape "
                    "must be followed by a \\udc00-\\udfff one).")
            yield tenant

    def _fixed_tenants(self, spec: JobSpec, query: TenantQuery, ids: tuple[str, ...]) -> list[Tenant]:
        found = list(query.only_ids(ids))
        missing = [i for i in dict.fromkeys(ids) if i not in {str(t.id) for t in found}]
        if missing:
            in_source = {str(t.id) for t in query.unfiltered().only_ids(missing)}
            problems = []
            for tenant_id in missing:
                if tenant_id in in_source:
                    problems.append(f"'{tenant_id}' is excluded by the job's tenants_filter or --exclude-tenant")
                else:
                    problems.append(f"'{tenant_id}' is not in {self.source.description}")
            raise UsageError(f"--tenant for job '{spec.name}': " + "; ".join(problems) + ".",
                             f"Run `pinstripe run-background-job --name {spec.name} --dry-run` to list the tenants "
                             "it would run for.")
        return found


def check_options(options: RunOptions) -> None:
    if options.shard is not None:
        k, n = options.shard
        if n < 1 or not 0 <= k < n:
            raise UsageError(f"--shard {k}/{n} is out of range: K must be 0..N-1 and N at least 1.",
                             "Example: --shard 0/4 ... --shard 3/4 (K is 0-based, like JOB_COMPLETION_INDEX).")
    for name, minimum, maximum in (("concurrency", 1, MAX_CONCURRENCY), ("retries", 0, MAX_RETRIES),
                                   ("max_failures", 1, MAX_COUNT), ("priority", 0, MAX_PRIORITY)):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not minimum <= value <= maximum):
            raise UsageError(f"{name} must be a whole number from {minimum} to {maximum}, got {value!r}.")
    if options.timeout is not None and not 0 < options.timeout <= MAX_SECONDS:  # NaN fails both
        raise UsageError(f"timeout must be a number of seconds > 0 and <= {MAX_SECONDS}, got {options.timeout!r}.")


def guarded_tenants(tenants: Iterator[Tenant | None], summary: Summary, stop: StopFlag
             ) -> Generator[Tenant | None, None, None]:
    """Stop cleanly when the tenant source breaks mid-stream (the error is kept on the summary: exit 3), or
    when a signal arrives while it is being read."""
    while True:
        try:
            with stop.interruptible():
                tenant = next(tenants)
        except StopIteration:
            return
        except RunInterrupted:
            summary.error = "Interrupted while reading tenants."
            return
        except PinstripeError as exc:
            summary.error = exc.render()
            return
        yield tenant
