"""Bill periods: which period a timestamp falls in, and each account's period now.

The period usage that tiered prices depend on is kept per bill period
(``ocs:acct:{P}:A:usage:<period>``), so the engine needs an account's period for every
request. :class:`BillPeriods` keeps each account's bill cycle day as last read from
Redis (1 until then; a wrong guess costs one more read, see the engine) and computes
:func:`bill_period` once per second per cycle day and timezone (the second is the
request's rating time, :mod:`quota_engine.charging.rating_clock`).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

__all__ = ["BillPeriods", "bill_period", "cycle_day"]

_MEMO_SIZE = 4096
"""Bill periods :class:`BillPeriods` keeps computed (second, cycle day, time zone)."""


def bill_period(timestamp: int, bill_cycle_day: int, timezone: str = "UTC") -> str:
    """The bill period holding ``timestamp``, named by its first local day
    (``"2025-03-15"``). A period starts on ``bill_cycle_day`` (1..31; in shorter months
    the month's last day) at local midnight in ``timezone``."""
    day = min(max(int(bill_cycle_day), 1), 31)
    local = datetime.fromtimestamp(timestamp, ZoneInfo(timezone)).date()
    year, month = local.year, local.month
    start = date(year, month, min(day, calendar.monthrange(year, month)[1]))
    if local < start:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        start = date(year, month, min(day, calendar.monthrange(year, month)[1]))
    return start.isoformat()


def cycle_day(value: str | None) -> int:
    """An account's ``bill_cycle_day`` field as a day 1..31 (1 when missing or not a number)."""
    try:
        day = int(value or 1)
    except ValueError:
        return 1
    return min(max(day, 1), 31)


class BillPeriods:
    """Each account's bill period at a given second.

    ``size`` bounds the cycle days kept (like the engine's caches); when full they are
    all dropped: a forgotten day only means the next read of that account guesses the
    period from day 1 and may read its usage twice.
    """

    __slots__ = ("_memo", "cycle_days", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        self.size = size
        self.cycle_days: dict[str, int] = {}
        self._memo: dict[tuple[int, int, str], str] = {}

    def of(self, account: str, timezone: str, at: int) -> str:
        """``account``'s bill period at ``at`` (from its last known cycle day).

        The requests of one batch are rated at their own times (Event-Timestamps a few
        seconds apart), so the periods are kept per second, cycle day and time zone;
        the memo is emptied when it holds :data:`_MEMO_SIZE` of them."""
        key = (at, self.cycle_days.get(account, 1), timezone)
        memo = self._memo
        period = memo.get(key)
        if period is None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            period = memo[key] = bill_period(at, key[1], timezone)
        return period

    def known_day(self, account: str) -> int:
        """The cycle day :meth:`of` uses for ``account``."""
        return self.cycle_days.get(account, 1)

    def make_room(self, count: int) -> None:
        """Before learning up to ``count`` cycle days: stay within ``size``."""
        if len(self.cycle_days) + count > self.size:
            self.cycle_days.clear()

    def learn(self, account: str, day: int) -> None:
        """``account``'s cycle day as just read from Redis."""
        self.cycle_days[account] = day
