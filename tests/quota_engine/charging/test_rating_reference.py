"""Rater.price against a brute-force reference built straight from the catalog data."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quota_engine.catalog import DEMO_CATALOG_PATH, Catalog, load_catalog, load_demo_catalog
from quota_engine.catalog.timebands import DAYS
from quota_engine.charging.rating import Rater
from quota_engine.documents import read_document
from quota_engine.money import round_up
from tests.quota_engine.catalogs import MIB, base_catalog


def _tiered_base() -> Catalog:
    data = base_catalog()
    data["timezone"] = "America/New_York"
    data["plans"][0]["tariffs"][0]["rates"][0]["tiers"] = [
        {"from_units": 10 * MIB, "rate": 600_000, "rate_per": MIB},
        {"from_units": 100 * MIB, "rate": 7, "rate_per": 3},
    ]
    return load_catalog(data)


def _demo_rejecting() -> Catalog:
    """The demo catalog with ``missing = "reject"`` on its SMS table."""
    data = read_document(DEMO_CATALOG_PATH)
    next(t for t in data["destinations"] if t["id"] == "sms-de")["missing"] = "reject"
    return load_catalog(data)


CATALOGS = {"demo": load_demo_catalog(), "base": _tiered_base(), "reject": _demo_rejecting()}
RATERS = {name: Rater(catalog) for name, catalog in CATALOGS.items()}


def ref_destination(catalog, tariff, number):
    table = catalog.table_for(tariff)
    if table is None:
        return None
    digits = None if number is None else number[1:] if number.startswith("+") else number
    if digits is None or not digits.isdigit() or not digits.isascii():
        # no number: the table's missing rule, in a tariff that prices by destination
        by_destination = any(r.destination is not None for r in tariff.rates)
        return table.missing_class if by_destination else None
    matches = [(len(p), cls) for p, cls in table.prefixes if digits.startswith(p)]
    return max(matches)[1] if matches else table.default


def ref_zone(catalog, visited):
    if not visited or visited in catalog.home_mcc_mnc:
        return "home"
    best = None
    for zone in catalog.zones:
        for pattern in zone.mcc_mnc:
            if pattern == visited:
                return zone.id
            if pattern.endswith("*") and visited.startswith(pattern[:-1]):
                length = len(pattern) - 1
                if best is None or length > best[0]:
                    best = (length, zone.id)
    return best[1] if best else None


def ref_band(catalog, ts):
    if not catalog.time_bands:
        return None
    local = datetime.fromtimestamp(ts, ZoneInfo(catalog.timezone))
    minute = local.hour * 60 + local.minute
    days = (["holiday"] if local.date() in catalog.holidays else []) + [DAYS[local.weekday()]]
    for day in days:
        for band in catalog.time_bands:
            for w in band.windows:
                if day in w.days and w.start <= minute < w.end:
                    return band.id
    return None


def ref_price(catalog, plan_id, service_id, ts, number, visited, usage):
    """(rate, rate_per, first_increment, next_increment, first_cost, next_cost, dest, zone, band)"""
    plan = catalog.plan(plan_id)
    tariff = plan.tariff_for(service_id) if plan else None
    if tariff is None:
        return None
    dest, zone, band = (
        ref_destination(catalog, tariff, number),
        ref_zone(catalog, visited),
        ref_band(catalog, ts),
    )
    if tariff.zero_rated:
        return (0, 1, 1, 1, 0, 0, dest, zone, band)
    matching = [
        r
        for r in tariff.rates
        if r.destination in (None, dest) and r.zone in (None, zone) and r.band in (None, band)
    ]
    if not matching:
        return None
    best = max(r.specificity for r in matching)
    [rate] = [r for r in matching if r.specificity == best]  # validation forbids ties
    amount, per = rate.rate, rate.rate_per
    for tier in rate.tiers:
        if tier.from_units <= usage:
            amount, per = tier.rate, tier.rate_per
    first = round_up(rate.first_increment * amount, per)
    nxt = round_up(rate.next_increment * amount, per)
    return (amount, per, rate.first_increment, rate.next_increment, first, nxt, dest, zone, band)


NUMBERS = [
    "4930123",
    "4915112345",
    "+4917",
    "4918",
    "49",
    "4",
    "33612345678",
    "1212555",
    "447700",
    "x49",
    "",
]
NETWORKS = [None, "", "00101", "20801", "26201", "262011", "26203", "31026", "2080", "99999"]


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(sorted(CATALOGS)),
    plan_index=st.integers(0, 1),
    service_index=st.integers(0, 4),
    ts=st.integers(1_700_000_000, 1_830_000_000),  # late 2023 .. 2027, DST changes included
    number=st.one_of(st.none(), st.sampled_from(NUMBERS), st.text("0123456789+", max_size=14)),
    visited=st.sampled_from(NETWORKS),
    usage=st.sampled_from([0, 1, 10 * MIB - 1, 10 * MIB, 100 * MIB, 10**12]),
)
def test_price_matches_the_reference(name, plan_index, service_index, ts, number, visited, usage):
    catalog, rater = CATALOGS[name], RATERS[name]
    plan = catalog.plans[min(plan_index, len(catalog.plans) - 1)]
    service = catalog.services[min(service_index, len(catalog.services) - 1)]
    expected = ref_price(catalog, plan.id, service.id, ts, number, visited, usage)
    got = rater.price(plan.id, service.id, ts, number, visited, usage)
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert (
        got.rate,
        got.rate_per,
        got.first_increment,
        got.next_increment,
        got.first_cost,
        got.next_cost,
        got.destination,
        got.zone,
        got.band,
    ) == expected


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(1_700_000_000, 1_830_000_000),
    length=st.integers(0, 3 * 86400),
    number=st.sampled_from(["4930123", "4915112345", "33612345678"]),
)
def test_split_by_band_matches_per_second_rating(start, length, number):
    """Portions tile [start, end) and each second is rated like a single request at it."""
    catalog, rater = CATALOGS["demo"], RATERS["demo"]
    parts = rater.split_by_band("prepaid-basic", "voice", start, start + length, number)
    assert sum(seconds for _, seconds in parts) == length
    t = start
    for i, (price, seconds) in enumerate(parts):
        assert seconds > 0 or length == 0
        if i:
            assert price.rate_index != parts[i - 1][0].rate_index  # maximal portions
        for probe in {t, t + seconds // 2, max(t, t + seconds - 1)}:
            ref = ref_price(catalog, "prepaid-basic", "voice", probe, number, None, 0)
            assert (price.rate, price.rate_per) == ref[:2], probe
        t += seconds


@pytest.mark.parametrize("name", sorted(CATALOGS))
def test_reference_catalogs_load(name):
    assert RATERS[name].catalog is CATALOGS[name]
