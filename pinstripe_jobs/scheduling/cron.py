"""Cron math in a time zone, with a fixed daylight-saving rule.

Cron expressions are matched against local wall-clock time. Where a matching local time does not
exist (spring forward), the tick fires once at the first valid instant after the gap; where it occurs
twice (fall back), it fires once, at its first occurrence. Instants are returned as aware UTC datetimes.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo

UTC = UTC
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MARGIN = timedelta(hours=3)  # larger than any DST shift


def parse_duration(value: object) -> float | None:
    """``"10m"``, ``"90s"``, ``"1h"``, ``"1d"`` or a number of seconds; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def expand(cron: str) -> str:
    return ALIASES.get(cron.strip().lower(), cron.strip())


def validate_cron(cron: str) -> str | None:
    """Return None when ``cron`` is valid, else a sentence saying what is wrong."""
    text = expand(cron)
    if text.startswith("@"):
        return f"unknown alias; use one of {', '.join(ALIASES)}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    from croniter import croniter

    try:
        croniter(text, datetime(2000, 1, 1))
    except Exception as exc:  # croniter raises several error classes
        return str(exc) or type(exc).__name__
    return None


def _local(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def to_instant(naive: datetime, tz: tzinfo) -> datetime:
    """Map a local wall time to the instant it names, by the DST rule above."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _local(first, tz) == naive:
        return first  # exists (if ambiguous, fold=0 is the first occurrence)
    # In a gap: binary-search the first whole second whose local time is >= naive.
    low = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    high = int(first.timestamp())
    low, high = min(low, high), max(low, high)
    while high - low > 1:
        mid = (low + high) // 2
        if _local(datetime.fromtimestamp(mid, UTC), tz) >= naive:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def iter_ticks(cron: str, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after`` (aware), ascending, without duplicates."""
    from croniter import croniter

    it = croniter(expand(cron), _local(after, tz) - _MARGIN)
    last: datetime | None = None
    while True:
        instant = to_instant(it.get_next(datetime), tz)
        if instant <= after or instant == last:
            continue
        last = instant
        yield instant


def next_tick(cron: str, tz: tzinfo, after: datetime) -> datetime:
    return next(iter_ticks(cron, tz, after))


def ticks_between(cron: str, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants in ``(start, end]``."""
    result = []
    for instant in iter_ticks(cron, tz, start):
        if instant > end:
            break
        result.append(instant)
    return result
