"""Cumulative rating through the engine and ccr.lua (docs/catalog.md, "Cumulative
rating"): the money a session's rating group pays at one price is the price of its
total usage at that price, however the network sliced it into reports.

Expectations are computed by hand from quota_engine/catalog/demo_catalog.toml."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.catalog import load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Price, Rater
from quota_engine.model import (
    ChargingRequest,
    EventAction,
    ServiceUsage,
)
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    DATA_CTX,
    EUR,
    EVENT,
    INITIAL,
    MIB,
    MSISDN,
    NOW,
    SMS_CTX,
    TERMINATE,
    UPDATE,
    Clock,
    bucket,
    create_account,
    data_request,
    get_buckets,
    money,
    one_grant,
    voice_request,
)


async def test_a_50_s_call_reported_30_plus_20_costs_one_minute(engine, r):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    await one_grant(engine, voice_request("v1", INITIAL, 0))
    # 30 s: the first minute, 0.10 EUR; the next grant (300 s wanted) ends the call's
    # total on a minute: 30 s + 330 s = 6 minutes, 5 more = 0.50 EUR reserved
    grant = await one_grant(engine, voice_request("v1", UPDATE, 1, used=30))
    assert (grant.cost, grant.granted) == (100_000, 330)
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 500_000
    # 20 s more: 50 s in all, inside the minute already paid
    grant = await one_grant(engine, voice_request("v1", TERMINATE, 2, used=20, requested=None))
    assert grant.cost == 0
    assert await money(r, "a1") == 10 * EUR - 100_000
    [record] = await read_records(r, "a1")
    assert (record["used"], record["charged"]) == ({"seconds": 50}, 100_000)
    assert record["money"] == {"main": 100_000}


async def test_data_reported_500000_plus_300000_octets_costs_one_mib(engine, r):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    await one_grant(engine, data_request("s1", INITIAL, 0, requested=MIB))
    first = await one_grant(engine, data_request("s1", UPDATE, 1, used=500_000, requested=MIB))
    last = await one_grant(engine, data_request("s1", TERMINATE, 2, used=300_000, requested=None))
    assert (first.cost, last.cost) == (1 * EUR, 0)  # 800,000 octets: one block
    assert await money(r, "a1") == 9 * EUR
    [record] = await read_records(r, "a1")
    assert (record["used"], record["charged"]) == ({"octets": 800_000}, 1 * EUR)


async def test_a_grant_that_completes_the_paid_increment_costs_nothing(engine, r):
    # 0.10 EUR: exactly the first minute; after 30 s the balance is 0
    await create_account(r, "a1", balance=100_000, identities=(MSISDN,))
    first = await one_grant(engine, voice_request("v1", INITIAL, 0, requested=60))
    assert first.granted == 60
    grant = await one_grant(engine, voice_request("v1", UPDATE, 1, used=30, requested=60))
    # the rest of the paid minute is granted (as the last grant: nothing more is
    # affordable), and reserves no money
    assert (grant.cost, grant.granted, grant.final_unit) == (100_000, 30, True)
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 0
    last = await one_grant(engine, voice_request("v1", TERMINATE, 2, used=30, requested=None))
    assert last.cost == 0
    assert await money(r, "a1") == 0


async def test_allowance_units_are_not_counted_money_units_are(engine, r):
    """Units buckets pay first; only the units charged in money make up the total at
    the price: 4 reports of 300,000 octets with a 0.5 MiB allowance are 524,288 octets
    from the allowance and 675,712 in money = one block, 1 EUR (the old per-report
    rounding charged 3 blocks)."""
    allowance = bucket("data-1gb", "units", MIB // 2, unit="octets", services=["data"])
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,), buckets=[allowance])
    await one_grant(engine, data_request("s1", INITIAL, 0, requested=MIB))
    costs = []
    for n in (1, 2, 3):
        costs.append((await one_grant(engine, data_request("s1", UPDATE, n, used=300_000))).cost)
    costs.append(
        (
            await one_grant(engine, data_request("s1", TERMINATE, 4, used=300_000, requested=None))
        ).cost
    )
    # report 2 takes the last 224,288 allowance octets and pays the first block with
    # 75,712; reports 3 and 4 stay inside it (675,712 < 1 MiB)
    assert costs == [0, 1 * EUR, 0, 0]
    [record] = await read_records(r, "a1")
    assert record["allowances"] == {"data-1gb": MIB // 2}
    assert (record["charged"], record["money"]) == (1 * EUR, {"main": 1 * EUR})
    assert await money(r, "a1") == 9 * EUR


async def test_a_new_price_starts_its_own_count_as_a_continuation(engine, r, clock):
    """A national call across Friday midnight (Berlin): weekday 0.10 EUR/min, weekend
    0.05 EUR/min. The weekday usage is one count, flushed as an interim record when
    the weekend price comes; the weekend usage is a count of its own, without the
    first increment (a continuation), each charged on its total."""
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    start = NOW + 13 * 3600 + 59 * 60  # Friday 23:59 Berlin
    midnight = start + 60
    clock.now = start
    grant = await one_grant(engine, voice_request("v1", INITIAL, 0, ts=start))
    assert grant.validity_time == 60  # the rate changes at midnight
    # 40 s at the weekday price: the first minute, 0.10 EUR
    clock.now = start + 40
    grant = await one_grant(engine, voice_request("v1", UPDATE, 1, used=40, ts=start + 40))
    assert grant.cost == 100_000
    # 20 s more up to midnight: 60 s, inside the paid minute; the weekend price starts
    clock.now = midnight
    grant = await one_grant(engine, voice_request("v1", UPDATE, 2, used=20, ts=midnight))
    assert grant.cost == 0
    # weekend: 30 s + 40 s = 70 s, a continuation: 2 minutes at 0.05 = 0.10 EUR
    clock.now = midnight + 30
    grant = await one_grant(engine, voice_request("v1", UPDATE, 3, used=30, ts=midnight + 30))
    assert grant.cost == 50_000
    clock.now = midnight + 70
    grant = await one_grant(
        engine, voice_request("v1", TERMINATE, 4, used=40, requested=None, ts=midnight + 70)
    )
    assert grant.cost == 50_000
    interim, final = await read_records(r, "a1")
    assert (interim["cause"], interim["used"], interim["charged"]) == (
        "interim",
        {"seconds": 60},
        100_000,
    )
    assert (final["cause"], final["used"], final["charged"]) == (
        "normal",
        {"seconds": 70},
        100_000,
    )
    assert (interim["tariff"]["rate"], final["tariff"]["rate"]) == (100_000, 50_000)
    assert await money(r, "a1") == 10 * EUR - 200_000


async def test_each_session_has_its_own_count(engine, r):
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    for session in ("v1", "v2"):
        await one_grant(engine, voice_request(session, INITIAL, 0))
        grant = await one_grant(
            engine, voice_request(session, TERMINATE, 1, used=20, requested=None)
        )
        assert grant.cost == 100_000  # each call pays its first minute
    assert await money(r, "a1") == 10 * EUR - 200_000


async def test_events_and_refunds_are_one_off(engine, r):
    """An SMS (event) is charged on its own: no session count carries over."""
    await create_account(r, "a1", balance=1 * EUR, identities=(MSISDN,))

    def sms(session: str, action: EventAction) -> ChargingRequest:
        return ChargingRequest(
            session_id=session,
            request_type=EVENT,
            request_number=0,
            identities=[MSISDN],
            service_context=SMS_CTX,
            services=[ServiceUsage(rating_group=200, requested=1)],
            timestamp=NOW,
            destination="4930123456",
            action=action,
        )

    assert (await one_grant(engine, sms("e1", EventAction.DIRECT_DEBITING))).cost == 90_000
    assert (await one_grant(engine, sms("e2", EventAction.DIRECT_DEBITING))).cost == 90_000
    assert (await one_grant(engine, sms("e3", EventAction.REFUND_ACCOUNT))).cost == -90_000
    assert await money(r, "a1") == 1 * EUR - 90_000


# ------------------------------------------------------------------ any split, any price


def price_catalog(rate: dict[str, int]) -> dict[str, Any]:
    return {
        "version": "cumulative",
        "currency": "EUR",
        "timezone": "UTC",
        "services": [{"id": "data", "context": DATA_CTX, "rating_groups": [10], "unit": "octets"}],
        "plans": [{"id": "p", "tariffs": [{"service": "data", "rates": [rate]}]}],
    }


rates = st.fixed_dictionaries(
    {
        "rate": st.integers(0, 10**6),
        "rate_per": st.integers(1, 10**6),
        "first_increment": st.one_of(st.integers(1, 100), st.integers(1, 10**5)),
        "next_increment": st.one_of(st.integers(1, 100), st.integers(1, 10**5)),
    }
)
reports = st.lists(
    st.tuples(st.one_of(st.integers(0, 200), st.integers(0, 10**5)), st.integers(0, 10**5)),
    min_size=1,
    max_size=12,
)


async def split_scenario(url: str, rate: dict[str, int], plan: list[tuple[int, int]]) -> None:
    catalog = load_catalog(price_catalog(rate))
    pair = (catalog, Rater(catalog))
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    engine = ChargingEngine(client, lambda: pair, EngineSettings(), clock=Clock(NOW))
    balance = 10**13
    await create_account(client, "acc", balance=balance, plan="p", identities=(MSISDN,))
    await one_grant(engine, data_request("s", INITIAL, 0, requested=plan[0][1]))
    charged = []
    for n, (used, wanted) in enumerate(plan[:-1], start=1):
        grant = await one_grant(engine, data_request("s", UPDATE, n, used=used, requested=wanted))
        charged.append(grant.cost)
    last = await one_grant(engine, data_request("s", TERMINATE, len(plan), used=plan[-1][0]))
    charged.append(last.cost)
    records = await read_records(client, "acc")
    buckets = await get_buckets(client, "acc")
    await client.aclose()

    total = sum(used for used, _ in plan)
    whole = Price(rate["rate"], rate["rate_per"], rate["first_increment"], rate["next_increment"])
    assert sum(charged) == whole.charge(total)[1], (charged, total)
    assert [rec["charged"] for rec in records] == [whole.charge(total)[1]]
    assert buckets["main"]["amount"] == balance - whole.charge(total)[1]
    assert buckets["main"]["reserved"] == 0


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rate=rates, plan=reports)
def test_any_split_into_reports_costs_the_whole_at_once(
    redis_server: EmbeddedRedis, rate: dict[str, int], plan: list[tuple[int, int]]
) -> None:
    """For any price and any split of a usage into reports (with any grants between
    them), the session's money is exactly charge(total usage)."""
    asyncio.run(split_scenario(redis_server.url, rate, plan))
