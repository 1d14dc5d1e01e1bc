"""Cumulative rating (docs/catalog.md, "Cumulative rating"): Price.charge_after,
round_grant_after and units_for_money_after. However a usage is split into reports,
the reports cost exactly what the whole costs at once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quota_engine.charging.rating import Price

MIB = 1_048_576

rates = st.integers(0, 10**6)
rate_pers = st.integers(1, 10**7)
increments = st.one_of(st.integers(1, 100), st.integers(1, 10**7))


@st.composite
def prices(draw: st.DrawFn) -> Price:
    return Price(draw(rates), draw(rate_pers), draw(increments), draw(increments))


# a usage as its reports: up to 40 reports of up to 10**9 units (0 included)
splits = st.lists(st.one_of(st.integers(0, 100), st.integers(0, 10**9)), min_size=1, max_size=40)


def charge_reports(price: Price, reports: list[int], continuation: bool) -> tuple[int, int]:
    """(billed, cost) of the reports charged one after the other, cumulatively."""
    counted = billed = cost = 0
    for units in reports:
        more_billed, more_cost = price.charge_after(counted, units, continuation)
        assert more_billed >= 0 and more_cost >= 0
        billed, cost, counted = billed + more_billed, cost + more_cost, counted + units
    return billed, cost


@given(prices(), splits, st.booleans())
def test_any_split_costs_exactly_the_whole(price, reports, continuation):
    whole = price.charge(sum(reports), continuation)
    assert charge_reports(price, reports, continuation) == whole


@given(prices(), splits, st.booleans())
def test_never_more_than_rounding_each_report_on_its_own(price, reports, continuation):
    # the old rule: every report rounded up on its own, the first one that costs
    # anything with the first increment, the later ones as continuations
    alone, cont = 0, continuation
    for units in reports:
        alone += price.charge(units, cont)[1]
        cont = cont or units > 0
    cumulative = charge_reports(price, reports, continuation)[1]
    assert cumulative <= alone
    assert cumulative <= price.charge(sum(reports), continuation)[1]  # never more than the whole


@given(prices(), st.integers(0, 10**9), st.booleans())
def test_nothing_counted_is_the_plain_formula(price, units, continuation):
    assert price.charge_after(0, units, continuation) == price.charge(units, continuation)
    assert price.round_grant_after(0, units, continuation) == price.round_grant(units, continuation)


@given(prices(), st.integers(0, 10**9), st.integers(1, 10**9), st.booleans())
def test_a_grant_ends_the_count_on_an_increment_and_costs_what_was_wanted(
    price, counted, want, continuation
):
    grant = price.round_grant_after(counted, want, continuation)
    assert grant >= want
    total = counted + grant
    assert price.round_grant(total, continuation) == total  # on an increment boundary
    assert total == price.round_grant(counted + want, continuation)  # the smallest such
    # rounding up to the boundary costs nothing more than the units wanted
    assert (
        price.charge_after(counted, grant, continuation)[1]
        == price.charge_after(counted, want, continuation)[1]
    )


@given(prices(), st.integers(0, 10**9), st.integers(0, 10**12), st.booleans())
def test_units_for_money_after_is_the_largest_affordable_grant(
    price, counted, budget, continuation
):
    grant = price.units_for_money_after(counted, budget, continuation)
    assert price.charge_after(counted, grant, continuation)[1] <= budget
    if grant:
        total = counted + grant
        assert price.round_grant(total, continuation) == total  # ends on a boundary
    # the rest of the increment the count is in is always there: already paid
    already = price.round_grant(counted, continuation) - counted if counted else 0
    assert grant >= already
    if price.next_cost:
        step = price.next_increment
        if counted + grant == 0 and not continuation:
            step = price.first_increment
        assert price.charge_after(counted, grant + step, continuation)[1] > budget


def test_worked_examples():
    # docs/catalog.md: a 50 s call at 60/60 (0.10 EUR/min) reported 30 s + 20 s
    minute = Price(100_000, 60, 60, 60)
    assert minute.charge_after(0, 30) == (60, 100_000)
    assert minute.charge_after(30, 20) == (0, 0)  # inside the first minute, paid
    assert minute.round_grant_after(30, 60) == 90  # to the end of minute 2
    assert minute.charge_after(30, 90) == (60, 100_000)
    assert minute.units_for_money_after(30, 0) == 30  # the rest of the paid minute
    # data at 1 EUR per whole MiB reported as 500,000 + 300,000 octets: 1.00 EUR
    data = Price(1_000_000, MIB, MIB, MIB)
    assert data.charge_after(0, 500_000)[1] + data.charge_after(500_000, 300_000)[1] == 1_000_000
    # international 0.50 EUR/min, 30 s then 6 s: 95 s = 96 s billed, 0.80 EUR; one more
    # second is inside the 96th, then 7 s more open two 6 s steps
    intl = Price(500_000, 60, 30, 6)
    assert intl.charge_after(0, 95) == (96, 800_000)
    assert intl.charge_after(95, 1) == (0, 0)
    assert intl.charge_after(96, 7) == (12, 100_000)
    assert intl.units_for_money_after(95, 2_200_000) == 265  # total 360 s = 3.00 EUR


def test_bad_arguments():
    price = Price(1, 1, 1, 1)
    with pytest.raises(ValueError):
        price.charge_after(-1, 1)
    with pytest.raises(ValueError):
        price.charge_after(1, -1)
    with pytest.raises(OverflowError):
        price.charge_after(2**62, 2**62)
    with pytest.raises(ValueError):
        price.units_for_money_after(-1, 0)
