"""Rate changes inside a report (docs/catalog.md, "A rate change inside a report"):
the grant carries the instant of the change (Tariff-Time-Change); a report that spans
it pays each price its share, split by the client (Tariff-Change-Usage) or, for time,
by the clock. Hand-computed with peak (08:00-20:00 UTC) and off-peak bands: voice 0.60
EUR/min at peak, 0.30 off-peak, in whole minutes; data 2 EUR/MiB at peak, 1 EUR/MiB
off-peak, in whole MiB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from quota_engine.catalog import Catalog, load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.model import ChargingRequest, RequestType, ServiceGrant, ServiceUsage
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
    VOICE_CTX,
    Clock,
    create_account,
    get_buckets,
    money,
    one_grant,
)

EVENING = NOW + 11 * 3600  # Friday 2025-03-07 20:00 UTC: peak -> off-peak
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def banded_catalog() -> Catalog:
    minute = {"rate_per": 60, "first_increment": 60, "next_increment": 60}
    block = {"rate_per": MIB, "first_increment": MIB, "next_increment": MIB}
    return load_catalog(
        {
            "version": "bands",
            "currency": "EUR",
            "timezone": "UTC",
            "time_bands": [
                {"id": "peak", "days": DAYS, "start": "08:00", "end": "20:00"},
                {
                    "id": "offpeak",
                    "windows": [
                        {"days": DAYS, "start": "00:00", "end": "08:00"},
                        {"days": DAYS, "start": "20:00", "end": "24:00"},
                    ],
                },
            ],
            "services": [
                {"id": "voice", "context": VOICE_CTX, "rating_groups": [100], "unit": "seconds"},
                {"id": "data", "context": DATA_CTX, "rating_groups": [10], "unit": "octets"},
            ],
            "plans": [
                {
                    "id": "banded",
                    "tariffs": [
                        {
                            "service": "voice",
                            "rates": [
                                {"band": "peak", "rate": 600_000, **minute},
                                {"band": "offpeak", "rate": 300_000, **minute},
                            ],
                        },
                        {
                            "service": "data",
                            "rates": [
                                {"band": "peak", "rate": 2_000_000, **block},
                                {"band": "offpeak", "rate": 1_000_000, **block},
                            ],
                        },
                    ],
                }
            ],
        }
    )


@pytest.fixture
async def band_engine(r: aioredis.Redis, clock: Clock) -> AsyncIterator[ChargingEngine]:
    catalog = banded_catalog()
    pair = (catalog, Rater(catalog))
    await create_account(r, "a1", balance=100 * EUR, plan="banded", identities=(MSISDN,))
    yield ChargingEngine(r, lambda: pair, EngineSettings(), clock=clock)


def request(
    context: str,
    rating_group: int,
    kind: RequestType,
    number: int,
    at: int,
    *,
    used: int = 0,
    requested: int | None = 0,
    before: int | None = None,
    after: int | None = None,
) -> ChargingRequest:
    usage = ServiceUsage(
        rating_group=rating_group,
        requested=requested,
        used=used,
        used_before_change=before,
        used_after_change=after,
    )
    return ChargingRequest(
        session_id=f"s-{rating_group}",
        request_type=kind,
        request_number=number,
        identities=[MSISDN],
        service_context=context,
        services=[usage],
        timestamp=at,
        peer="node.example",
    )


def voice(kind: RequestType, number: int, at: int, **kw: Any) -> ChargingRequest:
    return request(VOICE_CTX, 100, kind, number, at, **kw)


def data(kind: RequestType, number: int, at: int, **kw: Any) -> ChargingRequest:
    return request(DATA_CTX, 10, kind, number, at, **kw)


async def one(engine: ChargingEngine, clock: Clock, req: ChargingRequest) -> ServiceGrant:
    clock.now = req.timestamp  # the client's clock is right: rated at its timestamp
    return await one_grant(engine, req)


async def test_a_grant_that_spans_a_rate_change_carries_its_instant(
    band_engine: ChargingEngine, clock: Clock
) -> None:
    grant = await one(band_engine, clock, voice(INITIAL, 0, EVENING - 120))
    assert (grant.granted, grant.validity_time) == (300, 120)
    assert grant.tariff_time_change == EVENING
    # a grant whose validity holds no rate change: none
    grant = await one(band_engine, clock, data(INITIAL, 0, EVENING - 7200))
    assert (grant.validity_time, grant.tariff_time_change) == (1800, None)


async def test_a_late_voice_report_pays_each_band_its_share(
    band_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    engine = band_engine
    await one(engine, clock, voice(INITIAL, 0, EVENING - 120))  # 19:58, 300 s granted
    # the client reports 50 s late: 170 s, of which the last 50 after 20:00.
    # 120 s at peak = 2 min x 0.60 = 1.20 EUR; 50 s off-peak, a continuation of the
    # call: 1 min x 0.30 = 0.30 EUR. (All at peak: 3 min = 1.80 EUR.)
    grant = await one(engine, clock, voice(UPDATE, 1, EVENING + 50, used=170))
    assert grant.cost == 1_500_000
    # 60 s more, off-peak: 110 s in the band's count = 2 min, 0.30 EUR more
    grant = await one(engine, clock, voice(TERMINATE, 2, EVENING + 110, used=60, requested=None))
    assert grant.cost == 300_000
    assert await money(r, "a1") == 100 * EUR - 1_800_000
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 0
    interim, last = await read_records(r, "a1")
    assert (interim["cause"], interim["band"], interim["used"], interim["charged"]) == (
        "interim",
        "peak",
        {"seconds": 120},
        1_200_000,
    )
    assert (last["cause"], last["band"], last["used"], last["charged"]) == (
        "normal",
        "offpeak",
        {"seconds": 110},
        600_000,
    )


@pytest.mark.parametrize(
    ("before", "after", "cost"),
    [
        # 170 s reported at 20:00:50, the client says 50 s before and 120 s after the
        # change: 1 min at peak (0.60 EUR) + 2 min off-peak (0.60 EUR). (By the clock:
        # 1.50 EUR; all at peak: 1.80 EUR.)
        pytest.param(50, 120, 1_200_000, id="the-clients-split-wins-over-the-clock"),
        # 100 s before, 20 s after and 50 s indeterminate, reported at 20:00:50: of the
        # 50 s after the change 20 are the client's, so 30 of the indeterminate are after
        # it. 100 + 20 = 120 s at peak (1.20 EUR), 20 + 30 = 50 s off-peak (0.30 EUR)
        pytest.param(100, 20, 1_500_000, id="an-indeterminate-part-is-split-by-the-clock"),
    ],
)
async def test_a_voice_report_is_split_by_the_client_then_by_the_clock(
    band_engine: ChargingEngine, clock: Clock, before: int, after: int, cost: int
) -> None:
    await one(band_engine, clock, voice(INITIAL, 0, EVENING - 120))
    grant = await one(
        band_engine, clock, voice(UPDATE, 1, EVENING + 50, used=170, before=before, after=after)
    )
    assert grant.cost == cost


async def test_a_report_made_at_the_change_is_all_before_it(
    band_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    await one(band_engine, clock, voice(INITIAL, 0, EVENING - 120))
    grant = await one(band_engine, clock, voice(UPDATE, 1, EVENING, used=120))
    assert grant.cost == 1_200_000  # 2 min at peak
    # and the grant made then, off-peak, is not split again by the same change
    grant = await one(
        band_engine, clock, voice(TERMINATE, 2, EVENING + 60, used=60, requested=None)
    )
    assert grant.cost == 300_000
    assert await money(r, "a1") == 100 * EUR - 1_500_000


async def test_a_data_report_with_two_usus_pays_each_at_its_price(
    band_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    engine = band_engine
    grant = await one(engine, clock, data(INITIAL, 0, EVENING - 60, requested=5 * MIB))
    assert (grant.granted, grant.tariff_time_change) == (5 * MIB, EVENING)
    # 1.5 MiB before the change, 2 MiB after: 2 MiB at 2 EUR (4 EUR) and 2 MiB at 1
    # EUR (2 EUR). (All at peak: 4 MiB x 2 EUR = 8 EUR.)
    used, before, after = 3 * MIB + MIB // 2, MIB + MIB // 2, 2 * MIB
    grant = await one(
        engine, clock, data(UPDATE, 1, EVENING + 30, used=used, before=before, after=after)
    )
    assert grant.cost == 6 * EUR
    grant = await one(engine, clock, data(TERMINATE, 2, EVENING + 40, requested=None))
    assert await money(r, "a1") == 100 * EUR - 6 * EUR
    interim, last = await read_records(r, "a1")
    assert (interim["band"], interim["used"], interim["charged"]) == (
        "peak",
        {"octets": before},
        4 * EUR,
    )
    assert (last["band"], last["used"], last["charged"]) == ("offpeak", {"octets": after}, 2 * EUR)


async def test_a_data_report_without_a_split_stays_at_the_grants_price(
    band_engine: ChargingEngine, clock: Clock
) -> None:
    await one(band_engine, clock, data(INITIAL, 0, EVENING - 60, requested=5 * MIB))
    # volume cannot be split by the clock: 3.5 MiB at peak, 4 MiB x 2 EUR
    grant = await one(band_engine, clock, data(UPDATE, 1, EVENING + 30, used=3 * MIB + MIB // 2))
    assert grant.cost == 8 * EUR


async def test_a_terminate_that_spans_the_change_writes_one_record_per_price(
    band_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    await one(band_engine, clock, voice(INITIAL, 0, EVENING - 120))
    # the call ends 50 s after the change: 120 s at peak, 50 s off-peak
    grant = await one(
        band_engine, clock, voice(TERMINATE, 1, EVENING + 50, used=170, requested=None)
    )
    assert grant.cost == 1_500_000
    assert await money(r, "a1") == 100 * EUR - 1_500_000
    interim, last = await read_records(r, "a1")
    assert (interim["id"], interim["band"], interim["used"], interim["charged"]) == (
        "s-100;1;100",
        "peak",
        {"seconds": 120},
        1_200_000,
    )
    # the closing record after it takes the next number, as for a tier crossing
    assert (last["id"], last["band"], last["used"], last["charged"]) == (
        "s-100;2;100",
        "offpeak",
        {"seconds": 50},
        300_000,
    )
    assert (interim["end"], last["start"], last["end"]) == (EVENING + 50,) * 3


@pytest.mark.parametrize("send", [True, False])
async def test_the_tariff_time_change_setting_only_decides_whether_the_grant_says_it(
    r: aioredis.Redis, clock: Clock, send: bool
) -> None:
    catalog = banded_catalog()
    pair = (catalog, Rater(catalog))
    await create_account(r, "a1", balance=100 * EUR, plan="banded", identities=(MSISDN,))
    engine = ChargingEngine(r, lambda: pair, EngineSettings(tariff_time_change=send), clock=clock)
    initial = voice(INITIAL, 0, EVENING - 120)
    grant = await one(engine, clock, initial)
    # Validity-Time stops at 20:00 either way; only the AVP depends on the setting
    assert (grant.granted, grant.validity_time) == (300, 120)
    assert grant.tariff_time_change == (EVENING if send else None)
    # a retransmission gets the stored answer, the same
    again = await one(engine, clock, initial)
    assert (again.validity_time, again.tariff_time_change) == (120, grant.tariff_time_change)
    # a report without the client's split is still split by the clock (as in
    # test_a_late_voice_report_pays_each_band_its_share): 1.20 + 0.30 EUR
    grant = await one(engine, clock, voice(UPDATE, 1, EVENING + 50, used=170))
    assert grant.cost == 1_500_000
