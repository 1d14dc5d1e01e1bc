"""money.py: the one rounding function, minor-unit rounding for invoices, display."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quota_engine.money import (
    format_money,
    round_ratio_to_minor_unit,
    round_to_minor_unit,
    round_up,
)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (0, 1, 0),
        (0, 7, 0),
        (1, 1, 1),
        (6, 3, 2),
        (7, 3, 3),
        (59, 60, 1),
        (60, 60, 1),
        (61, 60, 2),
        # one second of 1 EUR/min: 1_000_000 / 60 = 16666.67 -> 16667
        (1_000_000, 60, 16_667),
        # one KiB of 1 EUR/MiB: 1024 * 1_000_000 / 1_048_576 = 976.5625 -> 977
        (1024 * 1_000_000, 1_048_576, 977),
        # far beyond 2**63: exact, no float
        (10**30 + 1, 10**12, 10**18 + 1),
    ],
)
def test_round_up_examples(numerator, denominator, expected):
    assert round_up(numerator, denominator) == expected


@pytest.mark.parametrize(("numerator", "denominator"), [(1, 0), (1, -1), (-1, 3)])
def test_round_up_rejects_bad_operands(numerator, denominator):
    with pytest.raises(ValueError):
        round_up(numerator, denominator)


@pytest.mark.parametrize(("numerator", "denominator"), [(1.0, 3), (3, 2.0), (True, 1), ("3", 1)])
def test_round_up_rejects_non_ints(numerator, denominator):
    with pytest.raises(TypeError):
        round_up(numerator, denominator)


@given(st.integers(0, 2**80), st.integers(1, 2**70))
def test_round_up_is_the_smallest_sufficient_multiple(numerator, denominator):
    q = round_up(numerator, denominator)
    assert q * denominator >= numerator
    assert (q - 1) * denominator < numerator or q == 0


@pytest.mark.parametrize(
    ("micro", "digits", "expected"),
    [
        (0, 2, 0),
        (1_234_999, 2, 1_230_000),
        (1_235_000, 2, 1_240_000),  # exactly half: up
        (1_234_999, 3, 1_235_000),
        (4_999, 2, 0),
        (5_000, 2, 10_000),
        (-1_235_000, 2, -1_240_000),  # half away from zero
        (-1_234_999, 2, -1_230_000),
        (-4_999, 2, 0),
        (1_499_999, 0, 1_000_000),  # JPY-like: whole units
        (1_500_000, 0, 2_000_000),
        (1_234_567, 6, 1_234_567),  # micro precision: unchanged
        (1_234_565, 5, 1_234_570),
    ],
)
def test_round_to_minor_unit_examples(micro, digits, expected):
    assert round_to_minor_unit(micro, digits) == expected


@given(st.integers(-(2**70), 2**70), st.integers(0, 6))
def test_round_to_minor_unit_is_nearest_half_away_from_zero(micro, digits):
    step = 10 ** (6 - digits)
    rounded = round_to_minor_unit(micro, digits)
    assert rounded % step == 0
    assert 2 * abs(rounded - micro) <= step
    if 2 * abs(rounded - micro) == step:  # a tie goes away from zero
        assert abs(rounded) > abs(micro)
    assert round_to_minor_unit(-micro, digits) == -rounded


@given(st.integers(-(2**70), 2**70), st.integers(1, 10**6), st.integers(0, 6))
def test_round_ratio_is_the_exact_ratio_rounded_once(numerator, denominator, digits):
    """Against Fraction: the nearest minor unit to numerator/denominator, ties away from
    zero (never rounded to a micro-unit first)."""
    step = 10 ** (6 - digits)
    exact = Fraction(numerator, denominator)
    rounded = round_ratio_to_minor_unit(numerator, denominator, digits)
    assert rounded % step == 0
    assert 2 * abs(rounded - exact) <= step
    if 2 * abs(rounded - exact) == step:
        assert abs(rounded) > abs(exact)
    assert round_ratio_to_minor_unit(-numerator, denominator, digits) == -rounded


def test_round_ratio_differs_from_rounding_twice():
    # 0.0049999.. EUR: a micro-unit first (round_up) would give 0.005000 -> 0.01
    assert round_ratio_to_minor_unit(4_999_999, 1000, 2) == 0
    assert round_to_minor_unit(round_up(4_999_999, 1000), 2) == 10_000


@pytest.mark.parametrize("denominator", [0, -3])
def test_round_ratio_rejects_a_bad_denominator(denominator):
    with pytest.raises(ValueError, match="denominator"):
        round_ratio_to_minor_unit(1, denominator, 2)


@pytest.mark.parametrize("digits", [-1, 7])
def test_round_to_minor_unit_rejects_bad_digits(digits):
    with pytest.raises(ValueError):
        round_to_minor_unit(1, digits)


@pytest.mark.parametrize(
    ("micro", "currency", "digits", "expected"),
    [
        (1_500_000, "EUR", 2, "1.50 EUR"),
        (0, "EUR", 2, "0.00 EUR"),
        (1_234_567, "EUR", 2, "1.234567 EUR"),
        (1_230_000, "EUR", 2, "1.23 EUR"),
        (1_230_000, "EUR", 3, "1.230 EUR"),
        (-5, "EUR", 2, "-0.000005 EUR"),
        (20_000_000, "JPY", 0, "20 JPY"),
        (20_500_000, "JPY", 0, "20.5 JPY"),
        (123_456_789_012_345_678_901, "EUR", 2, "123456789012345.678901 EUR"),
    ],
)
def test_format_money(micro, currency, digits, expected):
    assert format_money(micro, currency, digits) == expected


def test_format_money_default_is_two_minor_digits_and_refuses_floats():
    assert format_money(90_000, "EUR") == "0.09 EUR"
    with pytest.raises(TypeError):
        format_money(1.5, "EUR")
