"""The ``Dashboard``: what every page and API endpoint shares (the project, its history, sign-in and the
launcher of actions), reachable from a request as ``request.app.state.dashboard``."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from pinstripe_jobs.config import Settings
from pinstripe_jobs.store.reads import HistoryQueries
from pinstripe_jobs.store.state import StateStore, open_store
from pinstripe_jobs.web.actions import Launcher
from pinstripe_jobs.web.auth import Auth
from pinstripe_jobs.web.inputs import GridQuery, NotFound, RunsQuery

Row = dict[str, Any]


class Dashboard:
    """The project, its store (opened on first use), auth, the launcher, and the Host names it answers to
    (``allowed_hosts``; None: no Host check, for an app embedded behind something that checks)."""

    def __init__(self, settings: Settings, *, token: str | None = None, allow_actions: bool = False,
                 project_args: list[str] | None = None, now: Callable[[], datetime] | None = None,
                 retry_s: float = 5, allowed_hosts: Sequence[str] | None = None):
        self.settings = settings
        self.auth = Auth(token if allow_actions else None)
        self.launcher = Launcher(project_args or [], settings.root,
                                 settings.root / ".pinstripe" / "dashboard-actions.log")
        self.now = now or (lambda: datetime.now(UTC))
        self.retry_s = retry_s
        self.allowed_hosts = None if allowed_hosts is None else tuple(allowed_hosts)
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    @property
    def history(self) -> HistoryQueries | None:
        """None while there is no history at all (no SQLite state file yet: the dashboard creates none)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    # Read-only: never creates, upgrades or prunes (None: no history yet)
                    self._store = open_store(self.settings, read_only=True, retry_s=self.retry_s)
                    if self._store is None:
                        return None
        return HistoryQueries(self._store)

    def store(self) -> StateStore | None:
        """The store, read-only (None while there is no history at all)."""
        return self._store if self.history is not None else None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- what the pages and the API show -----------------------------------------------------------
    def _described(self) -> tuple[list[Row], list[Row]]:
        """Every job (also jobs known only from history, whose module is gone) and the broken modules."""
        from pinstripe_jobs.cli.listing import describe_jobs

        history = self.history
        store = self.store()
        jobs, broken = describe_jobs(self.settings, now=self.now(), pauses=store.pauses() if store else None)
        known = {job["name"] for job in jobs}
        for name in (history.job_names() if history else []):
            if name not in known:
                jobs.append({"name": name, "description": "(no module: history only)", "schedules": [],
                             "next_run": None, "timezone": None, "multi_tenant": None, "file": None})
        return jobs, [{"name": b.job_name, "file": b.path, "line": b.line, "error": b.error} for b in broken]

    def jobs(self) -> Row:
        """The jobs page: every job with its last invocation and its recent p50 durations."""
        jobs, broken = self._described()
        history = self.history
        for job in jobs:
            recent = history.recent_invocations(job["name"], 20) if history else []
            job["last_invocation"] = recent[0] if recent else None
            job["durations_ms"] = [inv["p50_ms"] for inv in reversed(recent)]
        return {"jobs": jobs, "broken": broken}

    def job(self, name: str) -> Row:
        jobs, broken = self._described()
        found = next((job for job in jobs if job["name"] == name), None)
        failed = next((b for b in broken if b["name"] == name), None)
        if found is None and failed is None:
            raise NotFound(f"No job named '{name}' (and no history of one).")
        return found or {"name": name, "description": None, "schedules": [], "broken": failed}

    def job_data(self, name: str, query: GridQuery, invocations: bool = True) -> Row:
        """A job's tenant grid (filtered and paged) and, unless told not to, its invocations."""
        history = self.history
        if history is None:
            return {"invocations": [], "invocations_cursor": None, "grid": [], "grid_cursor": None,
                    "grid_counts": {}, "status": query.status, "q": query.q}
        invs, inv_cursor = history.invocations(name, cursor=query.before, limit=20) if invocations else ([], None)
        grid, grid_cursor = history.grid(name, status=query.status, search=query.q, cursor=query.cursor,
                                         limit=query.limit)
        return {"invocations": invs, "invocations_cursor": inv_cursor, "grid": grid, "grid_cursor": grid_cursor,
                "grid_counts": history.grid_counts(name), "status": query.status, "q": query.q}

    def runs(self, query: RunsQuery) -> Row:
        history = self.history
        if history is None:
            return {"runs": [], "next_cursor": None}
        runs, cursor = history.runs(job=query.job, status=query.status, tenant=query.tenant,
                                    invocation=query.invocation, cursor=query.cursor, limit=query.limit)
        return {"runs": runs, "next_cursor": cursor}

    def run(self, run_id: int | None, shown: str) -> Row:
        history = self.history
        found = history.run(run_id) if history and run_id is not None else None
        if found is None:
            raise NotFound(f"No run with id {shown}.")
        return found

    def running(self) -> list[Row]:
        history = self.history
        return history.running(self.now()) if history else []

    def failures(self, job: str | None) -> list[Row]:
        history = self.history
        return history.failures(job) if history else []

    def audit(self, job: str | None, limit: int = 200) -> list[Row]:
        """The audit trail, newest first (of ``job``)."""
        store = self.store()
        return store.audit_trail(job=job, limit=limit) if store else []

    def ticks(self, cursor: str | None) -> tuple[list[Row], str | None]:
        history = self.history
        return history.ticks(cursor=cursor) if history else ([], None)

    def limits(self) -> list[Row]:
        """The ``[limits]`` of the config, each with the tokens granted in its current window (all keys)."""
        import time

        history = self.history
        rows = []
        for name, spec in sorted(self.settings.limits.items()):
            used = None
            if history is not None and spec.window:
                found = history.store.query("SELECT COALESCE(SUM(tokens), 0) FROM pinstripe_limit_blocks WHERE "
                                            "name = ? AND ends > ?", (name, time.time() - spec.window))
                used = int(found[0][0])
            rows.append({"name": name, "limit": spec.describe(), "count": spec.count, "window_s": spec.window,
                         "concurrency": spec.concurrency, "used_in_window": used})
        return rows


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard
