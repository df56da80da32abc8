"""Cron math in a time zone, with a fixed daylight-saving rule.

Cron expressions are matched against local wall-clock time; instants are returned as aware UTC datetimes.
Where the clock jumps (daylight saving, or a zone changing its offset), two kinds of schedule behave as
Vixie cron does:

* **Interval schedules** -- the hour field is ``*`` or ``*/n`` (every minute, every 15 minutes, hourly...)
  -- run on real time: they fire at every instant whose local time matches. In the repeated hour of a
  fall-back night they fire in both occurrences (an every-minute job fires once per real minute all year);
  local times inside a spring-forward gap never happen, so they are not fired (the next matching local
  time after the gap fires as usual). Where a zone shifts by part of an hour (Australia/Lord_Howe: 30
  minutes), an hourly schedule fires at each local ``:00``, so the two firings around each shift are 90
  real minutes apart.
* **Fixed-time schedules** -- any other hour field (``30 2 * * *``, ``0 9-17 * * 1-5``) -- fire once per
  matching local time: a time inside a spring-forward gap fires once at the first instant after the gap
  (02:30 in Berlin on the spring night fires at 03:00 CEST), and a time in the repeated hour fires once,
  at its first occurrence.

The same gap rule reads a local time given by a person (``run-due-jobs --at``): see :func:`to_instant`.
A schedule that can never fire (``0 0 31 2 *``) is invalid: :func:`validate_cron` says so.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache

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
HORIZON_YEARS = 5  # a schedule must fire within this many years, else it is reported as never firing
_MARGIN = timedelta(hours=3)  # larger than any DST shift
_MINUTE = timedelta(minutes=59)


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


def validate_cron(cron: str, now: datetime | None = None) -> str | None:
    """Return None when ``cron`` is valid, else a sentence saying what is wrong. A schedule whose day and
    month fields match no date within ``HORIZON_YEARS`` of ``now`` (``0 0 31 2 *``) is invalid: it never
    fires."""
    text = expand(cron)
    if text.startswith("@"):
        return f"unknown alias; use one of {', '.join(ALIASES)}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(text, datetime(2000, 1, 1))
    except Exception as exc:  # croniter raises several error classes
        return str(exc) or type(exc).__name__
    start = (now or datetime.now(UTC)).replace(tzinfo=None) - timedelta(days=1)
    try:
        croniter(f"0 0 {' '.join(fields[2:])}", start, max_years_between_matches=HORIZON_YEARS).get_next(datetime)
    except CroniterBadDateError:
        return (f"it never fires: no date in the next {HORIZON_YEARS} years matches its day-of-month "
                f"{fields[2]!r}, month {fields[3]!r} and day-of-week {fields[4]!r}")
    except Exception as exc:  # croniter's other errors: say them as they are
        return str(exc) or type(exc).__name__
    return None


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field expression: the minutes and hours it fires at, and how it picks its days."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: str  # "day-of-month month day-of-week"
    every_day: bool
    interval: bool  # the hour field is * or */n: runs on real time through daylight-saving shifts


@lru_cache(maxsize=512)
def parse(cron: str) -> Cron:
    """Parse ``cron`` (raises croniter's errors for an invalid one; call :func:`validate_cron` first)."""
    from croniter import croniter

    text = expand(cron)
    fields = text.split()
    expanded = croniter(text, datetime(2000, 1, 1)).expanded

    def values(index: int, count: int) -> tuple[int, ...]:
        found = expanded[index]
        return tuple(range(count)) if found == ["*"] else tuple(sorted(int(v) for v in found))

    return Cron(text=text, minutes=values(0, 60), hours=values(1, 24), days=" ".join(fields[2:]),
                every_day=all(field == ["*"] for field in expanded[2:]), interval=fields[1].startswith("*"))


def _days(cron: Cron, first: date) -> Iterator[date]:
    """The days (from ``first`` on) whose day-of-month, month and day-of-week fields match."""
    day = first
    if cron.every_day:
        while True:
            yield day
            day += timedelta(days=1)
    from croniter import CroniterBadDateError, croniter

    it = croniter(f"0 0 {cron.days}", datetime(first.year, first.month, first.day) - timedelta(seconds=1))
    while True:
        try:
            yield it.get_next(datetime).date()
        except CroniterBadDateError:  # no further date matches: the schedule ends
            return


def _steady_offset(hour: datetime, tz: tzinfo) -> timedelta | None:
    """The zone's one UTC offset for this whole local hour, or None when a shift touches it."""
    offset = hour.replace(tzinfo=tz).utcoffset()
    last = hour + _MINUTE
    for moment in (hour.replace(tzinfo=tz, fold=1), last.replace(tzinfo=tz), last.replace(tzinfo=tz, fold=1)):
        if moment.utcoffset() != offset:
            return None
    return offset


def _hours(cron: Cron, start: datetime) -> Iterator[datetime]:
    """The local hours (naive, on the hour) in which the schedule has minutes at or after ``start``."""
    for day in _days(cron, start.date()):
        for hour in cron.hours:
            base = datetime(day.year, day.month, day.day, hour)
            if base + _MINUTE >= start:
                yield base


def to_instant(naive: datetime, tz: tzinfo) -> datetime:
    """The instant a local wall time names: a repeated time is its first occurrence; a time inside a
    spring-forward gap (which never happens) is the first instant after the gap."""
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


def _local(instant: datetime, tz: tzinfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _instants(cron: Cron, tz: tzinfo, start: datetime) -> Iterator[datetime]:
    """Fire instants for local times from ``start`` (naive) on, by the rule above; ascending, unique."""
    last = datetime.min.replace(tzinfo=UTC)
    repeated: list[tuple[datetime, datetime]] = []  # interval schedules: a repeated hour's two occurrences
    steps = tuple(timedelta(minutes=minute) for minute in cron.minutes)
    for base in _hours(cron, start):
        for instant in _hour_instants(cron, tz, base, steps, start, repeated):
            if instant > last:
                last = instant
                yield instant


def _hour_instants(cron: Cron, tz: tzinfo, base: datetime, steps: tuple[timedelta, ...], start: datetime,
                   repeated: list[tuple[datetime, datetime]]) -> list[datetime]:
    """The instants of one local hour's ticks, in order. A repeated hour's occurrences are held back in
    ``repeated`` until it ends, then all its first occurrences come before all its second ones."""
    offset = _steady_offset(base, tz)
    if offset is not None and base >= start and not repeated:  # the usual hour: one offset throughout
        first = base.replace(tzinfo=UTC) - offset
        return [first + step for step in steps]
    ready: list[datetime] = []
    for step in steps:
        naive = base + step
        if naive < start:
            continue
        found = [naive.replace(tzinfo=UTC) - offset] if offset is not None else _irregular(cron, tz, naive)
        if repeated and (len(found) != 2 or naive - _local(repeated[0][0], tz) > _MARGIN):
            ready += [first for first, _ in repeated] + [second for _, second in repeated]
            repeated.clear()
        if len(found) == 2:
            repeated.append((found[0], found[1]))
        else:
            ready += found
    return ready


def _irregular(cron: Cron, tz: tzinfo, naive: datetime) -> list[datetime]:
    """The instants a local time near a shift fires at: two for an interval schedule in a repeated hour
    (both occurrences), none for an interval schedule in a gap; one for a fixed-time schedule."""
    early = naive.replace(tzinfo=tz).utcoffset()
    late = naive.replace(tzinfo=tz, fold=1).utcoffset()
    assert early is not None and late is not None
    base = naive.replace(tzinfo=UTC)
    if early == late:
        return [base - early]
    if early > late:  # repeated: fold=0 is the first occurrence
        return [base - early, base - late] if cron.interval else [base - early]
    return [] if cron.interval else [to_instant(naive, tz)]


def iter_ticks(cron: str, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after ``after`` (aware), ascending, without duplicates."""
    for instant in _instants(parse(cron), tz, _local(after, tz) - _MARGIN):
        if instant > after:
            yield instant


def next_tick(cron: str, tz: tzinfo, after: datetime) -> datetime:
    """The first fire instant after ``after``. Raises ``ValueError`` when the schedule never fires again."""
    for instant in iter_ticks(cron, tz, after):
        return instant
    raise ValueError(f"the schedule {cron!r} never fires after {after.isoformat()}")


def ticks_between(cron: str, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """Fire instants in ``(start, end]``."""
    result = []
    for instant in iter_ticks(cron, tz, start):
        if instant > end:
            break
        result.append(instant)
    return result
