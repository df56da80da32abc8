"""The cron rule through daylight saving, computed over a whole year of minutes in three zones, and checked
minute by minute against a plain reading of the rule around every shift (issue #20 item 9)."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from pinstripe_jobs.scheduling.cron import next_tick, ticks_between, to_instant, validate_cron

MINUTE, QUARTER, HOUR = timedelta(minutes=1), timedelta(minutes=15), timedelta(hours=1)
ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)  # 2026 is not a leap year: 525,600 real minutes


def year(cron: str, zone: str) -> list[datetime]:
    """Fire instants in the real minutes of 2026 (UTC)."""
    return ticks_between(cron, ZoneInfo(zone), YEAR_START - timedelta(microseconds=1), YEAR_END - MINUTE)


def steps(ticks: list[datetime]) -> Counter[timedelta]:
    return Counter(later - earlier for earlier, later in zip(ticks, ticks[1:], strict=False))


@pytest.mark.parametrize("zone", ZONES)
def test_every_minute_fires_once_per_real_minute_all_year(zone):
    ticks = year("* * * * *", zone)
    assert len(ticks) == 525_600  # every real minute, through both shifts
    assert ticks[0] == YEAR_START and steps(ticks) == {MINUTE: 525_599}  # none twice, none skipped


@pytest.mark.parametrize("zone", ZONES)
def test_every_15_minutes_fires_once_per_15_real_minutes_all_year(zone):
    ticks = year("*/15 * * * *", zone)
    assert len(ticks) == 35_040 and steps(ticks) == {QUARTER: 35_039}
    assert all(t.astimezone(ZoneInfo(zone)).minute % 15 == 0 for t in ticks)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_hourly_fires_once_per_real_hour_in_whole_hour_zones(zone):
    ticks = year("0 * * * *", zone)
    assert len(ticks) == 8_760 and steps(ticks) == {HOUR: 8_759}


def test_hourly_follows_the_local_hour_where_the_shift_is_30_minutes():
    # Lord Howe shifts by 30 minutes, so its local :00 moves against real hours: the documented exception
    # is one 90-minute step at each shift (spring 01:00 -> 03:00 local; autumn 01:00 -> 02:00 local).
    zone = ZoneInfo("Australia/Lord_Howe")
    ticks = year("0 * * * *", "Australia/Lord_Howe")
    assert all(t.astimezone(zone).minute == 0 for t in ticks)
    assert steps(ticks) == {HOUR: len(ticks) - 3, timedelta(minutes=90): 2}
    long_steps = [later for earlier, later in zip(ticks, ticks[1:], strict=False) if later - earlier > HOUR]
    assert [t.astimezone(zone).strftime("%m-%d %H:%M") for t in long_steps] == ["04-05 02:00", "10-04 03:00"]


# (zone, fixed-time cron, the spring day and the local time it fires at, the autumn day and its UTC offset)
FIXED = [
    ("Europe/Berlin", "30 2 * * *", date(2026, 3, 29), "03:00", date(2026, 10, 25), timedelta(hours=2)),
    ("America/New_York", "30 2 * * *", date(2026, 3, 8), "03:00", date(2026, 11, 1), None),  # 02:30 not repeated
    ("America/New_York", "30 1 * * *", None, None, date(2026, 11, 1), timedelta(hours=-4)),
    ("Australia/Lord_Howe", "15 2 * * *", date(2026, 10, 4), "02:30", None, None),
    ("Australia/Lord_Howe", "45 1 * * *", None, None, date(2026, 4, 5), timedelta(hours=11)),
]


@pytest.mark.parametrize("zone, cron, gap_day, gap_time, repeat_day, first_offset", FIXED)
def test_a_fixed_time_fires_once_per_local_day(zone, cron, gap_day, gap_time, repeat_day, first_offset):
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 1, tzinfo=tz).astimezone(UTC)
    ticks = ticks_between(cron, tz, start, datetime(2027, 1, 1, tzinfo=tz).astimezone(UTC))
    days = [t.astimezone(tz).date() for t in ticks]
    assert len(days) == 365 and len(set(days)) == 365  # every local day once
    minute, hour = (int(part) for part in cron.split()[:2])
    by_day = {t.astimezone(tz).date(): t.astimezone(tz) for t in ticks}
    usual = [moment for day, moment in by_day.items() if day != gap_day]
    assert all((moment.hour, moment.minute) == (hour, minute) for moment in usual)
    if gap_day:  # the local time does not exist that day: the first instant after the gap
        assert by_day[gap_day].strftime("%H:%M") == gap_time
    if repeat_day and first_offset is not None:  # it exists twice that day: the first occurrence only
        assert by_day[repeat_day].utcoffset() == first_offset


class Match:
    """Does a local time match the cron? (croniter's fields; its own match() is too slow to call per minute.)"""

    def __init__(self, cron: str):
        fields = croniter(cron).expanded
        self.minutes = set(range(60)) if fields[0] == ["*"] else set(fields[0])
        self.hours = set(range(24)) if fields[1] == ["*"] else set(fields[1])
        self.days = "0 0 " + " ".join(cron.split()[2:])
        self.day_ok: dict[date, bool] = {}

    def __call__(self, local: datetime) -> bool:
        day = local.date()
        if day not in self.day_ok:
            self.day_ok[day] = croniter.match(self.days, datetime(day.year, day.month, day.day))
        return local.minute in self.minutes and local.hour in self.hours and self.day_ok[day]


def reference(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The rule read plainly, minute by minute: an interval schedule (hour * or */n) fires at every real
    minute whose local time matches; a fixed-time one fires once per matching local time, at its first
    occurrence, or (in a gap) at the first instant after the gap."""
    interval, match = cron.split()[1].startswith("*"), Match(cron)
    found = set()
    moment = start
    while moment <= end:  # every real minute
        local = moment.astimezone(tz).replace(tzinfo=None)
        if match(local):
            found.add(moment if interval else to_instant(local, tz))
        moment += MINUTE
    naive, last = start.astimezone(tz).replace(tzinfo=None), end.astimezone(tz).replace(tzinfo=None)
    while not interval and naive <= last:  # every local minute: the ones in a gap never came up above
        if match(naive) and to_instant(naive, tz).astimezone(tz).replace(tzinfo=None) != naive:
            found.add(to_instant(naive, tz))
        naive += MINUTE
    return sorted(t for t in found if start <= t <= end)


SHIFTS = [("Europe/Berlin", (2026, 3, 29)), ("Europe/Berlin", (2026, 10, 25)), ("America/New_York", (2026, 3, 8)),
          ("America/New_York", (2026, 11, 1)), ("Australia/Lord_Howe", (2026, 4, 5)),
          ("Australia/Lord_Howe", (2026, 10, 4)), ("Australia/Sydney", (2026, 4, 5)), ("UTC", (2026, 6, 1)),
          ("America/Santiago", (2026, 4, 5)), ("America/Santiago", (2026, 9, 6)),  # shifts at midnight
          ("Pacific/Chatham", (2026, 4, 5)), ("Pacific/Chatham", (2026, 9, 27))]  # at 02:45 and 03:45
CRONS = ["* * * * *", "*/7 * * * *", "5,35 */2 * * *", "0 * * * *", "30 2 * * *", "*/10 1-3 * * *", "15 1 * * 0",
         "59 23 * * *", "0,30 0-4 * * *"]


@pytest.mark.parametrize("zone, day", SHIFTS)
def test_ticks_match_the_rule_minute_by_minute_around_every_shift(zone, day):
    tz = ZoneInfo(zone)
    start = datetime(*day, tzinfo=UTC) - timedelta(days=1)
    end = start + timedelta(days=2, hours=12)
    for cron in CRONS:
        expected = reference(cron, tz, start, end)
        assert ticks_between(cron, tz, start - timedelta(microseconds=1), end) == expected, cron


def test_the_tick_after_any_instant_in_a_repeated_hour_is_the_next_real_one():
    tz = ZoneInfo("Europe/Berlin")
    moment = datetime(2026, 10, 24, 23, 50, tzinfo=UTC)  # 01:50 CEST; 02:00-02:59 comes twice
    while moment < datetime(2026, 10, 25, 2, 10, tzinfo=UTC):
        assert next_tick("*/5 * * * *", tz, moment) == moment + timedelta(minutes=5)
        moment += timedelta(minutes=5)


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "* * 31 4 *", "0 12 31 6,9,11 *"])
def test_a_schedule_that_never_fires_is_invalid(cron):
    problem = validate_cron(cron)
    assert problem is not None and "never fires" in problem and "5 years" in problem


@pytest.mark.parametrize("cron", ["0 0 29 2 *", "0 0 30 2 1", "0 0 31 * *", "0 0 L 2 *"])
def test_rare_schedules_that_do_fire_are_valid(cron):
    assert validate_cron(cron, now=datetime(2026, 3, 1, tzinfo=UTC)) is None


def test_a_local_time_in_the_gap_names_the_first_instant_after_it():
    berlin = ZoneInfo("Europe/Berlin")
    assert to_instant(datetime(2026, 3, 29, 2, 30), berlin) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert to_instant(datetime(2026, 10, 25, 2, 30), berlin) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # CEST
