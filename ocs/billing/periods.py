"""Bill periods: ``[cycle day, next cycle day)`` in the catalog's time zone.

An account's period starts at local midnight of its ``bill_cycle_day`` (in a month
shorter than the day, the month's last day) and ends where the next one starts. A run
names periods by the month they start in (``--period 2026-11``: for cycle day 15,
2026-11-15 to 2026-12-15) or by the day they end (``--date 2026-12-15``: the periods
of the accounts whose cycle day falls on that date, which end there). The same rule
as the charging side's :func:`quota_engine.charging.periods.bill_period`, which names
the period a timestamp falls in (a test checks that both agree).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "BillPeriod",
    "PeriodError",
    "local_day",
    "parse_month",
    "period_ending",
    "period_holding",
    "period_of",
]

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class PeriodError(ValueError):
    """A period or date that cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class BillPeriod:
    """``[start, end)`` in Unix seconds, and the local days: ``first_day`` is its first,
    ``end_day`` the first day after it. ``timezone`` is the one it was computed in."""

    start: int
    end: int
    first_day: date
    end_day: date
    timezone: str

    @property
    def days(self) -> int:
        """Local days in the period (28 to 31)."""
        return (self.end_day - self.first_day).days

    @property
    def last_day(self) -> date:
        return self.end_day - timedelta(days=1)

    @property
    def name(self) -> str:
        """``2026-11-15``: its first day."""
        return self.first_day.isoformat()

    def day_index(self, at: int) -> int:
        """The local day of ``at`` counted from the period's first (0), clamped to
        ``0..days``: a change at any time of a day takes effect for the whole day."""
        day = local_day(at, self.timezone)
        return min(max((day - self.first_day).days, 0), self.days)

    def midnight(self, day: date) -> int:
        """Unix seconds of local midnight starting ``day``."""
        return _midnight(day, self.timezone)


def _cycle_start(year: int, month: int, cycle_day: int) -> date:
    return date(year, month, min(cycle_day, calendar.monthrange(year, month)[1]))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _midnight(day: date, timezone: str) -> int:
    return int(datetime.combine(day, time(0), ZoneInfo(timezone)).timestamp())


def local_day(at: int, timezone: str) -> date:
    """The local date of Unix second ``at`` in ``timezone``."""
    return datetime.fromtimestamp(at, ZoneInfo(timezone)).date()


def _period(year: int, month: int, cycle_day: int, timezone: str) -> BillPeriod:
    if not 1 <= cycle_day <= 31:
        raise PeriodError(f"bill cycle day must be 1 to 31, got {cycle_day}")
    first = _cycle_start(year, month, cycle_day)
    after = _cycle_start(*_next_month(year, month), cycle_day)
    return BillPeriod(
        start=_midnight(first, timezone),
        end=_midnight(after, timezone),
        first_day=first,
        end_day=after,
        timezone=timezone,
    )


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-11"`` as ``(2026, 11)``; :class:`PeriodError` otherwise."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise PeriodError(f"period must be a month YYYY-MM such as 2026-11, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def period_of(month: str, cycle_day: int, timezone: str) -> BillPeriod:
    """The period of an account with ``cycle_day`` that starts in ``month`` (YYYY-MM)."""
    year, number = parse_month(month)
    return _period(year, number, cycle_day, timezone)


def period_ending(day: date, cycle_day: int, timezone: str) -> BillPeriod | None:
    """The period of an account with ``cycle_day`` that ends at the start of ``day``;
    None when no period of that cycle day ends then (its cycle day is another)."""
    year, month = (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)
    period = _period(year, month, cycle_day, timezone)
    return period if period.end_day == day else None


def period_holding(at: int, cycle_day: int, timezone: str) -> BillPeriod:
    """The period of an account with ``cycle_day`` that holds Unix second ``at``."""
    day = local_day(at, timezone)
    period = _period(day.year, day.month, cycle_day, timezone)
    if at < period.start:
        year, month = (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)
        period = _period(year, month, cycle_day, timezone)
    return period
