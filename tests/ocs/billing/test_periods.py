"""Bill periods of the bill run agree with the charging side's, at every boundary."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from ocs.billing.periods import period_ending, period_holding, period_of
from quota_engine.charging.periods import bill_period

ZONES = st.sampled_from(["Europe/Berlin", "UTC", "America/New_York", "Asia/Kolkata"])


@given(st.integers(1_600_000_000, 1_900_000_000), st.integers(1, 31), ZONES)
def test_the_period_holding_an_instant_is_the_charging_sides(at, cycle_day, zone):
    period = period_holding(at, cycle_day, zone)
    assert period.start <= at < period.end
    assert period.name == bill_period(at, cycle_day, zone)
    assert bill_period(period.start, cycle_day, zone) == period.name
    assert bill_period(period.end, cycle_day, zone) != period.name


def test_short_months_and_the_day_they_end():
    feb = period_of("2026-02", 31, "Europe/Berlin")
    assert (feb.first_day, feb.end_day, feb.days) == (date(2026, 2, 28), date(2026, 3, 31), 31)
    assert period_ending(date(2026, 3, 31), 31, "Europe/Berlin") == feb
    assert period_ending(date(2026, 3, 30), 31, "Europe/Berlin") is None
