"""The state store: run history, locks (leases), claims, ticks, tenant slots, invocations and their reads.

``StateStore`` (one per process and URL) and ``open_store`` (the project's store, for a command) are the
entry points; ``contracts`` says what each operation guarantees. Modules of this package import each other
by their own names, never through this package, so importing one does not import them all.
"""
from pinstripe_jobs.store.common import HOST, Lease, StateUnavailable, iso, utcnow
from pinstripe_jobs.store.state import StateStore, open_store

__all__ = ["HOST", "Lease", "StateStore", "StateUnavailable", "iso", "open_store", "utcnow"]
