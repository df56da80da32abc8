"""What the listing commands print: the dry run's tenants, the job list and the run history, as text (a
table on a terminal, through rich) or JSON. Everything from jobs and tenants is shown literally."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

from pinstripe_jobs.model.status import Status
from pinstripe_jobs.observers.terminal import use_rich, who
from pinstripe_jobs.textsafe import first_line, literal

if TYPE_CHECKING:
    from pinstripe_jobs.errors import JobImportError
    from pinstripe_jobs.tenants import Tenant


def print_json(document: Any, out: IO[str] | None = None) -> None:
    import json

    (out or sys.stdout).write(json.dumps(document, indent=2, default=str) + "\n")


def print_dry_run(job: str, tenants: Iterable[Tenant | None], as_json: bool, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    ids = []
    if as_json:
        ids = [None if t is None else t.id for t in tenants]
        print_json({"job": job, "dry_run": True, "tenants": ids}, out)
        return len(ids)
    count = 0
    out.write(f"Dry run: {literal(job)} would run for\n")
    for tenant in tenants:
        count += 1
        name = f"  ({literal(tenant.get('name'))})" if tenant is not None and tenant.get("name") else ""
        out.write(f"  {who(None if tenant is None else tenant.id)}{name}\n")
    out.write(f"{count} run(s); nothing was run.\n")
    return count


def print_job_list(jobs: list[dict[str, Any]], broken: list[JobImportError], as_json: bool,
                   out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"jobs": jobs, "broken": [{"name": b.job_name, "file": b.path, "line": b.line,
                                              "error": b.error} for b in broken]}, out)
        return
    columns = ("job", "description", "per tenant", "schedule", "next run", "last run")
    rows = []
    for job in jobs:
        schedule = ", ".join(s["cron"] + (f" {s['args']}" if s["args"] else "") for s in job["schedules"]) or "-"
        if schedule != "-" and job.get("timezone"):
            schedule += f" ({job['timezone']})"
        last = "-"
        if job.get("last_status"):
            last = f"{job['last_status']} {job.get('last_run') or ''}".strip()
        next_run = job["next_run"] or "-"
        if job.get("paused"):
            pause = job["paused"]
            next_run = f"PAUSED by {pause['who']}" + (f": {pause['reason']}" if pause.get("reason") else "")
        if job.get("paused_tenants"):
            next_run += f" ({len(job['paused_tenants'])} tenant(s) paused: " + \
                ", ".join(str(p["tenant"]) for p in job["paused_tenants"][:5]) + ")"
        rows.append([literal(cell) for cell in (job["name"], job["description"] or "-",
                                               "yes" if job["multi_tenant"] else "no", schedule, next_run, last)])
    if rows and use_rich(out):
        _rich_table(out, columns, rows)
    for row in rows if not use_rich(out) else ():
        out.write(f"{row[0]}\n  description: {row[1]}\n  per tenant: {row[2]}\n  schedule: {row[3]}\n"
                  f"  next run: {row[4]}\n  last run: {row[5]}\n")
    if not jobs and not broken:
        out.write("No jobs yet. Create one with `pinstripe generate-background-job NAME`.\n")
    for problem in broken:
        where = f"{problem.path}:{problem.line}" if problem.line else problem.path
        out.write(f"BROKEN {literal(problem.job_name)}: {literal(where)}: {literal(problem.error)}\n")


def _rich_table(out: IO[str], columns: tuple[str, ...], rows: list[list[str]],
                styles: dict[int, Callable[[str], str]] | None = None) -> None:
    """A table whose cells are literal text (never parsed as markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell, style=(styles or {}).get(i, _no_style)(cell)) for i, cell in enumerate(row)))
    Console(file=out).print(table)


def _no_style(cell: str) -> str:
    return ""


HISTORY_COLUMNS = ("started_at", "job", "tenant", "trigger", "status", "duration", "error")


def print_history(rows: list[dict[str, Any]], as_json: bool, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"runs": rows}, out)
        return
    if not rows:
        out.write("No runs recorded.\n")
        return
    lines = [[_cell(row, c) for c in HISTORY_COLUMNS] for row in rows]
    if use_rich(out):
        colours: dict[str, str] = {Status.SUCCEEDED: "green", Status.SKIPPED: "yellow", Status.RUNNING: "cyan"}
        _rich_table(out, HISTORY_COLUMNS, lines, {4: lambda status: colours.get(status, "red")})
        return
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(HISTORY_COLUMNS)]
    widths[-1] = 0  # the error column is last: no padding
    for line in [list(HISTORY_COLUMNS), *lines]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() + "\n")


def _cell(row: dict[str, Any], column: str) -> str:
    if column == "duration":
        from datetime import datetime

        if not row.get("ended_at"):
            return "-"
        seconds = (datetime.fromisoformat(row["ended_at"]) - datetime.fromisoformat(row["started_at"])).total_seconds()
        return f"{seconds:.3f}s"
    if column == "tenant":
        return "-" if row["tenant"] is None else literal(row["tenant"])
    if column == "error":
        return first_line(row.get("error"))
    return literal(row.get(column) or "-")
