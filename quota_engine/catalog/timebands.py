"""Time bands: which named band a Unix timestamp falls in, in the catalog's time zone.

A band is a set of windows; a window is a set of days (``mon``..``sun`` and/or
``holiday``) and a local time range ``[start, end)`` in minutes of the day (end may be
1440, i.e. "24:00"). Lookup for a timestamp: convert to local time in the catalog's
zone; on a holiday date a window with ``holiday`` in its days wins where it covers the
time, elsewhere (and on other dates) the window for the weekday applies. Windows never
overlap (the catalog refuses overlaps), so the answer is unique; a time no window covers
has no band (``None``).

:class:`BandClock` answers with a *segment*: the band plus the largest interval of Unix
time around the timestamp, within that local day, in which the band cannot change. The
rater caches the last two segments, so consecutive requests near "now" skip the time-zone
arithmetic, and ``split_by_band`` walks a session segment by segment.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY = "holiday"
DAY_NAMES = (*DAYS, HOLIDAY)
MINUTES_PER_DAY = 1440


@dataclass(frozen=True, slots=True)
class BandWindow:
    """Days (``mon``..``sun``, ``holiday``) and local minutes ``[start, end)``."""

    days: frozenset[str]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TimeBand:
    id: str
    windows: tuple[BandWindow, ...]


def parse_hhmm(text: object, *, allow_24: bool) -> int | None:
    """``"HH:MM"`` -> minutes of the day; ``None`` when malformed or out of range.

    ``"24:00"`` (1440) only with ``allow_24`` (a window's end).
    """
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        return None
    hh, mm = text[:2], text[3:]
    if not (hh.isdigit() and mm.isdigit() and hh.isascii() and mm.isascii()):
        return None
    minutes = int(hh) * 60 + int(mm)
    if int(mm) > 59:
        return None
    if minutes < MINUTES_PER_DAY or (allow_24 and minutes == MINUTES_PER_DAY):
        return minutes
    return None


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def uncovered(windows: Iterable[BandWindow], day: str) -> list[tuple[int, int]]:
    """Local minute ranges of ``day`` that no window listing ``day`` covers."""
    covered = sorted((w.start, w.end) for w in windows if day in w.days)
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for start, end in covered:
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < MINUTES_PER_DAY:
        gaps.append((cursor, MINUTES_PER_DAY))
    return gaps


def first_week_gap(bands: Iterable[TimeBand]) -> str | None:
    """The first weekday time no band covers, as ``"mon 00:00-08:00"``; ``None`` if covered."""
    windows = [w for band in bands for w in band.windows]
    for day in DAYS:
        gaps = uncovered(windows, day)
        if gaps:
            start, end = gaps[0]
            return f"{day} {format_minutes(start)}-{format_minutes(end)}"
    return None


Interval = tuple[int, int, "str | None"]


def day_plan(bands: Sequence[TimeBand], weekday: int, holiday: bool) -> tuple[Interval, ...]:
    """Contiguous ``(start, end, band_id or None)`` intervals covering a whole local day.

    On a holiday, holiday windows win; weekday windows fill what they leave. Adjacent
    intervals of the same band are merged so a segment is as long as possible.
    """
    by_minute: list[str | None] = [None] * MINUTES_PER_DAY
    layers = [DAYS[weekday]] + ([HOLIDAY] if holiday else [])
    for day in layers:  # later layers overwrite: holiday wins
        for band in bands:
            for w in band.windows:
                if day in w.days:
                    by_minute[w.start : w.end] = [band.id] * (w.end - w.start)
    intervals: list[Interval] = []
    start = 0
    for minute in range(1, MINUTES_PER_DAY + 1):
        if minute == MINUTES_PER_DAY or by_minute[minute] != by_minute[start]:
            intervals.append((start, minute, by_minute[start]))
            start = minute
    return tuple(intervals)


class BandClock:
    """Band lookup for Unix timestamps, in a time zone, with holiday dates."""

    __slots__ = ("_holidays", "_plans", "_starts", "_tz", "has_bands")

    def __init__(self, bands: Sequence[TimeBand], holidays: Iterable[date], timezone: str):
        self._tz = ZoneInfo(timezone)
        self._holidays = frozenset(holidays)
        self.has_bands = bool(bands)
        self._plans: dict[tuple[int, bool], tuple[Interval, ...]] = {}
        self._starts: dict[tuple[int, bool], list[int]] = {}
        for weekday in range(7):
            for holiday in (False, True):
                plan = day_plan(bands, weekday, holiday)
                self._plans[weekday, holiday] = plan
                self._starts[weekday, holiday] = [start for start, _, _ in plan]

    def band_at(self, timestamp: int) -> str | None:
        return self.segment(timestamp)[0]

    def segment(self, timestamp: int) -> tuple[str | None, int, int]:
        """``(band_id or None, seg_start, seg_end)`` with ``seg_start <= timestamp < seg_end``.

        The band is the same for every second of ``[seg_start, seg_end)``. The segment
        never extends past the local day, so it may be shorter than the band's run.
        """
        tz = self._tz
        local = datetime.fromtimestamp(timestamp, tz)
        day = local.date()
        key = (local.weekday(), day in self._holidays)
        plan = self._plans[key]
        minute = local.hour * 60 + local.minute
        start, end, band = plan[bisect.bisect_right(self._starts[key], minute) - 1]
        seg_start = _local_to_unix(day, start, tz, local.fold)
        seg_end = _local_to_unix(day, end, tz, local.fold)
        # Around a change of UTC offset (DST) a local boundary may not exist (spring) or
        # exist twice (autumn), and local time jumps. Keep the segment inside the
        # timestamp's own offset, where local time runs evenly and the band is certain.
        offset = local.utcoffset()
        if seg_start > timestamp:
            seg_start = timestamp
        elif _offset(seg_start, tz) != offset:
            seg_start = _first_where(seg_start, timestamp, lambda t: _offset(t, tz) == offset)
        if seg_end <= timestamp:
            seg_end = timestamp + 1
        elif _offset(seg_end - 1, tz) != offset:
            seg_end = _first_where(timestamp, seg_end - 1, lambda t: _offset(t, tz) != offset)
        return band, seg_start, seg_end


def _offset(timestamp: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, tz).utcoffset()


def _first_where(lo: int, hi: int, holds: Callable[[int], bool]) -> int:
    """First second in ``(lo, hi]`` for which ``holds`` (false at lo, true at hi, changing
    once in between), by bisection."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _local_to_unix(day: date, minutes: int, tz: ZoneInfo, fold: int) -> int:
    if minutes == MINUTES_PER_DAY:
        day, minutes, fold = day + timedelta(days=1), 0, 0
    local = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=tz)
    return int(local.replace(fold=fold).timestamp())
