"""Tiers priced after reports: the tier a session request's grant gets.

A tiered price holds for a range of the account's usage in the bill period
(``Price.usage_from``/``usage_until``). A service is first rated at the period usage
before the request; the engine sends the range with the price, and ccr.lua and
event.lua answer ``stale`` if the usage in Redis left it (usage elsewhere crossed a
threshold), so the request is rated again. Within one request, tiers apply from the
report that crosses the threshold (:func:`price_after_reports`).
"""

from __future__ import annotations

from quota_engine.catalog import Catalog, Plan
from quota_engine.charging.rating import Rater
from quota_engine.charging.script_prices import script_price
from quota_engine.store.contract import RatingContext, ScriptPrice, SessionService

__all__ = ["price_after_reports"]


def price_after_reports(
    services: list[SessionService],
    period_usage: dict[str, int],
    rated_at: int,
    context: RatingContext,
    catalog: Catalog,
    rater: Rater,
    plan: Plan | None,
    prices: dict[str, ScriptPrice],
) -> None:
    """Tiers apply from the report that crosses the threshold: a tiered service is
    priced at the period usage (``period_usage``, per service) after this request's
    reports of it (``used``, summed per service), so the grant made in that request,
    and the part of the report beyond the threshold, get the new tier (ccr.lua checks
    the range against the same sum and splits the report at the stored price's
    threshold). Only a price whose range the reports leave is rated again, in place
    (``prices``: the engine's cache of :func:`script_price`)."""
    if plan is None:
        return
    reported: dict[str, int] = {}
    for entry in services:
        if entry.used and entry.service is not None:
            reported[entry.service] = reported.get(entry.service, 0) + entry.used
    if not reported:
        return
    for entry in services:
        usage_range, service = entry.usage_range, entry.service
        if usage_range is None or service is None or service not in reported:
            continue
        after = period_usage.get(service, 0) + reported[service]
        if usage_range[1] < 0 or after < usage_range[1]:
            continue  # the tier still holds
        price = rater.price(
            plan.id,
            service,
            rated_at,
            context.destination,
            context.visited_mcc_mnc,
            after,
        )
        if price is None:  # not for a tier of the same rate; kept as rated
            continue
        entry.price = script_price(price, catalog, prices)
        entry.zero_rated = bool(price.zero_rated)
        entry.usage_range = (price.usage_from, price.usage_until)
