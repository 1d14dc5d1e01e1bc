"""Time bands: local-time lookup, holidays, segments, DST."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from quota_engine.catalog.timebands import (
    DAYS,
    BandClock,
    BandWindow,
    TimeBand,
    day_plan,
    first_week_gap,
    parse_hhmm,
)

WEEKDAYS = frozenset(DAYS[:5])
WEEKEND = frozenset({"sat", "sun"})

BANDS = (
    TimeBand("peak", (BandWindow(WEEKDAYS, 8 * 60, 20 * 60),)),
    TimeBand("offpeak", (BandWindow(WEEKDAYS, 0, 8 * 60), BandWindow(WEEKDAYS, 20 * 60, 1440))),
    TimeBand("weekend", (BandWindow(WEEKEND, 0, 1440),)),
    # holidays: a special band at lunch time only; the rest of the day is the weekday's
    TimeBand("holiday-lunch", (BandWindow(frozenset({"holiday"}), 12 * 60, 14 * 60),)),
)
XMAS = date(2025, 12, 25)  # a Thursday


@pytest.mark.parametrize(
    ("text", "allow_24", "expected"),
    [
        ("00:00", False, 0),
        ("08:30", False, 510),
        ("23:59", False, 1439),
        ("24:00", False, None),
        ("24:00", True, 1440),
        ("24:01", True, None),
        ("12:60", True, None),
        ("8:00", True, None),
        ("08:00:00", True, None),
        ("0８:00", True, None),  # full-width digit
        (800, True, None),
    ],
)
def test_parse_hhmm(text, allow_24, expected):
    assert parse_hhmm(text, allow_24=allow_24) == expected


def test_day_plan_merges_and_lets_holidays_win():
    assert day_plan(BANDS, 0, holiday=False) == (
        (0, 480, "offpeak"),
        (480, 1200, "peak"),
        (1200, 1440, "offpeak"),
    )
    assert day_plan(BANDS, 3, holiday=True) == (
        (0, 480, "offpeak"),
        (480, 720, "peak"),
        (720, 840, "holiday-lunch"),
        (840, 1200, "peak"),
        (1200, 1440, "offpeak"),
    )
    assert day_plan(BANDS[:1], 5, holiday=False) == ((0, 1440, None),)


def test_first_week_gap():
    assert first_week_gap(BANDS) is None
    assert first_week_gap(BANDS[:1]) == "mon 00:00-08:00"
    assert first_week_gap([BANDS[0], BANDS[1]]) == "sat 00:00-24:00"
    assert first_week_gap([]) == "mon 00:00-24:00"


def utc(*args) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo("UTC")).timestamp())


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        # 2025-03-10 is a Monday (UTC catalog)
        (1741593599, ("offpeak", utc(2025, 3, 10), 1741593600)),  # 07:59:59
        (1741593600, ("peak", 1741593600, utc(2025, 3, 10, 20))),  # exactly 08:00: the new band
        (utc(2025, 3, 10, 23, 59, 59), ("offpeak", utc(2025, 3, 10, 20), utc(2025, 3, 11))),
        (utc(2025, 3, 8, 12), ("weekend", utc(2025, 3, 8), utc(2025, 3, 9))),  # Saturday
        # Christmas (Thursday): lunch is the holiday band, the morning stays peak
        (
            utc(2025, 12, 25, 12, 30),
            ("holiday-lunch", utc(2025, 12, 25, 12), utc(2025, 12, 25, 14)),
        ),
        (utc(2025, 12, 25, 9), ("peak", utc(2025, 12, 25, 8), utc(2025, 12, 25, 12))),
        (utc(2025, 12, 26, 12, 30), ("peak", utc(2025, 12, 26, 8), utc(2025, 12, 26, 20))),
    ],
)
def test_segments_in_utc(timestamp, expected):
    clock = BandClock(BANDS, [XMAS], "UTC")
    assert clock.segment(timestamp) == expected


def test_time_zone_decides_the_day():
    # 2025-03-07 23:30 UTC is a Friday in UTC and Saturday 00:30 in Berlin (CET, +1)
    ts = 1741390200
    assert BandClock(BANDS, [], "UTC").band_at(ts) == "offpeak"
    berlin = BandClock(BANDS, [], "Europe/Berlin")
    assert berlin.segment(ts) == ("weekend", 1741388400, 1741388400 + 86400)
    assert berlin.band_at(1741388399) == "offpeak"  # Friday 23:59:59 CET


def test_holidays_are_local_dates():
    # 2025-12-24 23:30 UTC is already Christmas Day 00:30 in Berlin
    holiday_only = (TimeBand("xmas", (BandWindow(frozenset({"holiday"}), 0, 1440),)),)
    ts = utc(2025, 12, 24, 23, 30)
    assert BandClock(holiday_only, [XMAS], "Europe/Berlin").band_at(ts) == "xmas"
    assert BandClock(holiday_only, [XMAS], "UTC").band_at(ts) is None


def test_uncovered_time_has_no_band():
    clock = BandClock(BANDS[:1], [], "UTC")
    assert clock.segment(utc(2025, 3, 10, 7)) == (None, utc(2025, 3, 10), utc(2025, 3, 10, 8))


def _reference_band(bands, holidays, tz, ts):
    """Brute force: local time, then the windows one by one (holiday ones first)."""
    local = datetime.fromtimestamp(ts, ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    days = (["holiday"] if local.date() in holidays else []) + [DAYS[local.weekday()]]
    for day in days:
        for band in bands:
            for w in band.windows:
                if day in w.days and w.start <= minute < w.end:
                    return band.id
    return None


DST_BANDS = (
    TimeBand("a", (BandWindow(frozenset(DAYS), 0, 150),)),  # 00:00-02:30
    TimeBand("b", (BandWindow(frozenset(DAYS), 150, 180),)),  # 02:30-03:00
    TimeBand("c", (BandWindow(frozenset(DAYS), 180, 1440),)),
)


@pytest.mark.parametrize(
    ("start", "tz"),
    [
        (utc(2025, 3, 29, 22), "Europe/Berlin"),  # spring forward: 02:00-03:00 never happens
        (utc(2025, 10, 25, 22), "Europe/Berlin"),  # fall back: 02:00-03:00 happens twice
        (utc(2025, 4, 5, 13), "Australia/Lord_Howe"),  # a 30-minute DST change
    ],
)
def test_segments_are_exact_across_dst(start, tz):
    clock = BandClock(DST_BANDS, [], tz)
    for ts in range(start, start + 8 * 3600, 97):
        band, seg_start, seg_end = clock.segment(ts)
        assert seg_start <= ts < seg_end
        assert band == _reference_band(DST_BANDS, (), tz, ts), ts
        for probe in (seg_start, (seg_start + seg_end) // 2, seg_end - 1):
            assert _reference_band(DST_BANDS, (), tz, probe) == band, (ts, probe)


def test_fall_back_segments_do_not_span_the_repeated_hour():
    clock = BandClock(DST_BANDS, [], "Europe/Berlin")
    # 2025-10-26 00:40 UTC = 02:40 CEST (b); 01:10 UTC = 02:10 CET (a again)
    assert clock.segment(utc(2025, 10, 26, 0, 40)) == (
        "b",
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 1),
    )
    assert clock.segment(utc(2025, 10, 26, 1, 10)) == (
        "a",
        utc(2025, 10, 26, 1),
        utc(2025, 10, 26, 1, 30),
    )
