"""Run by the migration tests with an old release of pinstripe_jobs first on sys.path (extracted from the
git history): THAT release's own StateStore creates its tables and records a few runs and a tick. Prints
the runs as that release reads them back (JSON). Argument: the state URL."""
import inspect
import json
import sys
from datetime import UTC, datetime, timedelta

from pinstripe_jobs import state

url = sys.argv[1]
release = sys.argv[2]
assert state.__file__.startswith(release), (state.__file__, release)  # the old code, not this checkout's
store = state.StateStore(url)
tick = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
invocations = hasattr(store, "begin_invocation")
options = {"invocation": "inv-old"} if "invocation" in inspect.signature(store.begin_run).parameters else {}
if invocations:
    store.begin_invocation("inv-old", "sync", "manual")
for tenant, status, error in ((1, "failed", "ValueError: old"), (1, "succeeded", None),
                              (2, "failed", "ValueError: old")):
    lease = store.begin_run("sync", tenant, "manual", **options)
    store.end_run(lease, status, error)
if invocations:
    store.end_invocation("inv-old", "failed", 1, {"failed": 1, "succeeded": 1})
assert store.claim_tick("report", tick)
lease = store.begin_run("report", None, "schedule", tick=tick)
store.end_run(lease, "succeeded")
if hasattr(store, "finish_tick"):
    store.finish_tick("report", tick)
if hasattr(store, "flush"):
    store.flush()
if getattr(store, "_engine", None) is not None:  # 62c816a on PostgreSQL (SQLAlchemy's pool): autocommit was never
    store._conn.commit()  # set, so that release lost its writes at exit; commit them so the upgrade has rows to carry
runs = [[r["job"], None if r["tenant"] is None else str(r["tenant"]), r["status"], r["error"]] for r in store.runs()]
store.close()
print(json.dumps(runs))
