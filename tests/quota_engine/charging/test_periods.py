"""quota_engine.charging.periods: an account's bill period from its known cycle day."""

from __future__ import annotations

from quota_engine.charging.periods import BillPeriods, bill_period, cycle_day
from tests.quota_engine.conftest import NOW


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
