"""Properties of Price arithmetic, checked against a plain-Python model of the formula."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from quota_engine.charging.rating import MAX_UNITS, Price
from quota_engine.money import round_up

# Costs stay below 2**63: units * rate <= 10**12 * 10**6 (see the overflow test for beyond).
rates = st.integers(0, 10**6)
rate_pers = st.integers(1, 10**7)
increments = st.integers(1, 10**7)
units = st.integers(0, 10**12)
budgets = st.integers(0, 10**15)


@st.composite
def prices(draw) -> Price:
    return Price(draw(rates), draw(rate_pers), draw(increments), draw(increments))


def model(price: Price, used: int) -> tuple[int, int]:
    """The documented formula, in Python ints."""
    if used == 0:
        return 0, 0
    first, nxt = price.first_increment, price.next_increment
    if used <= first:
        return first, price.first_cost
    n = round_up(used - first, nxt)
    return first + n * nxt, price.first_cost + n * price.next_cost


@given(prices(), units)
def test_charge_matches_the_documented_formula(price, used):
    assert price.first_cost == round_up(price.first_increment * price.rate, price.rate_per)
    assert price.next_cost == round_up(price.next_increment * price.rate, price.rate_per)
    assert price.charge(used) == model(price, used)


@given(prices(), units)
def test_billed_covers_usage_by_less_than_one_increment(price, used):
    billed, _ = price.charge(used)
    assert billed >= used
    if used > price.first_increment:
        assert billed - used < price.next_increment
    elif used:
        assert billed == price.first_increment


@given(prices(), units, units)
def test_cost_is_monotone_in_units(price, a, b):
    low, high = sorted((a, b))
    assert price.charge(low)[1] <= price.charge(high)[1]
    assert price.charge(low)[0] <= price.charge(high)[0]


@given(prices(), units)
def test_units_for_the_cost_of_usage_cover_the_billed_units(price, used):
    billed, cost = price.charge(used)
    assert price.units_for_money(cost) >= billed


@given(prices(), budgets)
def test_units_for_money_never_overspend(price, budget):
    granted = price.units_for_money(budget)
    assert price.charge(granted)[1] <= budget or granted == 0


@given(prices(), budgets)
def test_units_for_money_is_the_largest_affordable_amount(price, budget):
    granted = price.units_for_money(budget)
    assume(price.next_cost > 0)
    assert granted == 0 or price.round_grant(granted) == granted  # whole increments
    one_more = granted + price.next_increment if granted else price.first_increment
    if one_more <= MAX_UNITS:  # else granted is already the largest int64 amount
        assert price.charge(one_more)[1] > budget


@given(prices(), st.integers(-10, 10**12), st.booleans())
def test_round_grant_is_idempotent_and_whole_increments(price, grant, continuation):
    rounded = price.round_grant(grant, continuation)
    assert price.round_grant(rounded, continuation) == rounded
    assert rounded >= max(grant, 0)
    assert rounded == (price.charge(grant, continuation)[0] if grant > 0 else 0)


@given(prices(), units)
def test_continuation_is_the_tail_of_a_charge(price, used):
    # charging first_increment, then the rest as a continuation, costs the same as one charge
    assume(used > price.first_increment)
    head = price.charge(price.first_increment)
    tail = price.charge(used - price.first_increment, continuation=True)
    assert (head[0] + tail[0], head[1] + tail[1]) == price.charge(used)


@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_free_increments_are_unlimited_within_int64(first, nxt):
    price = Price(0, 1, first, nxt)
    granted = price.units_for_money(0)
    assert granted <= MAX_UNITS < granted + nxt
    assert (granted - first) % nxt == 0


@given(
    st.integers(0, 10**12),
    st.integers(1, 10**12),
    st.integers(1, 2**62),
    st.integers(1, 2**62),
    st.integers(0, 2**63 - 1),
)
def test_charge_is_exact_or_refuses_to_overflow(rate, rate_per, first, nxt, used):
    try:
        price = Price(rate, rate_per, first, nxt)
    except OverflowError:  # the cost of one increment does not fit in int64
        assert round_up(max(first, nxt) * rate, rate_per) > MAX_UNITS
        return
    billed, cost = model(price, used)
    if billed > MAX_UNITS or cost > MAX_UNITS:
        with pytest.raises(OverflowError):
            price.charge(used)
    else:
        assert price.charge(used) == (billed, cost)
