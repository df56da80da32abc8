"""Alerts: an observer of a finished run, like the reporters. One message per invocation (a command or a
tick), never per tenant, to a webhook, a command and/or a Python callable (``[notify]`` in the config).

Sending is time-limited, never changes the run's outcome or exit code, and a failure to send is logged.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pinstripe_jobs.errors import mask_secrets
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import BAD as BAD_STATUSES
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import Observer

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan
    from pinstripe_jobs.store.state import StateStore

log = logging.getLogger("pinstripe.notify")
FAILURES_SHOWN = 10


class Notifier(Observer):
    def __init__(self, config: dict[str, Any], state_for: Callable[[], StateStore] | None = None):
        self.events = set(config.get("on", ["failure", "recovery"]))
        self.webhook = config.get("webhook")
        self.command = config.get("command")
        self.callable = config.get("callable")
        self.timeout = float(config.get("timeout", 5))
        self.state_for = state_for  # () -> StateStore: remembers each job's last outcome (for "recovery")
        self.trigger = "manual"
        self.failures: list[RunResult] = []
        self.skipped = 0

    # -- the observer hooks --------------------------------------------------------------------------
    def started(self, plan: Plan) -> None:
        self.trigger = plan.options.trigger

    def run_finished(self, result: RunResult) -> None:
        if result.status in BAD_STATUSES and len(self.failures) < FAILURES_SHOWN:
            self.failures.append(result)
        elif result.status == Status.SKIPPED and not (result.reason or "").startswith("not this shard"):
            self.skipped += 1  # already running, at the tenant cap, a stop: worth saying

    def finished(self, summary: Summary) -> None:
        try:
            event = self.event(summary)
            if event:
                self.send(self.message(summary, event))
        except Exception as exc:  # an alert never breaks the run
            log.warning("could not send the %s alert: %s", summary.job, mask_secrets(f"{type(exc).__name__}: {exc}"))

    # -- deciding and writing -------------------------------------------------------------------------
    def event(self, summary: Summary) -> str | None:
        failed = bool(summary.failures or summary.error)
        previous = self._remember(summary.job, Status.FAILED.value if failed else Status.SUCCEEDED.value)
        if failed:
            return "failure" if "failure" in self.events else None
        if previous == Status.FAILED and "recovery" in self.events:
            return "recovery"
        if self.skipped and "skipped" in self.events:
            return "skipped"
        return None

    def _remember(self, job: str, outcome: str) -> str | None:
        if self.state_for is None:
            return None
        try:
            return self.state_for().remember(f"notify:{job}", outcome)
        except Exception as exc:
            log.warning("could not read the last outcome of %s: %s", job, getattr(exc, "message", exc))
            return None

    def message(self, summary: Summary, event: str) -> dict[str, Any]:
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(summary.counts.items())) or "no runs"
        icon = {"failure": ":x:", "recovery": ":white_check_mark:", "skipped": ":warning:"}[event]
        lines = [f"{icon} {summary.job} ({self.trigger}): {summary.status.replace('_', ' ')} - {counts}"]
        failures = [{"tenant": r.tenant, "status": r.status, "error": mask_secrets(r.error or "")}
                    for r in self.failures]
        for failure in failures:
            who = "(no tenant)" if failure["tenant"] is None else f"tenant {failure['tenant']}"
            first = failure["error"].splitlines()[0] if failure["error"] else ""
            lines.append(f"  {who}: {failure['status']}: {first}")
        if len(summary.failures) > len(failures):
            lines.append(f"  ... and {len(summary.failures) - len(failures)} more")
        rerun = f"pinstripe run-background-job --name {summary.job} --only-failed"
        if event == "failure":
            lines.append(f"Rerun them: {rerun}")
        if summary.error:
            lines.append(mask_secrets(summary.error.splitlines()[0]))
        if summary.brake:
            lines.append(f"Stopped by the {summary.brake}; the other tenants were skipped.")
        return {"text": "\n".join(lines), "event": event, "job": summary.job, "trigger": self.trigger,
                "status": summary.status, "exit_code": int(summary.exit_code), "counts": summary.counts,
                "failures": failures, "rerun": rerun, "brake": summary.brake}

    # -- sending ------------------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, default=str)
        for name, target, deliver in (("webhook", self.webhook, self._post), ("command", self.command, self._run),
                                      ("callable", self.callable, self._call)):
            if not target:
                continue
            try:
                deliver(target, body, message)
            except Exception as exc:
                log.warning("%s alert for %s not sent: %s", name, message["job"],
                            self.masked(f"{type(exc).__name__}: {exc}"))

    def masked(self, text: str) -> str:
        """A webhook URL's path is its secret (Slack, Teams): never shown, nor a password in any URL."""
        if self.webhook:
            from urllib.parse import urlsplit

            parts = urlsplit(self.webhook)
            text = text.replace(self.webhook, f"{parts.scheme}://{parts.hostname}/***")
        return mask_secrets(text)

    def _post(self, url: str, body: str, message: dict[str, Any]) -> None:
        import urllib.request

        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read(65536)

    def _run(self, command: str, body: str, message: dict[str, Any]) -> None:
        import subprocess

        done = subprocess.run(command, shell=True, input=body, text=True, capture_output=True, timeout=self.timeout)
        if done.returncode != 0:
            raise RuntimeError(f"exit status {done.returncode}: {done.stderr.strip()[:200]}")

    def _call(self, ref: str, body: str, message: dict[str, Any]) -> None:
        import threading

        from pinstripe_jobs.registry.loading import import_ref

        function = import_ref(ref, "[notify] callable")
        errors: list[BaseException] = []

        def target() -> None:
            try:
                function(message)
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True, name="pinstripe-notify")
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            raise TimeoutError(f"still running after {self.timeout:g}s (left behind)")
        if errors:
            raise errors[0]
