"""Reports for CI systems: a JUnit XML file, and GitHub Actions annotations and step summary."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

from pinstripe_jobs.errors import mask_secrets
from pinstripe_jobs.model.results import RunResult, Summary
from pinstripe_jobs.model.status import BAD, Status
from pinstripe_jobs.observers.base import Observer, Tee
from pinstripe_jobs.textsafe import literal

if TYPE_CHECKING:
    from pinstripe_jobs.model.plan import Plan

__all__ = ["GitHubReporter", "JUnitReporter", "Tee"]  # Tee lives in observers.base; kept importable here


class JUnitReporter(Observer):
    """One testcase per tenant run. Test cases are streamed to a side file and wrapped at the end.

    The report's path is checked when the reporter is made, before anything runs: one that cannot be
    written is a usage error (exit 2). If writing still fails at the end, the run says so (exit 3)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + ".part")
        for target in (self.path, self.part):
            _check_writable(target)
        self.job = ""
        self.fh: IO[str] | None = None  # the side file, open from ``started`` to ``finished``

    def started(self, plan: Plan) -> None:
        self.job = plan.spec.name
        self._cases()

    def _cases(self) -> IO[str]:
        """The side file the test cases are streamed to (opened on first use)."""
        if self.fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = self.part.open("w", encoding="utf-8")
        return self.fh

    def run_finished(self, result: RunResult) -> None:
        name = "no tenant" if result.tenant is None else f"tenant {literal(result.tenant)}"
        head = (f'  <testcase classname={quoteattr("pinstripe." + literal(self.job))} name={quoteattr(name)} '
                f'time="{result.duration_s:.6f}"')
        if result.status in BAD:  # control characters are not allowed in XML: written as visible escapes
            message = literal(mask_secrets(result.error or result.status))
            body = escape(literal(mask_secrets(result.traceback or result.error or result.status), multiline=True))
            self._cases().write(f"{head}>\n    <failure type={quoteattr(result.status)} message={quoteattr(message)}>"
                          f"{body}</failure>\n  </testcase>\n")
        elif result.status == Status.SKIPPED:
            self._cases().write(f"{head}>\n    <skipped message={quoteattr(literal(result.reason or 'skipped'))}/>\n"
                          "  </testcase>\n")
        else:
            self._cases().write(f"{head}/>\n")

    def closing(self, summary: Summary) -> None:
        try:
            self._write(summary)
        except OSError as exc:
            summary.report_error = (f"Could not write the JUnit report {self.path}: "
                                    f"{exc.strerror or type(exc).__name__}.")

    def _write(self, summary: Summary) -> None:
        self._cases().close()
        self.fh = None
        failures = sum(summary.counts.get(s, 0) for s in BAD)
        with self.path.open("w", encoding="utf-8") as out:
            out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
            out.write(f'<testsuite name={quoteattr("pinstripe " + summary.job)} tests="{summary.total}" '
                      f'failures="{failures}" errors="0" skipped="{summary.counts.get(Status.SKIPPED, 0)}" '
                      f'time="{summary.duration_s:.6f}">\n')
            with self.part.open(encoding="utf-8") as part:
                for line in part:
                    out.write(line)
            out.write("</testsuite>\n</testsuites>\n")
        self.part.unlink()


def _check_writable(path: Path) -> None:
    """A report file that cannot be written is a usage error (exit 2), found before anything runs. Probed
    by opening it for appending (its folder is made if missing); a file that did not exist is removed again."""
    from pinstripe_jobs.errors import UsageError

    hint = "Give a file path in a folder this process can write to, e.g. --junit-xml reports/pinstripe.xml."
    if path.is_dir():
        raise UsageError(f"--junit-xml {literal(path)} is a directory, not a file.", hint)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"--junit-xml {literal(path)} cannot be written: {exc.strerror or type(exc).__name__}.",
                         hint) from None
    if not existed:
        path.unlink(missing_ok=True)


def _command_text(text: str) -> str:
    """A workflow-command value: % and line breaks encoded as GitHub documents, other controls made visible."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return literal(text)


class GitHubReporter(Observer):
    """Under GitHub Actions: an ``::error`` annotation per failed run, and a table in the step summary."""

    ROWS = 50

    def __init__(self, out: IO[str], summary_path: str | None):
        self.out = out
        self.summary_path = summary_path
        self.job = ""
        self.bad: list[RunResult] = []

    def started(self, plan: Plan) -> None:
        self.job = plan.spec.name

    def run_finished(self, result: RunResult) -> None:
        if result.status not in BAD:
            return
        self.bad.append(result)
        who = "no tenant" if result.tenant is None else f"tenant {result.tenant}"
        title = _command_text(f"{self.job} {who}: {result.status}").replace(":", "%3A").replace(",", "%2C")
        self.out.write(f"::error title={title}::{_command_text(mask_secrets(result.error or result.status))}\n")
        self.out.flush()

    def finished(self, summary: Summary) -> None:
        if not self.summary_path:
            return
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(summary.counts.items())) or "no runs"
        icon = "✅" if summary.status == Status.SUCCEEDED else "❌"
        lines = [f"### {icon} `{summary.job}`: {summary.status}", "", f"{counts} in {summary.duration_s:.2f}s", ""]
        if self.bad:
            lines += ["| tenant | status | error |", "| --- | --- | --- |"]
            for result in self.bad[: self.ROWS]:
                error = literal(mask_secrets(result.error or "")).replace("|", "\\|")
                tenant = "-" if result.tenant is None else literal(result.tenant).replace("|", "\\|")
                lines.append(f"| {tenant} | {result.status} | {error} |")
            if len(self.bad) > self.ROWS:
                lines.append(f"| … | {len(self.bad) - self.ROWS} more | |")
        with open(self.summary_path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n\n")
