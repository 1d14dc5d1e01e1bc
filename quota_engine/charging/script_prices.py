"""The price as the scripts take it (:class:`~quota_engine.store.contract.ScriptPrice`).

ccr.lua and event.lua price grants and reports with the four numbers of the linear
formula (first increment and its cost, next increment and its cost); they compare the
price's key with the one stored with a grant to see whether the price changed, and
they splice its metadata (which price of which catalog, zone, destination, band, the
tariff's numbers), msgpack-encoded once here, into the rated records as an opaque
string.
"""

from __future__ import annotations

from quota_engine.catalog import Catalog
from quota_engine.charging.rating import Price
from quota_engine.store.contract import ScriptPrice, pack

__all__ = ["CACHE_SIZE", "script_price"]

CACHE_SIZE = 10_000
"""Distinct prices one cache holds; when full it is emptied (a new catalog's prices
replace the old ones')."""


def script_price(price: Price, catalog: Catalog, cache: dict[str, ScriptPrice]) -> ScriptPrice:
    """The price as the scripts take it: the four numbers of the linear formula, a key
    that changes when the price does, and the record's metadata, msgpack-encoded; built
    once per distinct price and kept in ``cache`` (the engine's own, at most
    :data:`CACHE_SIZE` entries; the scripts keep the metadata as an opaque string and
    splice it into the record)."""
    plan, service = price.plan_id, price.service_id
    ident = f"{plan}:{service}:{price.tariff_index}:{price.rate_index}:{price.tier_index}"
    # the band is not part of the key: a band change that keeps the rate is no change
    # of price (the record keeps the band its usage started in)
    key = (
        f"{catalog.version}|{ident}|{price.zone}|{price.destination}"
        f"|{price.first_increment}|{price.first_cost}|{price.next_increment}"
        f"|{price.next_cost}|{int(price.zero_rated)}"
    )
    cache_key = f"{key}|{price.band}"
    entry = cache.get(cache_key)
    if entry is None:
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        meta = pack(
            {
                "price": ident,
                "catalog": catalog.version,
                "zone": price.zone,
                "destination": price.destination,
                "band": price.band,
                # zero-rated: no rate priced the usage (its numbers would be made up)
                "tariff": None
                if price.zero_rated
                else {
                    "plan": plan,
                    "service": service,
                    "tariff_index": price.tariff_index,
                    "rate_index": price.rate_index,
                    "tier_index": price.tier_index,
                    "rate": price.rate,
                    "rate_per": price.rate_per,
                    "first_increment": price.first_increment,
                    "next_increment": price.next_increment,
                    "first_cost": price.first_cost,
                    "next_cost": price.next_cost,
                },
            }
        )
        entry = cache[cache_key] = ScriptPrice(
            price.first_increment,
            price.first_cost,
            price.next_increment,
            price.next_cost,
            key,
            meta,
        )
    return entry
