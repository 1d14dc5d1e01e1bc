"""Money: integer micro-units (1e-6 of the currency) and the one rounding function.

Every amount in rating, balances, records and invoices is an ``int`` number of
micro-units. No floats. :func:`round_up` is THE rounding function: grant sizing,
debits, rated records and invoices all round with it (directly, or through
:func:`round_to_minor_unit`, which is built on it), so that an amount computed in one
place is the amount computed in every other place.
"""

from __future__ import annotations

MICRO_DIGITS = 6
"""Micro-units per currency unit is ``10 ** MICRO_DIGITS``."""

MICRO = 10**MICRO_DIGITS


def _check_int(name: str, value: object) -> int:
    # bool is an int subclass; a True price is a bug, not 1 micro-unit.
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def round_up(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` in exact integer arithmetic.

    Both arguments are ints; ``numerator >= 0`` and ``denominator > 0``, else
    ``ValueError`` (``TypeError`` for a non-int, floats included).

    >>> round_up(7, 2), round_up(6, 2), round_up(0, 5)
    (4, 3, 0)
    """
    _check_int("numerator", numerator)
    _check_int("denominator", denominator)
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    if numerator < 0:
        raise ValueError(f"numerator must not be negative, got {numerator}")
    return -(-numerator // denominator)


def _minor_step(minor_digits: int) -> int:
    _check_int("minor_digits", minor_digits)
    if not 0 <= minor_digits <= MICRO_DIGITS:
        raise ValueError(f"minor_digits must be 0..{MICRO_DIGITS}, got {minor_digits}")
    step: int = 10 ** (MICRO_DIGITS - minor_digits)  # int ** int is typed Any (may be a float)
    return step


def round_to_minor_unit(micro: int, minor_digits: int) -> int:
    """Round ``micro`` half-up to the currency's minor unit; the result is in micro-units.

    Half-up means half away from zero, so a credit rounds like the matching debit with
    the sign flipped: with 2 minor digits (cents, step 10_000 micro-units)
    ``1_234_999 -> 1_230_000``, ``1_235_000 -> 1_240_000``, ``-1_235_000 -> -1_240_000``.

    Built on :func:`round_up`: for ``a >= 0`` and step ``s``,
    ``floor(a/s + 1/2) = floor((2a + s) / 2s) = round_up(max(0, 2a - s + 1), 2s)``.
    """
    _check_int("micro", micro)
    return round_ratio_to_minor_unit(micro, 1, minor_digits)


def round_ratio_to_minor_unit(numerator: int, denominator: int, minor_digits: int) -> int:
    """Round the exact amount ``numerator / denominator`` micro-units half-up (away from
    zero) to the currency's minor unit, in one step; the result is in micro-units.

    For amounts that are a ratio (a fee prorated by days, a tax or a percentage): the
    exact value is rounded once, never first to a micro-unit. ``denominator > 0``.
    :func:`round_to_minor_unit` is this with ``denominator = 1``. For ``a >= 0``,
    denominator ``d`` and step ``s``:
    ``floor(a/(d s) + 1/2) = round_up(max(0, 2a - d s + 1), 2 d s)``.

    >>> round_ratio_to_minor_unit(1_000_000 * 10, 30, 2)  # 10/30 of 1.00 = 0.333.. -> 0.33
    330000
    """
    _check_int("numerator", numerator)
    _check_int("denominator", denominator)
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    step = _minor_step(minor_digits) * denominator
    magnitude = -numerator if numerator < 0 else numerator
    minor_units = round_up(max(0, 2 * magnitude - step + 1), 2 * step)
    rounded = minor_units * (step // denominator)
    return -rounded if numerator < 0 else rounded


def format_money(micro: int, currency: str, minor_digits: int = 2) -> str:
    """Display an amount: ``format_money(1_500_000, "EUR") == "1.50 EUR"``.

    At least ``minor_digits`` decimals are shown, more when the amount has sub-minor
    precision (never rounded: ``format_money(1_234_567, "EUR") == "1.234567 EUR"``).
    """
    _check_int("micro", micro)
    _minor_step(minor_digits)
    sign = "-" if micro < 0 else ""
    units, fraction = divmod(-micro if micro < 0 else micro, MICRO)
    decimals = f"{fraction:0{MICRO_DIGITS}d}".rstrip("0")
    decimals = decimals.ljust(minor_digits, "0")
    amount = f"{units}.{decimals}" if decimals else str(units)
    return f"{sign}{amount} {currency}"
