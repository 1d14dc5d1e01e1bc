"""How much a grant or an event may hold: the limits that keep the scripts exact.

Lua's numbers are doubles, exact up to 2^53: every amount the engine sends stays
well inside that. One grant or event debit is at most :data:`MAX_USED` units, and a
grant is cut so that its price stays below :data:`MAX_GRANT_COST` micro-units
(:func:`grant_units`); a price enquiry or a refund of more than that is refused
(:func:`cost_cap`). Session reports are cut by the usage caps instead
(:mod:`~quota_engine.charging.usage_caps`).
"""

from __future__ import annotations

from quota_engine.charging.rating import Price

__all__ = ["MAX_GRANT_COST", "MAX_USED", "cost_cap", "grant_units"]

MAX_USED = 2**40
"""The most units of one event debit or one grant (keeps Lua exact); session reports are
cut by the usage caps (``EngineSettings.usage_cap_*``)."""
MAX_GRANT_COST = 2**50
"""A grant is cut so that its price stays below this many micro-units."""


def cost_cap(price: Price) -> int:
    """The most units whose price stays within :data:`MAX_GRANT_COST`: a price enquiry
    or a refund of more is beyond what any balance could pay (and its price may not
    even fit in 64 bits)."""
    return max(price.units_for_money(MAX_GRANT_COST), price.first_increment)


def grant_units(price: Price, want: int) -> int:
    """``want`` units cut so that the grant costs at most :data:`MAX_GRANT_COST` (Lua
    doubles stay exact). Not rounded: ccr.lua rounds it up to whole increments itself,
    with the rating group's continuation flag, which only the session knows (rounding
    twice, once without and once with it, could grant one increment too many)."""
    want = min(int(want), MAX_USED)
    if price.first_cost or price.next_cost:
        want = min(want, cost_cap(price))
    return want
