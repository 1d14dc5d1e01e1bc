"""quota_engine.charging.periods: an account's bill period from its known cycle day."""

from __future__ import annotations

from quota_engine.charging.periods import BillPeriods, bill_period, cycle_day
from tests.quota_engine.conftest import NOW


def test_bill_period():
    assert bill_period(NOW, 1, "Europe/Berlin") == "2025-03-01"
    assert bill_period(NOW, 7, "Europe/Berlin") == "2025-03-07"
    assert bill_period(NOW, 8, "Europe/Berlin") == "2025-02-08"
    assert bill_period(NOW, 31, "Europe/Berlin") == "2025-02-28"  # short month
    # 2025-03-01 00:30 Berlin is still 2025-02-28 in UTC
    assert bill_period(1740785400, 1, "Europe/Berlin") == "2025-03-01"
    assert bill_period(1740785400, 1, "UTC") == "2025-02-01"
    assert bill_period(1735693200, 15, "UTC") == "2024-12-15"  # 2025-01-01: year before


def test_cycle_day_reads_the_account_field():
    assert [cycle_day(v) for v in ("15", None, "", "x", "0", "40")] == [15, 1, 1, 1, 1, 31]


def test_an_account_is_on_day_1_until_its_cycle_day_is_learnt():
    periods = BillPeriods(size=10)
    assert periods.of("A1", "Europe/Berlin", NOW) == bill_period(NOW, 1, "Europe/Berlin")
    periods.learn("A1", 8)
    assert periods.known_day("A1") == 8
    assert periods.of("A1", "Europe/Berlin", NOW) == "2025-02-08"
    assert periods.of("A1", "Europe/Berlin", NOW + 86400) == "2025-03-08"  # the next second's


def test_the_cycle_days_kept_are_bounded():
    periods = BillPeriods(size=3)
    for n in range(10):
        periods.make_room(1)
        periods.learn(f"A{n}", 5)
        assert len(periods.cycle_days) <= 3


def test_the_periods_of_several_seconds_are_kept_side_by_side():
    """The requests of one batch are rated at their own seconds: alternating between
    two sides of a period start gives each its own period, every time."""
    periods = BillPeriods(size=10)
    december = 1764547200  # 2025-12-01 00:00 UTC
    for _ in range(3):
        assert periods.of("A1", "UTC", december - 1) == "2025-11-01"
        assert periods.of("A1", "UTC", december) == "2025-12-01"


def test_the_memo_of_periods_is_bounded():
    periods = BillPeriods(size=10)
    for second in range(NOW, NOW + 10_000):
        assert periods.of("A1", "Europe/Berlin", second) == "2025-03-01"
    assert len(periods._memo) <= 4096
