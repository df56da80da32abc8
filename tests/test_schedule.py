"""Cron math: validation, due ticks, and the daylight-saving rule in several zones."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pinstripe_jobs.scheduling.cron import next_tick, ticks_between, validate_cron

UTC = UTC


def local(ticks, tz):
    return [t.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") for t in ticks]


@pytest.mark.parametrize("cron", ["* * * * *", "*/5 9-17 * * 1-5", "0 0 1 1 *", "@hourly", "@daily", "@weekly",
                                  "@monthly", "@yearly", "@annually", "@midnight", "15 3 * * sun"])
def test_valid(cron):
    assert validate_cron(cron) is None


@pytest.mark.parametrize("cron, problem", [("61 * * * *", "out of range"), ("* * *", "expected 5 fields"),
                                           ("* * * * * *", "got 6"), ("@often", "unknown alias"),
                                           ("a b c d e", ""), ("", "got 0")])
def test_invalid(cron, problem):
    message = validate_cron(cron)
    assert message is not None and problem in message


def test_next_tick_and_ticks_between_in_utc():
    start = datetime(2026, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert next_tick("*/15 * * * *", UTC, start) == datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    assert next_tick("*/15 * * * *", UTC, datetime(2026, 1, 1, 10, 15, tzinfo=UTC)) == datetime(2026, 1, 1, 10, 30,
                                                                                             tzinfo=UTC)
    ticks = ticks_between("0 * * * *", UTC, start, datetime(2026, 1, 1, 13, 0, tzinfo=UTC))
    assert [t.hour for t in ticks] == [11, 12, 13]  # (start, end]


def test_ticks_are_in_the_zone_of_the_job():
    tokyo = ZoneInfo("Asia/Tokyo")
    tick = next_tick("0 9 * * *", tokyo, datetime(2026, 5, 31, 12, tzinfo=UTC))
    assert tick == datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # 09:00 JST


# Spring forward: the skipped local hour. London 2026-03-29 01:00 GMT -> 02:00 BST;
# New York 2026-03-08 02:00 EST -> 03:00 EDT; Sydney (south) 2026-10-04 02:00 AEST -> 03:00 AEDT.
@pytest.mark.parametrize("zone, cron, start, end, expected", [
    ("Europe/London", "30 1 * * *", (2026, 3, 28, 12), (2026, 3, 30, 12),
     ["2026-03-29 02:00 BST", "2026-03-30 01:30 BST"]),
    ("America/New_York", "30 2 * * *", (2026, 3, 7, 12), (2026, 3, 9, 12),
     ["2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]),
    ("Australia/Sydney", "15 2 * * *", (2026, 10, 3, 0), (2026, 10, 5, 0),
     ["2026-10-04 03:00 AEDT", "2026-10-05 02:15 AEDT"]),
])
def test_spring_forward_fires_once_at_the_next_valid_time(zone, cron, start, end, expected):
    tz = ZoneInfo(zone)
    ticks = ticks_between(cron, tz, datetime(*start, tzinfo=UTC), datetime(*end, tzinfo=UTC))
    assert local(ticks, tz) == expected


def test_spring_forward_hourly_job_does_not_fire_twice_at_the_jump():
    tz = ZoneInfo("Europe/London")
    ticks = ticks_between("0 * * * *", tz, datetime(2026, 3, 28, 23, 30, tzinfo=UTC),
                          datetime(2026, 3, 29, 2, 30, tzinfo=UTC))
    assert local(ticks, tz) == ["2026-03-29 00:00 GMT", "2026-03-29 02:00 BST", "2026-03-29 03:00 BST"]
    assert len(set(ticks)) == len(ticks)


# Fall back: the repeated local hour fires once, at its first occurrence.
@pytest.mark.parametrize("zone, cron, start, end, expected", [
    ("Europe/London", "30 1 * * *", (2026, 10, 24, 12), (2026, 10, 26, 12),
     ["2026-10-25 01:30 BST", "2026-10-26 01:30 GMT"]),
    ("America/New_York", "30 1 * * *", (2026, 10, 31, 12), (2026, 11, 2, 12),
     ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]),
    ("Australia/Sydney", "30 2 * * *", (2026, 4, 4, 0), (2026, 4, 6, 0),
     ["2026-04-05 02:30 AEDT", "2026-04-06 02:30 AEST"]),
])
def test_fall_back_fires_once(zone, cron, start, end, expected):
    tz = ZoneInfo(zone)
    ticks = ticks_between(cron, tz, datetime(*start, tzinfo=UTC), datetime(*end, tzinfo=UTC))
    assert local(ticks, tz) == expected


def test_fall_back_every_30_minutes_fires_on_real_time_through_the_repeated_hour():
    # An interval schedule (hour field * or */n) runs on real time, as Vixie cron does: the repeated
    # hour's times fire in both occurrences (issue #20 item 9; it used to skip the second hour).
    tz = ZoneInfo("America/New_York")
    ticks = ticks_between("*/30 * * * *", tz, datetime(2026, 11, 1, 4, 45, tzinfo=UTC),
                          datetime(2026, 11, 1, 7, 0, tzinfo=UTC))
    assert local(ticks, tz) == ["2026-11-01 01:00 EDT", "2026-11-01 01:30 EDT", "2026-11-01 01:00 EST",
                                "2026-11-01 01:30 EST", "2026-11-01 02:00 EST"]
