"""The ranges of a run's numeric options wherever they come from (the command line, a job module, the Python
API): beyond them a run would only fail later (a thread per unit of concurrency, an overflowing deadline).
Imports nothing, so every layer may use it."""
from __future__ import annotations

MAX_CONCURRENCY = 1000  # threads (or child processes) of one run
MAX_RETRIES = 100
MAX_COUNT = 10**6  # --max-failures, history --limit
MAX_SECONDS = 365 * 86400  # timeouts and deadlines
MAX_PRIORITY = 9  # a job's `priority`, --priority: 0 (the default share of the fleet) to 9 (ten times it)
