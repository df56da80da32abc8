"""The invocation around a run: what it records before any tenant runs (its arguments, tenant selection,
options, who started it, its executor), how an idempotency key or a unique job decides whether anything runs,
which tenants a resume leaves out, and how far the tenant scan got. Knows the store only through the
calls it is handed (``state``)."""
from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import mask_secrets
from pinstripe_jobs.model.plan import Plan, RunOptions
from pinstripe_jobs.model.status import Status

SHOWN = 20  # tenants not yet run (and abandoned ones) listed by `invocation ID`; the count is always whole

if TYPE_CHECKING:
    from pinstripe_jobs.config import Settings
    from pinstripe_jobs.model.results import Summary
    from pinstripe_jobs.store.invocations import Begun
    from pinstripe_jobs.store.state import StateStore
    from pinstripe_jobs.tenants import Tenant

WAIT_POLL_S = 0.5  # --wait on a unique job: how often the live invocation is looked at
MAX_SELECTION_IDS = 100_000  # --tenant / --only-failed ids kept in the record (to compute its tenants again)
# a resume never reruns a tenant that started; with --include-abandoned, it reruns those whose outcome is unknown
STARTED_UNKNOWN = (Status.ABANDONED.value, Status.INTERRUPTED.value, Status.RUNNING.value, Status.CANCELLED.value)
NOT_STARTED = (Status.SKIPPED.value, Status.CANCELLED.value, Status.QUEUED.value)


def started_by() -> str:
    """Who started this process's invocations: PINSTRIPE_STARTED_BY (the dashboard's identity), or user@host."""
    who = os.environ.get("PINSTRIPE_STARTED_BY")
    if who:
        return who[:200]
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container with an arbitrary uid)
        user = f"uid {os.getuid()}"
    return f"{user}@{os.uname().nodename}"


def details(plan: Plan, source: Any, executor: str) -> dict[str, Any]:
    """What the invocation records so that the tenants it was asked to cover can be computed again."""
    options = plan.options
    fixed = [str(t.id) for t in plan.fixed] if plan.fixed is not None and options.only_failed else None
    tenants = fixed if fixed is not None else list(options.tenant_ids)
    selection = {"source": mask_secrets(str(source)) if source else None, "tenants": tenants[:MAX_SELECTION_IDS],
                 "exclude": list(options.exclude_ids), "shard": list(options.shard) if options.shard else None,
                 "filter": _filter_name(plan), "only_failed": bool(options.only_failed),
                 "multi_tenant": plan.multi_tenant}
    knobs = {name: getattr(options, name) for name in ("concurrency", "timeout", "retries", "isolation",
                                                        "max_failures", "fail_fast", "grace", "spread", "wait",
                                                        "deadline", "unique", "key")}
    return {"selection": selection, "options": knobs, "started_by": options.started_by or started_by(),
            "executor": executor}


def _filter_name(plan: Plan) -> str | None:
    function = plan.spec.tenants_filter
    if function is None:
        return None
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def unique_key(plan: Plan) -> str | None:
    """A unique job's (job, arguments) as one short text, or None when the run is not unique."""
    if not (plan.options.unique or plan.spec.unique):
        return None
    text = repr((plan.spec.name, [str(a) for a in plan.options.args],
                 sorted((str(k), str(v)) for k, v in plan.options.params.items())))
    return f"{plan.spec.name}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def options_for_resume(record: dict[str, Any], include_abandoned: bool) -> RunOptions:
    """The run options of a recorded invocation, to run the rest of it (``pinstripe resume ID``)."""
    args = record.get("args") or {}
    selection = record.get("selection") or {}
    knobs = record.get("options") or {}
    shard = selection.get("shard")
    return RunOptions(
        args=tuple(args.get("args", ())), params=args.get("params") or {},
        tenant_ids=tuple(selection.get("tenants") or ()), exclude_ids=tuple(selection.get("exclude") or ()),
        shard=tuple(shard) if shard else None, trigger=record["trigger"], resume=record["id"],
        include_abandoned=include_abandoned,
        **{k: knobs[k] for k in ("concurrency", "timeout", "retries", "isolation", "max_failures", "fail_fast",
                                 "grace", "spread", "deadline") if knobs.get(k) is not None})


def left_out(state: StateStore, invocation: str, include_abandoned: bool) -> set[str]:
    """The tenants a resume leaves out: those with a run in the invocation that started (with
    ``include_abandoned``, less those whose outcome is unknown: abandoned, interrupted)."""
    rerun = NOT_STARTED + (STARTED_UNKNOWN if include_abandoned else ())
    return {tenant for tenant, status in state.invocation_tenants(invocation).items() if status not in rerun}


def scanning(tenants: Iterator[Tenant | None], invocation: str, state: StateStore, already: int
             ) -> Generator[Tenant | None, None, None]:
    """``tenants``, telling the store how many were read (and the total once the scan ended)."""
    n = already
    for tenant in tenants:
        n += 1
        state.invocation_progress(invocation, n, None)
        yield tenant
    state.invocation_progress(invocation, n, n)


def open_invocation(state: StateStore, settings: Settings, plan: Plan, summary: Summary,
                    wait: Callable[[float], Any], stopped: Callable[[], bool]) -> bool:
    """Record the invocation before any tenant runs, or take over the one its key or ``resume`` names; False
    when nothing is to run (``summary`` says why: ``begin_or_take_over``)."""
    go = begin_or_take_over(state, plan, summary, details(plan, settings.tenants, settings.executor), wait,
                            stopped)
    if go and plan.options.resume and not plan.multi_tenant and plan.done:
        summary.note = f"Invocation {plan.invocation} already ran its job (it does not run per tenant)."
        plan.options.skip_reason = "already ran in this invocation"
    return go


def end_invocation(state: StateStore, plan: Plan, summary: Summary) -> None:
    """Record the invocation's end; a resumed one ends with the outcome of its whole (the exit code too)."""
    status, code = state.end_invocation(plan.invocation, summary.status, int(summary.exit_code), summary.counts)
    if code != int(summary.exit_code):
        summary.recorded_exit = code
        summary.note = (f"{summary.note + ' ' if summary.note else ''}The whole invocation ended {status} "
                        f"(exit {code}): see `pinstripe invocation {plan.invocation}`.")


def begin_or_take_over(state: StateStore, plan: Plan, summary: Summary, info: dict[str, Any],
                       wait: Callable[[float], Any], stopped: Callable[[], bool]) -> bool:
    """Record the invocation (or take over the one a key or ``resume`` names) before any tenant runs. False
    when nothing is to run: a finished key (its recorded exit code), a live one (exit 4), a unique job's live
    invocation (exit 4; ``--wait`` waits for it to end instead). A live invocation with the same key is waited
    for (until it ends or its holder is provably gone): it is the same work, then resumed or finished."""
    options = plan.options
    unique = unique_key(plan)
    while True:
        if options.resume:
            begun: Begun = state.resume_invocation(options.resume, unique=unique)
        else:
            args = {"args": list(options.args), "params": options.params} if options.args or options.params \
                else None
            begun = state.begin_invocation(plan.invocation, plan.spec.name, options.trigger, tick=options.tick,
                                           args=args, details=info, key=options.key, unique=unique)
        same_key = options.key is not None and (begun.record or {}).get("idem_key") == options.key
        if begun.outcome == "busy" and (options.wait or same_key) and not stopped():  # a key: the same work
            wait(WAIT_POLL_S)
            continue
        break
    summary.invocation = plan.invocation = begun.id
    record = begun.record or {}
    if begun.outcome == "missing":
        summary.error = f"No invocation {begun.id} in the state store."
        return False
    if begun.outcome == "busy":
        summary.already_running += 1
        summary.note = (f"Invocation {begun.id} of job '{record.get('job')}' is still running (host "
                        f"{record.get('host')}, pid {record.get('pid')}, started {record.get('started_at')}): "
                        "nothing was run. Add --wait to wait for it to end.")
        return False
    if begun.outcome == "finished":
        summary.recorded_exit = int(record.get("exit_code") or 0)
        summary.note = (f"Invocation {begun.id} ({'key ' + options.key if options.key else 'resume'}) already "
                        f"finished: {record.get('status')} at {record.get('ended_at')}, exit code "
                        f"{summary.recorded_exit}. Nothing was run.")
        return False
    if begun.outcome == "resume":
        plan.done = left_out(state, begun.id, options.include_abandoned)
        summary.note = f"Resuming invocation {begun.id}: {len(plan.done)} tenants already ran in it."
    return True


def coverage(settings: Settings, store: StateStore, record: dict[str, Any]) -> dict[str, Any]:
    """The tenants the invocation has not run yet (a bounded list and the count), computed again from its
    recorded selection, and those whose outcome is unknown (abandoned, interrupted)."""
    from pinstripe_jobs.errors import PinstripeError
    from pinstripe_jobs.execution.planner import Planner
    from pinstripe_jobs.registry.jobs import JobRegistry

    tenants = store.invocation_tenants(record["id"])
    unknown = sorted(t for t, s in tenants.items() if s in STARTED_UNKNOWN)
    found: dict[str, Any] = {"abandoned": {"count": len(unknown), "first": unknown[:SHOWN]},
                             "resume_command": f"pinstripe resume {record['id']}"}
    planner = Planner(settings, JobRegistry(settings), lambda job: [])
    try:
        plan = planner.plan(record["job"], options_for_resume(record, False))
        plan.done = left_out(store, record["id"], False)
        if not plan.multi_tenant:
            missing = [] if plan.done else ["-"]
        else:
            missing = [str(t.id) for t in plan.tenants() if t is not None]
        found["not_run"] = {"count": len(missing), "first": missing[:SHOWN]}
    except PinstripeError as exc:  # the job or its tenant source cannot be read now: say so, show the rest
        found["not_run"] = {"count": None, "first": [], "error": exc.render()}
    finally:
        planner.close()
    return found
