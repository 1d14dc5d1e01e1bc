"""Tiers apply from the report that crosses the threshold (docs/catalog.md, "Tiers"):
the usage after the threshold and the grant made in that request are priced at the
new tier. Hand-computed with a data rate of 1 EUR/MiB, 0.50 EUR/MiB from 10 MiB and
0.25 EUR/MiB from 20 MiB of the bill period, in whole MiB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.catalog import Catalog, load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    DATA_CTX,
    EUR,
    INITIAL,
    MIB,
    MSISDN,
    NOW,
    TERMINATE,
    UPDATE,
    Clock,
    create_account,
    data_request,
    engine_on,
    get_buckets,
    money,
    one_grant,
    tiered_data_catalog,
)


def tiered_catalog() -> Catalog:
    return tiered_data_catalog("tiers", [(10 * MIB, 500_000), (20 * MIB, 250_000)])


@pytest.fixture(params=[0, 30], ids=["no-account-cache", "account-cache"])
async def tier_engine(
    request: pytest.FixtureRequest, r: aioredis.Redis, clock: Clock
) -> AsyncIterator[ChargingEngine]:
    yield engine_on(r, tiered_catalog(), clock, EngineSettings(account_cache_ttl=request.param))


def tier_of(record: dict[str, Any]) -> int:
    return int(record["tariff"]["tier_index"])


async def test_the_report_that_crosses_a_threshold_and_its_grant_use_the_new_tier(
    tier_engine: ChargingEngine, r: aioredis.Redis
) -> None:
    engine = tier_engine
    await create_account(r, "a1", balance=100 * EUR, plan="tiered", identities=(MSISDN,))
    grant = await one_grant(engine, data_request("s1", INITIAL, 0, requested=6 * MIB))
    assert grant.granted == 6 * MIB
    # U1: 6 MiB (period usage 0 -> 6): 6 EUR; the grant, at 6 MiB, is still 1 EUR/MiB
    grant = await one_grant(engine, data_request("s1", UPDATE, 1, used=6 * MIB, requested=6 * MIB))
    assert (grant.cost, grant.granted) == (6 * EUR, 6 * MIB)
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 6 * EUR
    # U2: 6 MiB (6 -> 12) crosses 10 MiB: 4 MiB at 1 EUR, 2 MiB at 0.50 = 5 EUR; the
    # grant is priced at 12 MiB: 6 MiB at 0.50 = 3 EUR reserved
    grant = await one_grant(engine, data_request("s1", UPDATE, 2, used=6 * MIB, requested=6 * MIB))
    assert (grant.cost, grant.granted) == (5 * EUR, 6 * MIB)
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 3 * EUR
    # U3: 6 MiB (12 -> 18) at 0.50 = 3 EUR; grant at 18 MiB still 0.50
    grant = await one_grant(engine, data_request("s1", UPDATE, 3, used=6 * MIB, requested=6 * MIB))
    assert (grant.cost, grant.granted) == (3 * EUR, 6 * MIB)
    # T: 3 MiB (18 -> 21) crosses 20 MiB: 2 MiB at 0.50 + 1 MiB at 0.25 = 1.25 EUR
    grant = await one_grant(engine, data_request("s1", TERMINATE, 4, used=3 * MIB, requested=None))
    assert grant.cost == 1_250_000
    # 21 MiB = 10 at 1 EUR + 10 at 0.50 + 1 at 0.25
    assert await money(r, "a1") == 100 * EUR - 15_250_000
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 0
    first, second, last = await read_records(r, "a1")
    assert (first["id"], first["cause"], tier_of(first)) == ("s1;2;10", "interim", -1)
    assert (first["used"], first["charged"]) == ({"octets": 10 * MIB}, 10 * EUR)
    assert (second["id"], second["cause"], tier_of(second)) == ("s1;4;10", "interim", 0)
    assert (second["used"], second["charged"]) == ({"octets": 10 * MIB}, 5 * EUR)
    # the CCR-T's usage beyond the threshold: its record takes the next number
    assert (last["id"], last["cause"], tier_of(last)) == ("s1;5;10", "normal", 1)
    assert (last["used"], last["charged"]) == ({"octets": MIB}, 250_000)


async def test_a_report_wholly_below_the_threshold_keeps_the_tier(
    tier_engine: ChargingEngine, r: aioredis.Redis
) -> None:
    engine = tier_engine
    await create_account(r, "a1", balance=100 * EUR, plan="tiered", identities=(MSISDN,))
    await one_grant(engine, data_request("s1", INITIAL, 0, requested=10 * MIB))
    # 10 MiB - 1 octet: still below the threshold, 10 blocks at 1 EUR; the grant is
    # priced at 10 MiB - 1: the old tier
    grant = await one_grant(engine, data_request("s1", UPDATE, 1, used=10 * MIB - 1, requested=MIB))
    assert (grant.cost, grant.granted) == (10 * EUR, MIB + 1)
    # 2 octets more: 1 octet completes the 10th MiB (paid), 1 is beyond the threshold:
    # a continuation at 0.50
    grant = await one_grant(engine, data_request("s1", TERMINATE, 2, used=2, requested=None))
    assert grant.cost == 500_000
    records = await read_records(r, "a1")
    assert [(rec["cause"], tier_of(rec), rec["charged"]) for rec in records] == [
        ("interim", -1, 10 * EUR),
        ("normal", 0, 500_000),
    ]


# ------------------------------------------------------------------ any tiers, any split


def tier_document(rates: list[int], rate_per: int, increment: int, starts: list[int]) -> Catalog:
    tiers = [
        {"from_units": start, "rate": rate, "rate_per": rate_per}
        for start, rate in zip(starts, rates[1:], strict=True)
    ]
    rate = {
        "rate": rates[0],
        "rate_per": rate_per,
        "first_increment": increment,
        "next_increment": increment,
        "tiers": tiers,
    }
    return load_catalog(
        {
            "version": "tier-property",
            "currency": "EUR",
            "timezone": "UTC",
            "services": [
                {"id": "data", "context": DATA_CTX, "rating_groups": [10], "unit": "octets"}
            ],
            "plans": [{"id": "tiered", "tariffs": [{"service": "data", "rates": [rate]}]}],
        }
    )


@st.composite
def tier_plans(draw: st.DrawFn) -> tuple[Catalog, list[int], list[int]]:
    count = draw(st.integers(1, 2))
    rates = draw(st.lists(st.integers(0, 10**4), min_size=count + 1, max_size=count + 1))
    starts = sorted(draw(st.sets(st.integers(1, 10**5), min_size=count, max_size=count)))
    catalog = tier_document(rates, draw(st.integers(1, 100)), draw(st.integers(1, 1000)), starts)
    reports = draw(st.lists(st.integers(0, 5 * 10**4), min_size=1, max_size=10))
    # each report crosses at most one threshold (two at once: see docs/catalog.md); one
    # that ends exactly on a second threshold has crossed two: the period usage then
    # ends in the tier that starts there
    total = 0
    for used in reports:
        assume(sum(1 for start in starts if total < start <= total + used) <= 1)
        total += used
    return catalog, starts, reports


async def tier_scenario(url: str, catalog: Catalog, starts: list[int], reports: list[int]) -> None:
    rater = Rater(catalog)
    pair = (catalog, rater)
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    engine = ChargingEngine(client, lambda: pair, EngineSettings(), clock=Clock(NOW))
    balance = 10**14
    await create_account(client, "acc", balance=balance, plan="tiered", identities=(MSISDN,))
    wants = [*reports[1:], 1]  # each grant covers the next report (no usage capping)
    await one_grant(engine, data_request("s", INITIAL, 0, requested=max(reports[0], 1)))
    for n, (used, want) in enumerate(zip(reports[:-1], wants, strict=False), start=1):
        await one_grant(engine, data_request("s", UPDATE, n, used=used, requested=max(want, 1)))
    await one_grant(engine, data_request("s", TERMINATE, len(reports), used=reports[-1]))
    records = await read_records(client, "acc")
    buckets = await get_buckets(client, "acc")
    await client.aclose()

    # the usage of each tier's stretch of the period is charged at that tier, on its
    # total; every stretch after the first is a continuation
    total = sum(reports)
    bounds = [0, *starts, total]
    expected = 0
    for index, (low, high) in enumerate(zip(bounds, bounds[1:], strict=False)):
        units = max(0, min(high, total) - low)
        if units:
            price = rater.price("tiered", "data", NOW, period_usage=low)
            assert price is not None
            expected += price.charge(units, index > 0)[1]
    assert balance - buckets["main"]["amount"] == expected
    assert sum(rec["charged"] for rec in records) == expected
    assert buckets["main"]["reserved"] == 0
    assert len({rec["id"] for rec in records}) == len(records)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=tier_plans())
def test_any_split_across_tiers_charges_each_stretch_at_its_tier(
    redis_server: EmbeddedRedis, plan: tuple[Catalog, list[int], list[int]]
) -> None:
    catalog, starts, reports = plan
    asyncio.run(tier_scenario(redis_server.url, catalog, starts, reports))
