"""The bot's order when several jobs are due at once: the highest job ``priority`` first (on the fleet each
firing's invocation keeps its own bounded window, weighted by that priority: tests/fleet/test_fairness.py)."""
from __future__ import annotations

from datetime import UTC, datetime

from pinstripe_jobs.config import load_settings
from pinstripe_jobs.execution.runner import Runner
from pinstripe_jobs.scheduling.bot import Scheduler, by_priority


def test_jobs_due_at_once_are_fired_highest_priority_first(project):
    for name, priority in (("alpha", None), ("bravo", 7), ("charlie", 2), ("delta", 7)):
        line = f"priority = {priority}\n" if priority is not None else ""
        project.job(name, f'multi_tenant = False\nschedule = "0 3 * * *"\n{line}\ndef run(ctx):\n    pass\n')
    runner = Runner(load_settings(cwd=project.root, env={}))
    try:
        at = datetime(2026, 11, 29, 3, 0, 20, tzinfo=UTC)
        firings = Scheduler(runner).due(datetime(2026, 11, 29, 2, 59, tzinfo=UTC), at, at)
        assert sorted(f.spec.name for f in firings) == ["alpha", "bravo", "charlie", "delta"]
        ordered = by_priority(sorted(firings, key=lambda f: f.spec.name))
        assert [(f.spec.name, f.spec.priority) for f in ordered] == \
            [("bravo", 7), ("delta", 7), ("charlie", 2), ("alpha", 0)]  # ties keep their order
    finally:
        runner.close()
