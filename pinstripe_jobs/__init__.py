"""pinstripe-jobs: run an application's background jobs on demand and on schedule, once per tenant."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["run_background_job", "arun_background_job", "JobFailed", "PinstripeError", "UsageError",
           "ConfigError", "ExitCode", "RetryAfter", "PermanentError", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `pinstripe --version` and the CLI do not pay for what they do not use.
    if name in ("run_background_job", "arun_background_job"):
        from pinstripe_jobs import api

        return getattr(api, name)
    if name in __all__:
        from pinstripe_jobs import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'pinstripe_jobs' has no attribute {name!r}")
