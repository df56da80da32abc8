"""The only module that talks to the terminal: progress, per-run lines, summaries, JSON.

``PlainReporter`` for pipes and CI logs (no colour, no redraws), ``RichReporter`` for terminals (imports
rich only then), ``JsonReporter`` for ``--json`` (one document on stdout, written as runs finish).
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from pinstripe_jobs.model.results import ALREADY_RUNNING, RunResult, Summary
from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.base import Observer
from pinstripe_jobs.textsafe import first_line, literal

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, TaskID
    from rich.text import Text

    from pinstripe_jobs.model.plan import Plan

TABLE_ROWS = 50  # the summary table shows every failure and at most this many other runs


def who(tenant: Any) -> str:
    return "(no tenant)" if tenant is None else f"tenant {literal(tenant)}"


def counts_text(summary: Summary) -> str:
    return ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in sorted(summary.counts.items()))


def summary_line(summary: Summary) -> str:
    """``job: STATUS - counts in time``; STATUS follows the exit code's precedence (see ``Summary.status``)."""
    text = f"{literal(summary.job)}: {summary.status.replace('_', ' ')} - {counts_text(summary) or 'no runs'} in " \
           f"{summary.duration_s:.2f}s"
    if summary.signal:
        import signal as _signal

        text += f" (interrupted by {_signal.Signals(summary.signal).name})"
    if summary.error:
        text += f"\n{literal(summary.error, multiline=True)}\nThe run stopped there: tenants after that point were " \
                "not read or not run."
    if summary.report_error:
        text += f"\n{literal(summary.report_error, multiline=True)}"
    if summary.note:
        text += f"\n{literal(summary.note)}"
    if summary.limit_waits:
        text += f"\nWaited on limits: {literal(summary.limits_text())}"
    if summary.brake:
        text += f"\nStopped by the {summary.brake}; the other tenants were skipped."
    return text


def use_rich(stream: IO[str]) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


_WRITE_LOCK = threading.RLock()


class BatchedLines:
    """Whole lines for ``target``, written in batches at most ``EVERY_S`` apart by a flusher thread (one
    write and flush for many lines: many threads printing do not queue on the stream one line at a time).
    Our own lines drain what is pending first (``drain_all``), so the order on a stream is kept."""

    EVERY_S = 0.05
    _all: list[BatchedLines] = []

    def __init__(self, target: IO[str]):
        self.target = target
        self.pending: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        BatchedLines._all.append(self)

    def __call__(self, text: str) -> None:
        with _WRITE_LOCK:
            self.pending.append(text)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True, name="pinstripe-output")
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.EVERY_S):
            self.drain()

    def drain(self) -> None:
        with _WRITE_LOCK:
            if self.pending:
                text = "".join(self.pending)
                self.pending.clear()
                self.target.write(text)
                self.target.flush()

    def close(self) -> None:
        self._stop.set()
        self.drain()
        if self in BatchedLines._all:
            BatchedLines._all.remove(self)

    @classmethod
    def drain_all(cls) -> None:
        for batch in list(cls._all):
            batch.drain()


class LineSink:
    """The stream jobs print to (``sys.stdout`` during a run). Each thread's text is passed on in whole
    lines only, so output from concurrent jobs never interleaves half-lines, and ``end_run()`` ends a
    tenant's unterminated last line, so it is never glued to the next line. Linear in what is written
    (chunks are joined once per line)."""

    def __init__(self, emit: Callable[[str], None], target: IO[str] | None = None):
        self.emit = emit
        self.target = target
        self._pending: dict[int, list[str]] = {}

    def write(self, text: str) -> int:
        if not text:
            return 0
        ident = threading.get_ident()
        if "\n" not in text:
            self._pending.setdefault(ident, []).append(text)
            return len(text)
        head, _, rest = text.rpartition("\n")
        parts = self._pending.pop(ident, None)
        if parts:
            parts.append(head)
            head = "".join(parts)
        self.emit(head + "\n")
        if rest:
            self._pending[ident] = [rest]
        return len(text)

    def end_run(self) -> None:
        parts = self._pending.pop(threading.get_ident(), None)
        if parts:
            self.emit("".join(parts) + "\n")

    def flush(self) -> None:
        drain = getattr(self.emit, "drain", None)
        if drain is not None:
            drain()

    def close(self) -> None:
        leftovers, self._pending = self._pending, {}
        for parts in leftovers.values():
            self.emit("".join(parts) + "\n")
        close = getattr(self.emit, "close", None)
        if close is not None:
            close()

    def isatty(self) -> bool:
        return bool(self.target is not None and self.target.isatty())

    def fileno(self) -> int:
        if self.target is None:
            raise OSError("no file descriptor")
        return self.target.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self.target, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True


def whole_lines(target: IO[str]) -> LineSink:
    return LineSink(BatchedLines(target), target)


BULK_SKIPS_SHOWN = 5  # skipped runs with the same reason: show this many, then one line for the rest


class PlainReporter(Observer):
    """One line per finished run; failures add their trimmed traceback, indented. Whole lines only, so
    reporters on several threads (the bot) never interleave half-lines. A long run of tenants skipped for
    the same reason (a stop) is collapsed into one line."""

    def __init__(self, out: IO[str] | None = None, tracebacks: bool = True, prefix: str = ""):
        self.out = out or sys.stdout
        self.tracebacks = tracebacks
        self.prefix = prefix
        self._skips: dict[str, int] = {}

    def started(self, plan: Plan) -> None:
        scope = "for each matching tenant" if plan.multi_tenant else "once (not per tenant)"
        self._write(f"Running {literal(plan.spec.name)} {scope}")

    def retrying(self, tenant: Any, attempt: int, attempts: int, delay: float, error: str | None) -> None:
        self._write(f"  RETRY       {who(tenant)}  attempt {attempt + 1}/{attempts} in {delay:.1f}s after: "
                    f"{first_line(error)}")

    def waiting(self, tenant: Any, holder: str) -> None:
        self._write(f"  WAITING     {who(tenant)}  for the run holding its lock ({literal(holder)})")

    def run_finished(self, result: RunResult) -> None:
        if result.status == Status.SKIPPED and result.reason and result.reason != ALREADY_RUNNING:
            seen = self._skips[result.reason] = self._skips.get(result.reason, 0) + 1
            if seen > BULK_SKIPS_SHOWN:
                return
        line = f"  {result.status.upper():<11} {who(result.tenant)}  {result.duration_s:.3f}s"
        if result.error:
            line += f"  {first_line(result.error)}"
        elif result.reason:
            line += f"  ({literal(result.reason)})"
        self._write(line)
        if self.tracebacks and result.traceback:
            self._write("\n".join("      " + row for row in literal(result.traceback, multiline=True).splitlines()))

    def finished(self, summary: Summary) -> None:
        for reason, seen in self._skips.items():
            if seen > BULK_SKIPS_SHOWN:
                self._write(f"  ... and {seen - BULK_SKIPS_SHOWN} more SKIPPED ({literal(reason)})")
        self._write(summary_line(summary))

    def _write(self, text: str) -> None:
        if self.prefix:
            text = "\n".join(f"{self.prefix} {line.lstrip()}" for line in text.splitlines())
        with _WRITE_LOCK:
            BatchedLines.drain_all()  # what jobs printed before this line comes before it
            self.out.write(text + "\n")
            self.out.flush()


class RichReporter(Observer):
    """A transient progress bar, result lines above it, and a summary table at the end.

    Job output does not go through rich: it is collected (``emit``) and written above the bar as it is,
    ten times a second at most, followed by one redraw of the bar, so a job that prints 20,000 lines costs
    a few redraws, not 20,000. Everything from jobs and tenants is shown literally (``rich.text.Text``)."""

    REFRESH_S = 0.1

    def __init__(self, out: IO[str] | None = None):
        from rich.console import Console

        self.console = Console(file=out or sys.stdout)
        self.progress: Progress | None = None  # the bar, from ``started`` on
        self.task: TaskID | None = None
        self.shown: list[RunResult] = []
        self.hidden: dict[str, int] = {}
        self._pending: list[str] = []
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None

    def started(self, plan: Plan) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        total = plan.count()
        progress = self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=True, auto_refresh=False,
                                 redirect_stdout=False, redirect_stderr=False)
        progress.start()
        from rich.markup import escape

        self.title = escape(literal(plan.spec.name))
        self.limited: dict[str, int] = {}
        self.task = progress.add_task(self.title, total=total)
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True, name="pinstripe-progress")
        self._flusher.start()

    def emit(self, text: str) -> None:
        """Job output (whole lines): shown above the bar at the next refresh."""
        with self._lock:
            self._pending.append(text)

    def _flush_loop(self) -> None:
        while not self._stopped.wait(self.REFRESH_S):
            self._drain()

    def _drain(self, refresh: bool = True) -> None:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            if text:  # the bar is one line, and the cursor at its end: clear it, write, draw it again below
                self.console.file.write("\r\x1b[2K" + text)
                self.console.file.flush()
            if refresh and self.progress is not None:
                self.progress.refresh()

    def retrying(self, tenant: Any, attempt: int, attempts: int, delay: float, error: str | None) -> None:
        self._print(self._line("yellow", "RETRY", f"{who(tenant)} attempt {attempt + 1}/{attempts} in {delay:.1f}s "
                                                  f"after: {first_line(error)}"))

    def limit_waited(self, tenant: Any, limit: str, seconds: float) -> None:
        """The progress line names the limits runs waited on, and how often."""
        from rich.markup import escape

        with self._lock:
            self.limited[limit] = self.limited.get(limit, 0) + 1
            waits = ", ".join(f"{escape(literal(name))} x{n}" for name, n in sorted(self.limited.items()))
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, description=f"{self.title} (waited on {waits})")

    def waiting(self, tenant: Any, holder: str) -> None:
        self._print(self._line("yellow", "WAITING", f"{who(tenant)} for the run holding its lock ({literal(holder)})"))

    def _line(self, style: str, word: str, detail: str) -> Text:
        from rich.text import Text

        return Text.assemble((word, style), " ", detail)

    def _print(self, *renderables: RenderableType, **options: Any) -> None:
        with self._lock:
            self._drain(refresh=False)
            self.console.print(*renderables, **options)

    def run_finished(self, result: RunResult) -> None:
        from rich.text import Text

        bulk = result.status == Status.SKIPPED and result.reason and result.reason != ALREADY_RUNNING
        if result.status != Status.SUCCEEDED and not (bulk and self._count_hidden(result, BULK_SKIPS_SHOWN)):
            style = "yellow" if result.status == Status.SKIPPED else "red"
            detail = result.error or result.reason or ""
            self._print(self._line(style, result.status.upper(), f"{who(result.tenant)} {first_line(detail)}"))
            if result.traceback:
                self._print(Text(literal(result.traceback, multiline=True), style="dim"), highlight=False)
        if result.status in (Status.SUCCEEDED, Status.SKIPPED):
            if not self._count_hidden(result, TABLE_ROWS):
                self.shown.append(result)
        else:
            self.shown.append(result)
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)

    def _count_hidden(self, result: RunResult, limit: int) -> bool:
        """True (and counted) when this is past the first ``limit`` runs of its status."""
        key = result.status
        seen = sum(1 for r in self.shown if r.status == key) + self.hidden.get(key, 0)
        if seen >= limit:
            self.hidden[key] = self.hidden.get(key, 0) + 1
            return True
        return False

    def finished(self, summary: Summary) -> None:
        from rich.table import Table
        from rich.text import Text

        self._stopped.set()
        if self._flusher is not None:
            self._flusher.join()
        self._drain(refresh=False)
        if self.progress is not None:
            self.progress.stop()
        table = Table(title=Text(literal(summary.job)), title_justify="left")
        for column in ("tenant", "status", "duration", "error"):
            table.add_column(column, overflow="fold")
        colours: dict[str, str] = {Status.SUCCEEDED: "green", Status.SKIPPED: "yellow"}
        for result in self.shown:
            colour = colours.get(result.status, "red")
            table.add_row(Text("-" if result.tenant is None else literal(result.tenant)),
                          Text(result.status, style=colour), f"{result.duration_s:.3f}s",
                          Text(first_line(result.error or result.reason)))
        for status, count in self.hidden.items():
            table.add_row("…", Text(f"{count} more {status.replace('_', ' ')}"), "", "")
        self.console.print(table)
        self.console.print(Text(summary_line(summary)), highlight=False)


class JsonReporter(Observer):
    """Writes ``{"job", "runs": [...], "status", "duration_s"}`` to ``out``, each run as it finishes."""

    def __init__(self, out: IO[str], notices: IO[str] | None = None):
        self.out = out
        self.notices = notices or sys.stderr  # retries and waits: not part of the document
        self.first = True

    def started(self, plan: Plan) -> None:
        import json

        self.json = json
        self.out.write(f'{{"job": {json.dumps(plan.spec.name)}, "runs": [')
        self.out.flush()

    def retrying(self, tenant: Any, attempt: int, attempts: int, delay: float, error: str | None) -> None:
        PlainReporter(self.notices).retrying(tenant, attempt, attempts, delay, error)

    def waiting(self, tenant: Any, holder: str) -> None:
        PlainReporter(self.notices).waiting(tenant, holder)

    def run_finished(self, result: RunResult) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + self.json.dumps(result.to_json(), default=str))
        self.first = False
        self.out.flush()

    def finished(self, summary: Summary) -> None:
        tail = {"status": summary.status, "exit_code": int(summary.exit_code),
                "duration_s": round(summary.duration_s, 6), "counts": summary.counts, "invocation": summary.invocation}
        if summary.note:
            tail["note"] = summary.note
        if summary.signal:
            tail["interrupted_by"] = summary.signal
        if summary.error:
            tail["error"] = summary.error
        if summary.report_error:
            tail["report_error"] = summary.report_error
        if summary.limit_waits:
            tail["limit_waits"] = {name: {"waits": int(n), "seconds": round(secs, 3)}
                                   for name, (n, secs) in summary.limit_waits.items()}
        if summary.brake:
            tail["brake"] = summary.brake
        self.out.write("\n], " + self.json.dumps(tail)[1:] + "\n")
        self.out.flush()
