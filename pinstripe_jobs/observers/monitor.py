"""Heartbeat monitors (Healthchecks.io, Cronitor, Sentry Crons): an observer that calls a URL on the start,
the success and the failure of each invocation (``[monitor]`` in the config; a job's ``monitor`` attribute
overrides the URL, or turns the calls off with ``monitor = False``).

``success`` is exit code 0; ``fail`` any other but 4: an invocation skipped because the job is already running
sends no end (the running instance sends its own, and a stuck one never does, which the monitor reports).
``{job}``, ``{event}`` (start, success, fail) and ``{exit_code}`` in a URL are filled in; ``start``,
``success`` and ``fail`` keys give an event its own URL (``""``: no call for it). The body is JSON (job, event,
invocation, trigger, status, exit code, counts). Calls are time-limited, never change the run's outcome or
exit code, and a failed call is logged with the URL's path masked (it holds the monitor's key).
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from pinstripe_jobs.errors import ConfigError, ExitCode, mask_secrets
from pinstripe_jobs.observers.base import Observer

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.model.results import Summary

log = logging.getLogger("pinstripe.monitor")
EVENTS = ("start", "success", "fail")
MONITOR_KEYS: dict[str, type | tuple[type, ...]] = {"url": str, "start": str, "success": str, "fail": str,
                                                   "method": str, "timeout": (int, float)}
EXAMPLE = '[monitor]\nurl = "https://hc-ping.com/PING-KEY/{job}/{event}"'


def monitor_table(table: Any, where: str) -> dict[str, Any]:
    """``[monitor]`` checked: known keys of the right types, a URL for every event (an empty table: only jobs
    with their own ``monitor`` URL are pinged)."""
    if not isinstance(table, dict):
        raise ConfigError(f"'monitor' in {where} must be a table.", EXAMPLE)
    for key, value in table.items():
        if key not in MONITOR_KEYS:
            raise ConfigError(f"Unknown key '{key}' in [monitor] of {where}.",
                              "Known keys: " + ", ".join(sorted(MONITOR_KEYS)) + ".")
        if not isinstance(value, MONITOR_KEYS[key]) or isinstance(value, bool):
            raise ConfigError(f"'{key}' in [monitor] of {where} has the wrong type ({type(value).__name__}).", EXAMPLE)
    for key in ("url", *EVENTS):
        if table.get(key) and urlsplit(table[key]).scheme not in ("http", "https"):
            raise ConfigError(f"[monitor] {key} in {where} is not an http(s) URL: {mask_secrets(table[key])!r}.",
                              EXAMPLE)
    if table and "url" not in table and not all(key in table for key in EVENTS):
        raise ConfigError(f"[monitor] in {where} has no url.", EXAMPLE + "\n(or start, success and fail URLs)")
    if table.get("method", "POST").upper() not in ("GET", "POST"):
        raise ConfigError(f"[monitor] method in {where} must be GET or POST, got {table['method']!r}.")
    if table.get("timeout", 5) <= 0:
        raise ConfigError(f"[monitor] timeout in {where} must be positive, got {table['timeout']}.")
    return dict(table)


class Monitor(Observer):
    """The observer. ``config``: the checked ``[monitor]`` table (may be empty: only jobs with ``monitor``)."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.timeout = float(config.get("timeout", 5))
        self.method = str(config.get("method", "POST")).upper()
        self.urls: dict[str, str] = {}
        self.base: dict[str, Any] = {}

    # -- the observer protocol ----------------------------------------------------------------------
    def started(self, plan: Plan) -> None:
        self.urls = self._urls(plan)
        self.base = {"job": plan.spec.name, "invocation": plan.invocation, "trigger": plan.options.trigger}
        self.call("start", {})

    def finished(self, summary: Summary) -> None:
        if int(summary.exit_code) == int(ExitCode.SKIPPED):
            return  # skipped, already running: the running instance reports its own end (a stuck one never does)
        event = "success" if int(summary.exit_code) == 0 else "fail"
        self.call(event, {"status": str(summary.status), "exit_code": int(summary.exit_code),
                          "counts": {str(k): v for k, v in summary.counts.items()},
                          "duration_s": round(summary.duration_s or 0.0, 3), "error": summary.error})

    # -- calling ------------------------------------------------------------------------------------
    def _urls(self, plan: Plan) -> dict[str, str]:
        override = getattr(plan.spec.module, "monitor", None)
        if override is False:
            return {}
        config = dict(self.config)
        if isinstance(override, str) and override:
            config = {"url": override}  # the job's own monitor: one URL for its events
        elif override is not None:
            log.warning("%s: monitor = %r is neither a URL nor False; [monitor] is used", plan.spec.name, override)
        return {event: config.get(event, config.get("url", "")) for event in EVENTS if config.get(event,
                                                                                                 config.get("url"))}

    def call(self, event: str, extra: dict[str, Any]) -> None:
        template = self.urls.get(event)
        if not template:
            return
        exit_code = extra.get("exit_code", "")
        url = template.replace("{job}", quote(self.base["job"], safe="")).replace("{event}", event).replace(
            "{exit_code}", str(exit_code))
        try:
            self._send(url, {**self.base, "event": event, **extra})
        except Exception as exc:  # a monitor never breaks the run
            log.warning("monitor %s call for %s failed: %s", event, self.base["job"],
                        self.masked(url, f"{type(exc).__name__}: {exc}"))

    def _send(self, url: str, message: dict[str, Any]) -> None:
        import urllib.request

        body = json.dumps(message, default=str).encode() if self.method == "POST" else None
        request = urllib.request.Request(url, data=body, method=self.method,
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "pinstripe-jobs"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read(65536)

    @staticmethod
    def masked(url: str, text: str) -> str:
        """A ping URL's path is its key: never shown."""
        parts = urlsplit(url)
        return mask_secrets(text.replace(url, f"{parts.scheme}://{parts.hostname}/***"))
