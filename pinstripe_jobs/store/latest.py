"""Each tenant's newest status per job (``pinstripe_latest``), folded in from ended runs.

Run ends are folded in groups (at most ``FOLD_EVERY`` runs or ``FOLD_AFTER_S`` seconds behind), in the
transaction that writes them; newer runs win and folding twice changes nothing, so a fold lost with its
transaction is simply done again. A run leaves the to-do list only once its fold has committed.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pinstripe_jobs.store.dialects import Connection, Cursor, Params
from pinstripe_jobs.store.schema import latest_of

FOLD_EVERY = 500  # ended runs folded into pinstripe_latest at a time
FOLD_AFTER_S = 2.0  # ... or this long after the last fold, whichever comes first
Execute = Callable[[Connection, str, Params], Cursor]


class Folder:
    """The runs that ended and are not yet folded in. Not thread-safe on its own: the engine folds under
    its connection lock (appending ids is atomic)."""

    def __init__(self) -> None:
        self.unfolded: list[int] = []
        self.folding = 0  # how many of them the open transaction folds
        self.folded_at = time.monotonic()

    def add(self, ids: Iterable[int]) -> None:
        self.unfolded.extend(ids)

    def due(self) -> bool:
        return len(self.unfolded) >= FOLD_EVERY or time.monotonic() - self.folded_at > FOLD_AFTER_S

    def fold(self, conn: Connection, execute: Execute) -> None:
        """Fold what ended, in the caller's transaction; ``settle`` once it is known to have committed."""
        ids = list(dict.fromkeys(self.unfolded))
        self.folded_at = time.monotonic()
        for chunk in range(0, len(ids), FOLD_EVERY):
            part = ids[chunk:chunk + FOLD_EVERY]
            execute(conn, latest_of(f"id IN ({', '.join('?' * len(part))})"), part)
        self.folding = len(self.unfolded)

    def settle(self, committed: bool = True) -> None:
        if committed and self.folding:
            del self.unfolded[:self.folding]
        self.folding = 0


def rebuild(conn: Connection, execute: Execute) -> Any:
    """Fold every tenant's newest finished run (history written outside the store, e.g. by a benchmark)."""
    return execute(conn, latest_of("1 = 1"), ())
