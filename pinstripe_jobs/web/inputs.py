"""Everything a request can carry, checked before it reaches the state store: each value has a documented
maximum length or range, and a value outside it is a ``BadRequest`` (400, with a message naming the value
and the limit). The store is never the one to find out that an input is too long: SQLite answers a 51,000
character ``LIKE`` pattern with an error that reads like an outage."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from pinstripe_jobs.model.status import RANK, Status

MAX_TEXT = 200  # a job name, a tenant id, a search (q), an invocation id
MAX_CURSOR = 1000  # a cursor handed out by a page (it names the last row of that page)
MAX_LIMIT = 500  # rows per page
DEFAULT_LIMIT = 50
MAX_ID = 2 ** 63 - 1  # a run id is a 64-bit signed integer
MAX_ARGS = 100  # arguments of one "run now"
MAX_ARG = 4096  # characters in one argument
MAX_BODY = 64 * 1024  # bytes of a JSON request body

STATUSES = tuple(status.value for status in Status)
_DIGITS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class BadRequest(ValueError):
    """A request value the dashboard does not accept (400)."""


class NotFound(Exception):
    """No such job, run or page (404)."""


async def bounded_body(request: Request) -> bytes:
    """The request body (kept for ``request.form()``), at most ``MAX_BODY`` bytes: a Content-Length above that
    is refused before reading."""
    length = request.headers.get("content-length", "")
    if (length.isascii() and length.isdigit() and int(length) > MAX_BODY) or len(await request.body()) > MAX_BODY:
        raise BadRequest(f"the body is longer than {MAX_BODY} bytes")
    return await request.body()


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def checked_text(value: str, what: str, max_len: int = MAX_TEXT) -> str:
    """``value`` if it is at most ``max_len`` characters long and free of control characters."""
    if len(value) > max_len:
        raise BadRequest(f"{what} is {len(value)} characters long; at most {max_len} are accepted")
    if _CONTROL.search(value):
        raise BadRequest(f"{what} {_shown(value)} contains a control character")
    return value


def text(query: Mapping[str, str], key: str, max_len: int = MAX_TEXT) -> str | None:
    """The query parameter ``key``; None when absent or empty."""
    raw = query.get(key)
    return checked_text(raw, key, max_len) if raw else None


def whole_number(raw: str, what: str, low: int, high: int) -> int:
    if not _DIGITS.fullmatch(raw) or len(raw) > len(str(high)) or not low <= int(raw) <= high:
        raise BadRequest(f"{what} must be a whole number from {low} to {high}")
    return int(raw)


def limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    return DEFAULT_LIMIT if raw is None else whole_number(raw, "limit", 1, MAX_LIMIT)


def status(query: Mapping[str, str], allowed: tuple[str, ...] = STATUSES) -> str | None:
    raw = query.get("status") or None
    if raw is not None and raw not in allowed:
        raise BadRequest(f"unknown status {_shown(raw)} (one of {', '.join(allowed)})")
    return raw


def cursor(query: Mapping[str, str], key: str, shape: re.Pattern[str] | None = None) -> str | None:
    """A cursor as a page handed it out: bounded, and of the shape its query reads (a cursor of another
    shape would reach the store as a number too large for it, or text where it wants a number)."""
    raw = text(query, key, MAX_CURSOR)
    if raw is not None and shape is not None and not shape.fullmatch(raw):
        raise BadRequest(f"cursor {_shown(raw)} was not handed out by this query: pass the next_cursor of the "
                         "page before")
    return raw


RUNS_CURSOR = re.compile(r"[0-9]{1,18}")  # a run id
GRID_CURSOR = re.compile(r"[0-9]{1,2}\|.*", re.DOTALL)  # rank|tenant


def run_id(raw: str) -> int | None:
    """A run id from a path: None for what is not a number at all (no such page), 400 out of range."""
    if not _DIGITS.fullmatch(raw):
        return None
    return whole_number(raw, "run id", 1, MAX_ID)


def job_name(raw: str) -> str:
    return checked_text(raw, "job name")


@dataclass(frozen=True)
class GridQuery:
    """The tenant grid and invocations of one job page: ?status=&q=&cursor=&limit=&before=."""

    status: str | None
    q: str | None
    cursor: str | None
    limit: int
    before: str | None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> GridQuery:
        return cls(status=status(query, tuple(str(s) for s in RANK)), q=text(query, "q"),
                   cursor=cursor(query, "cursor", GRID_CURSOR), limit=limit(query),
                   before=cursor(query, "before"))


@dataclass(frozen=True)
class RunsQuery:
    """/runs and /api/runs: ?job=&status=&tenant=&invocation=&cursor=&limit=."""

    job: str | None
    status: str | None
    tenant: str | None
    invocation: str | None
    cursor: str | None
    limit: int

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> RunsQuery:
        return cls(job=text(query, "job"), status=status(query), tenant=text(query, "tenant"),
                   invocation=text(query, "invocation"), cursor=cursor(query, "cursor", RUNS_CURSOR),
                   limit=limit(query))


def run_arguments(values: Any) -> list[str]:
    """The arguments of a "run now": a list of strings and numbers (numbers are passed as their text)."""
    if not isinstance(values, list):
        raise BadRequest(f"args must be a list of strings and numbers, not {type(values).__name__}")
    if len(values) > MAX_ARGS:
        raise BadRequest(f"args has {len(values)} items; at most {MAX_ARGS} are accepted")
    args = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BadRequest(f"args[{index}] must be a string or a number, not {_json_type(value)}")
        arg = value if isinstance(value, str) else str(value)
        if len(arg) > MAX_ARG:
            raise BadRequest(f"args[{index}] is {len(arg)} characters long; at most {MAX_ARG} are accepted")
        if "\x00" in arg:
            raise BadRequest(f"args[{index}] contains a NUL character, which no command line can carry")
        args.append(arg)
    return args


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", type(None): "null", dict: "an object", list: "a list"}
    return names.get(type(value), type(value).__name__)


def run_body(body: Any) -> tuple[list[str], bool]:
    """``{"args": [...], "only_failed": true}`` (both optional) from a JSON body."""
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object like {{\"args\": [], \"only_failed\": false}}, not "
                         f"{_json_type(body)}")
    unknown = sorted(set(body) - {"args", "only_failed"})
    if unknown:
        raise BadRequest(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(_shown, unknown))} "
                         "(the body takes args and only_failed)")
    only_failed = body.get("only_failed", False)
    if not isinstance(only_failed, bool):
        raise BadRequest(f"only_failed must be true or false, not {_json_type(only_failed)}")
    return run_arguments(body.get("args", [])), only_failed
