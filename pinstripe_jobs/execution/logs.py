"""Job log lines: ``[job tenant=ID] LEVEL message``, or JSON objects for ``--log-format json``.

Imported only when a job first logs (``ctx.log``) or a log handler is set up: ``logging`` is not free.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import IO, Any

from pinstripe_jobs.errors import mask_secrets


class JobLogFormatter(logging.Formatter):
    """``[job tenant=ID] LEVEL message`` for job loggers; ``--log-format json`` gives JSON objects."""

    def __init__(self, as_json: bool = False):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job", None)
        tenant = getattr(record, "tenant", None)
        message = mask_secrets(record.getMessage())
        if self.as_json:
            data = {"level": record.levelname.lower(), "message": message, "job": job,
                    "tenant": tenant, "attempt": getattr(record, "attempt", None), "logger": record.name}
            data.update(_trace_ids())
            if record.exc_info:
                data["exception"] = mask_secrets(self.formatException(record.exc_info))
            return json.dumps(data, default=str)
        where = f"[{job} tenant={tenant}] " if job and tenant is not None else (f"[{job}] " if job else "")
        text = f"{where}{record.levelname} {message}"
        if record.exc_info:
            text += "\n" + mask_secrets(self.formatException(record.exc_info))
        return text


def _trace_ids() -> dict[str, str]:
    """The current span's trace and span ids when tracing is on (OpenTelemetry already imported), else none."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return {}
    context = api.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def job_adapter(job: str, tenant: Any, attempt: int) -> logging.LoggerAdapter[logging.Logger]:
    """``ctx.log``: a logger whose records carry the job, the tenant and the attempt."""
    return logging.LoggerAdapter(logging.getLogger("pinstripe.job"), {"job": job, "tenant": tenant,
                                                                     "attempt": attempt})


def setup_logging(stream: IO[str], as_json: bool = False) -> None:
    root = logging.getLogger("pinstripe")
    for handler in list(root.handlers):
        if getattr(handler, "_pinstripe", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._pinstripe = True  # type: ignore[attr-defined]
    handler.setFormatter(JobLogFormatter(as_json))
    root.addHandler(handler)
    root.setLevel(logging.INFO)

