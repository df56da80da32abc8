"""The only module that talks to the terminal: progress, per-run lines, summaries, JSON.

``PlainReporter`` for pipes and CI logs (no colour, no redraws), ``RichReporter`` for terminals (imports
rich only then), ``JsonReporter`` for ``--json`` (one document on stdout, written as runs finish).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import IO, Any, Iterable

from .results import SUCCEEDED, RunResult, Summary

TABLE_ROWS = 50  # the summary table shows every failure and at most this many other runs


def who(tenant: Any) -> str:
    return "(no tenant)" if tenant is None else f"tenant {tenant}"


def first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def summary_line(summary: Summary) -> str:
    parts = [f"{count} {status.replace('_', ' ')}" for status, count in sorted(summary.counts.items())]
    text = f"{summary.job}: {summary.status} - {', '.join(parts) or 'no runs'} in {summary.duration_s:.2f}s"
    if summary.signal:
        import signal as _signal

        text += f" (interrupted by {_signal.Signals(summary.signal).name})"
    if summary.error:
        text += f"\n{summary.error}\nThe run stopped there: tenants after that point were not read."
    return text


def use_rich(stream: IO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


_WRITE_LOCK = threading.RLock()


class WholeLines:
    """A stream wrapper for many threads: each thread's text is passed on in whole lines only, so output
    from concurrent jobs never interleaves half-lines. ``close()`` passes on what is left unterminated."""

    def __init__(self, target: IO):
        self.target = target
        self._pending: dict[int, str] = {}

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        buffered = self._pending.pop(ident, "") + text
        head, newline, rest = buffered.rpartition("\n")
        if rest:
            self._pending[ident] = rest
        if newline:
            with _WRITE_LOCK:
                self.target.write(head + "\n")
                self.target.flush()
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        leftovers, self._pending = self._pending, {}
        with _WRITE_LOCK:
            for text in leftovers.values():
                self.target.write(text + "\n")
            self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class PlainReporter:
    """One line per finished run; failures add their trimmed traceback, indented. Whole lines only, so
    reporters on several threads (the bot) never interleave half-lines."""

    def __init__(self, out: IO | None = None, tracebacks: bool = True, prefix: str = ""):
        self.out = out or sys.stdout
        self.tracebacks = tracebacks
        self.prefix = prefix

    def started(self, plan) -> None:
        scope = "for each matching tenant" if plan.multi_tenant else "once (not per tenant)"
        self._write(f"Running {plan.spec.name} {scope}")

    def run_started(self, tenant) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        line = f"  {result.status.upper():<11} {who(result.tenant)}  {result.duration_s:.3f}s"
        if result.error:
            line += f"  {result.error}"
        elif result.reason:
            line += f"  ({result.reason})"
        self._write(line)
        if self.tracebacks and result.traceback:
            self._write("\n".join("      " + row for row in result.traceback.splitlines()))

    def finished(self, summary: Summary) -> None:
        self._write(summary_line(summary))

    def _write(self, text: str) -> None:
        if self.prefix:
            text = "\n".join(f"{self.prefix} {line.lstrip()}" for line in text.splitlines())
        with _WRITE_LOCK:
            self.out.write(text + "\n")
            self.out.flush()


class RichReporter:
    """A transient progress bar, result lines above it, and a summary table at the end."""

    def __init__(self, out: IO | None = None):
        from rich.console import Console

        self.console = Console(file=out or sys.stdout)
        self.progress = None
        self.task = None
        self.shown: list[RunResult] = []
        self.hidden = 0

    def started(self, plan) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
        from rich.progress import TimeElapsedColumn, TimeRemainingColumn

        total = plan.count()
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task(plan.spec.name, total=total)

    def run_started(self, tenant) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        from rich.markup import escape

        if result.status != SUCCEEDED:
            style = "yellow" if result.status == "skipped" else "red"
            detail = result.error or result.reason or ""
            self.console.print(f"[{style}]{result.status.upper()}[/] {escape(who(result.tenant))} "
                               f"{escape(first_line(detail))}")
            if result.traceback:
                self.console.print(escape(result.traceback), style="dim", highlight=False)
        if result.status != SUCCEEDED or len(self.shown) < TABLE_ROWS:
            self.shown.append(result)
        else:
            self.hidden += 1
        self.progress.advance(self.task)

    def finished(self, summary: Summary) -> None:
        from rich.table import Table

        self.progress.stop()
        table = Table(title=f"{summary.job}", title_justify="left")
        for column in ("tenant", "status", "duration", "error"):
            table.add_column(column, overflow="fold")
        colours = {"succeeded": "green", "skipped": "yellow"}
        for result in self.shown:
            colour = colours.get(result.status, "red")
            table.add_row("-" if result.tenant is None else str(result.tenant), f"[{colour}]{result.status}[/]",
                          f"{result.duration_s:.3f}s", first_line(result.error or result.reason))
        if self.hidden:
            table.add_row("…", f"{self.hidden} more succeeded", "", "")
        self.console.print(table)
        self.console.print(summary_line(summary), highlight=False)


class JsonReporter:
    """Writes ``{"job", "runs": [...], "status", "duration_s"}`` to ``out``, each run as it finishes."""

    def __init__(self, out: IO):
        self.out = out
        self.first = True

    def started(self, plan) -> None:
        import json

        self.json = json
        self.out.write('{"job": %s, "runs": [' % json.dumps(plan.spec.name))
        self.out.flush()

    def run_started(self, tenant) -> None:
        pass

    def run_finished(self, result: RunResult) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + self.json.dumps(result.to_json(), default=str))
        self.first = False
        self.out.flush()

    def finished(self, summary: Summary) -> None:
        tail = {"status": summary.status, "duration_s": round(summary.duration_s, 6), "counts": summary.counts}
        if summary.signal:
            tail["interrupted_by"] = summary.signal
        if summary.error:
            tail["error"] = summary.error
        self.out.write("\n], " + self.json.dumps(tail)[1:] + "\n")
        self.out.flush()


def print_json(document: Any, out: IO | None = None) -> None:
    import json

    (out or sys.stdout).write(json.dumps(document, indent=2, default=str) + "\n")


def print_dry_run(job: str, tenants: Iterable, as_json: bool, out: IO | None = None) -> int:
    out = out or sys.stdout
    ids = []
    if as_json:
        ids = [None if t is None else t.id for t in tenants]
        print_json({"job": job, "dry_run": True, "tenants": ids}, out)
        return len(ids)
    count = 0
    out.write(f"Dry run: {job} would run for\n")
    for tenant in tenants:
        count += 1
        name = f"  ({tenant.get('name')})" if tenant is not None and tenant.get("name") else ""
        out.write(f"  {who(None if tenant is None else tenant.id)}{name}\n")
    out.write(f"{count} run(s); nothing was run.\n")
    return count


def print_job_list(jobs: list[dict], broken: list, as_json: bool, out: IO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"jobs": jobs, "broken": [{"name": b.job_name, "file": b.path, "line": b.line,
                                              "error": b.error} for b in broken]}, out)
        return
    rich = use_rich(out)
    if rich:
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in ("job", "description", "per tenant", "schedule", "next run", "last run"):
            table.add_column(column, overflow="fold")
    for job in jobs:
        schedule = ", ".join(s["cron"] + (f" {s['args']}" if s["args"] else "") for s in job["schedules"]) or "-"
        last = "-"
        if job.get("last_status"):
            last = f"{job['last_status']} {job.get('last_run') or ''}".strip()
        row = [job["name"], job["description"] or "-", "yes" if job["multi_tenant"] else "no", schedule,
               job["next_run"] or "-", last]
        if rich:
            table.add_row(*row)
        else:
            out.write(f"{row[0]}\n  description: {row[1]}\n  per tenant: {row[2]}\n  schedule: {row[3]}\n"
                      f"  next run: {row[4]}\n  last run: {row[5]}\n")
    if rich:
        Console(file=out).print(table)
    if not jobs and not broken:
        out.write("No jobs yet. Create one with `pinstripe generate-background-job NAME`.\n")
    for problem in broken:
        where = f"{problem.path}:{problem.line}" if problem.line else problem.path
        out.write(f"BROKEN {problem.job_name}: {where}: {problem.error}\n")


def print_history(rows: list[dict], as_json: bool, out: IO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"runs": rows}, out)
        return
    if not rows:
        out.write("No runs recorded.\n")
        return
    columns = ("started_at", "job", "tenant", "trigger", "status", "duration", "error")
    lines = [[_cell(row, c) for c in columns] for row in rows]
    if use_rich(out):
        from rich.console import Console
        from rich.table import Table

        table = Table()
        for column in columns:
            table.add_column(column, overflow="fold")
        colours = {"succeeded": "green", "skipped": "yellow", "running": "cyan"}
        for line in lines:
            line[4] = f"[{colours.get(line[4], 'red')}]{line[4]}[/]"
            table.add_row(*line)
        Console(file=out).print(table)
        return
    for line in lines:
        out.write("  ".join(line).rstrip() + "\n")


def _cell(row: dict, column: str) -> str:
    if column == "duration":
        from datetime import datetime

        if not row.get("ended_at"):
            return "-"
        seconds = (datetime.fromisoformat(row["ended_at"]) - datetime.fromisoformat(row["started_at"])).total_seconds()
        return f"{seconds:.3f}s"
    if column == "tenant":
        return "-" if row["tenant"] is None else str(row["tenant"])
    if column == "error":
        return first_line(row.get("error"))
    return str(row.get(column) or "-")
