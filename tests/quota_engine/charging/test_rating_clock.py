"""One clock (docs/data-model.md, "One clock: the rating time"): a request is rated at its
Event-Timestamp when that is within ``timestamp_tolerance`` of server time, else at
server time, and that one instant decides the time band, the bill period whose usage
the tiers count, bucket validity and the records' times. Hand-computed.

Demo catalog (Europe/Berlin): national voice 0.10 EUR/min on weekdays, 0.05 on
weekends, per minute; data 1 EUR per whole MiB. The tiered catalog below (UTC): 1 EUR
per MiB, 0.50 EUR from 10 MiB of the bill period.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from quota_engine.catalog import Catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.observer import NoObserver
from quota_engine.charging.rating import Rater
from quota_engine.charging.rating_clock import rating_time
from quota_engine.model import (
    ChargingRequest,
    EventAction,
    Outcome,
    RequestType,
    ServiceUsage,
)
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    DATA_CTX,
    EUR,
    INITIAL,
    MIB,
    MSISDN,
    NOW,
    TERMINATE,
    Clock,
    bucket,
    create_account,
    data_request,
    engine_on,
    get_buckets,
    money,
    one_grant,
    tiered_data_catalog,
    voice_request,
)

MONDAY = 1741561200  # 2025-03-10 00:00 CET: the weekday band starts
SATURDAY = 1741388400  # 2025-03-08 00:00 CET: the weekend band starts
DECEMBER = 1764547200  # 2025-12-01 00:00 UTC: a bill period starts (cycle day 1)
WEEKDAY_MINUTE, WEEKEND_MINUTE = 100_000, 50_000


# ------------------------------------------------------------------ the rule


def test_the_rating_time_is_the_timestamp_within_the_tolerance_either_way() -> None:
    now = 1_000_000
    assert rating_time(now - 300, now, 300) == now - 300
    assert rating_time(now + 300, now, 300) == now + 300
    assert rating_time(now - 301, now, 300) == now  # backdated beyond: server time
    assert rating_time(now + 301, now, 300) == now  # from the future: server time
    assert rating_time(now - 86400, now, 300) == now
    assert rating_time(now, now, 0) == now
    assert rating_time(now - 1, now, 0) == now  # 0: always server time


def test_the_tolerance_is_a_setting_of_at_least_0() -> None:
    assert EngineSettings().timestamp_tolerance == 300
    assert EngineSettings(timestamp_tolerance=0).timestamp_tolerance == 0
    with pytest.raises(ValueError, match="timestamp_tolerance"):
        EngineSettings(timestamp_tolerance=-1)


# ------------------------------------------------------------------ the band


def voice(
    session: str,
    kind: RequestType,
    number: int,
    stamp: int,
    *,
    requested: int | None = None,
    used: int = 0,
) -> ChargingRequest:
    return voice_request(
        session, kind, number, used=used, requested=requested, ts=stamp, peer="ims.example"
    )


async def minute_call(
    r: aioredis.Redis, demo_pair: tuple[Catalog, Rater], server: int, stamp: int, tolerance: int
) -> tuple[int, dict[str, int]]:
    """A national call: CCR-I at ``server`` (server time) stamped ``stamp``, CCR-T 60 s
    later on both clocks reporting 60 s. Its cost and its record's start and end."""
    await create_account(r, "a1", identities=(MSISDN,))
    clock = Clock(server)
    settings = EngineSettings(timestamp_tolerance=tolerance)
    engine = ChargingEngine(r, lambda: demo_pair, settings, clock=clock)
    grant = await one_grant(engine, voice("call", INITIAL, 0, stamp, requested=60))
    assert grant.granted == 60
    clock.now += 60
    grant = await one_grant(engine, voice("call", TERMINATE, 1, stamp + 60, used=60))
    [record] = await read_records(r, "a1")
    assert record["charged"] == grant.cost
    return grant.cost, {"start": record["start"], "end": record["end"]}


@pytest.mark.parametrize(
    ("server", "stamp", "tolerance", "cost", "rated_at"),
    [
        # backdated 3 minutes across midnight into Sunday: within 300 s, trusted
        (MONDAY + 60, MONDAY - 120, 300, WEEKEND_MINUTE, MONDAY - 120),
        # exactly the tolerance
        (MONDAY + 60, MONDAY - 240, 300, WEEKEND_MINUTE, MONDAY - 240),
        # one second beyond: rated at server time, Monday
        (MONDAY + 60, MONDAY - 241, 300, WEEKDAY_MINUTE, MONDAY + 60),
        # a day backdated, into Sunday's cheaper band: server time
        (MONDAY + 60, MONDAY + 60 - 86400, 300, WEEKDAY_MINUTE, MONDAY + 60),
        # tolerance 0: the timestamp is not trusted at all
        (MONDAY + 60, MONDAY - 120, 0, WEEKDAY_MINUTE, MONDAY + 60),
        # from the future: Friday 23:58 stamped Saturday 00:01, within 300 s, trusted
        (SATURDAY - 120, SATURDAY + 60, 300, WEEKEND_MINUTE, SATURDAY + 60),
        # Friday 23:58 stamped Saturday 10:00: server time, Friday
        (SATURDAY - 120, SATURDAY + 36000, 300, WEEKDAY_MINUTE, SATURDAY - 120),
    ],
    ids=[
        "backdated-within",
        "backdated-at-tolerance",
        "backdated-beyond",
        "backdated-a-day",
        "tolerance-0",
        "future-within",
        "future-beyond",
    ],
)
async def test_the_band_and_the_records_times_are_those_of_the_rating_time(
    r: aioredis.Redis,
    demo_pair: tuple[Catalog, Rater],
    server: int,
    stamp: int,
    tolerance: int,
    cost: int,
    rated_at: int,
) -> None:
    assert await minute_call(r, demo_pair, server, stamp, tolerance) == (
        cost,
        {"start": rated_at, "end": rated_at + 60},
    )
    assert await money(r, "a1") == 10 * EUR - cost


# ------------------------------------------------------------------ bucket validity


async def test_an_allowance_not_yet_valid_at_the_rating_time_does_not_pay(
    engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """The allowance starts at NOW; the server's clock is 100 s past it, the requests
    are stamped 100 s and 40 s before it: rated before the allowance existed, the MiB
    is paid in money (today's code paid it from the allowance, valid at server time)."""
    allowance = bucket(
        "promo", "units", 5 * MIB, unit="octets", priority=10, valid_from=NOW, services=["data"]
    )
    await create_account(r, "a1", identities=(MSISDN,), buckets=[allowance])
    clock.now = NOW + 100
    grant = await one_grant(
        engine, data_request("s1", INITIAL, 0, requested=MIB, timestamp=NOW - 100)
    )
    assert grant.granted == MIB
    held = await get_buckets(r, "a1")
    assert (held["main"]["reserved"], held["promo"]["reserved"]) == (EUR, 0)
    clock.now = NOW + 160
    grant = await one_grant(engine, data_request("s1", TERMINATE, 1, used=MIB, timestamp=NOW - 40))
    assert grant.cost == EUR
    after = await get_buckets(r, "a1")
    assert (after["main"]["amount"], after["main"]["reserved"]) == (9 * EUR, 0)
    assert (after["promo"]["amount"], after["promo"]["reserved"]) == (5 * MIB, 0)
    [record] = await read_records(r, "a1")
    assert (record["charged"], record["allowances"]) == (EUR, {})
    assert (record["start"], record["end"]) == (NOW - 100, NOW - 40)


async def test_an_allowance_still_valid_at_the_rating_time_pays(
    engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """The allowance ends at NOW; the server's clock is 100 s past it, the requests are
    stamped 100 s and 40 s before it: the usage is the allowance's (today's code charged
    money, the allowance being expired at server time)."""
    allowance = bucket(
        "promo", "units", 5 * MIB, unit="octets", priority=10, valid_to=NOW, services=["data"]
    )
    await create_account(r, "a1", identities=(MSISDN,), buckets=[allowance])
    clock.now = NOW + 100
    grant = await one_grant(
        engine, data_request("s1", INITIAL, 0, requested=MIB, timestamp=NOW - 100)
    )
    assert grant.granted == MIB
    held = await get_buckets(r, "a1")
    assert (held["main"]["reserved"], held["promo"]["reserved"]) == (0, MIB)
    clock.now = NOW + 160
    grant = await one_grant(engine, data_request("s1", TERMINATE, 1, used=MIB, timestamp=NOW - 40))
    assert grant.cost == 0
    after = await get_buckets(r, "a1")
    assert after["main"]["amount"] == 10 * EUR
    assert (after["promo"]["amount"], after["promo"]["reserved"]) == (4 * MIB, 0)
    [record] = await read_records(r, "a1")
    assert (record["charged"], record["allowances"]) == (0, {"promo": MIB})


async def test_an_allowance_backdated_beyond_the_tolerance_is_valid_at_server_time(
    engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """Stamped a day before the allowance existed, the request is rated at server time,
    when the allowance is valid: it pays (band, period and validity all at server time)."""
    allowance = bucket(
        "promo", "units", 5 * MIB, unit="octets", priority=10, valid_from=NOW, services=["data"]
    )
    await create_account(r, "a1", identities=(MSISDN,), buckets=[allowance])
    clock.now = NOW + 100
    stamp = NOW - 86400
    grant = await one_grant(engine, data_request("s1", INITIAL, 0, requested=MIB, timestamp=stamp))
    assert grant.granted == MIB
    grant = await one_grant(engine, data_request("s1", TERMINATE, 1, used=MIB, timestamp=stamp))
    assert grant.cost == 0
    assert (await get_buckets(r, "a1"))["promo"]["amount"] == 4 * MIB
    [record] = await read_records(r, "a1")
    assert (record["start"], record["end"]) == (NOW + 100, NOW + 100)


# ------------------------------------------------------------------ the bill period


def tiered_catalog() -> Catalog:
    return tiered_data_catalog("clock-tiers", [(10 * MIB, 500_000)])


@pytest.fixture(params=[0, 30], ids=["no-account-cache", "account-cache"])
async def tier_engine(
    request: pytest.FixtureRequest, r: aioredis.Redis, clock: Clock
) -> AsyncIterator[ChargingEngine]:
    yield engine_on(r, tiered_catalog(), clock, EngineSettings(account_cache_ttl=request.param))


async def usage_of(r: aioredis.Redis, period: str) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = await r.hgetall(keys.period_usage("a1", period))
    return found


async def test_usage_stamped_in_november_counts_in_november(
    tier_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """10 MiB already used in November: a session stamped 30 November 23:58:30 and
    23:59:30, arriving 30 s and 90 s into December, is November's usage at November's
    tier (0.50 EUR/MiB: 1 EUR for 2 MiB; today's code rated it at December's empty
    usage, 2 EUR, and counted it in December). December's first MiB then costs 1 EUR."""
    engine = tier_engine
    await create_account(r, "a1", balance=100 * EUR, plan="tiered", identities=(MSISDN,))
    await r.hset(keys.period_usage("a1", "2025-11-01"), "data", str(10 * MIB))
    clock.now = DECEMBER + 30
    grant = await one_grant(
        engine, data_request("s1", INITIAL, 0, requested=2 * MIB, timestamp=DECEMBER - 90)
    )
    assert grant.granted == 2 * MIB
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == EUR  # 2 MiB at 0.50
    clock.now = DECEMBER + 90
    grant = await one_grant(
        engine, data_request("s1", TERMINATE, 1, used=2 * MIB, timestamp=DECEMBER - 30)
    )
    assert grant.cost == EUR
    assert await usage_of(r, "2025-11-01") == {b"data": str(12 * MIB).encode()}
    assert await usage_of(r, "2025-12-01") == {}
    # December: its own count, from 0 (1 EUR/MiB)
    clock.now = DECEMBER + 120
    await one_grant(engine, data_request("s2", INITIAL, 0, requested=MIB, timestamp=DECEMBER + 120))
    clock.now = DECEMBER + 180
    grant = await one_grant(
        engine, data_request("s2", TERMINATE, 1, used=MIB, timestamp=DECEMBER + 180)
    )
    assert grant.cost == EUR
    assert await usage_of(r, "2025-12-01") == {b"data": str(MIB).encode()}
    assert await money(r, "a1") == 100 * EUR - 2 * EUR
    first, second = await read_records(r, "a1")
    assert (first["start"], first["end"], first["charged"]) == (DECEMBER - 90, DECEMBER - 30, EUR)
    assert (second["start"], second["end"]) == (DECEMBER + 120, DECEMBER + 180)


def debit(session: str, stamp: int) -> ChargingRequest:
    return ChargingRequest(
        session_id=session,
        request_type=RequestType.EVENT,
        request_number=0,
        identities=[MSISDN],
        service_context=DATA_CTX,
        services=[ServiceUsage(rating_group=10, requested=MIB)],
        timestamp=stamp,
        peer="pgw.example",
        action=EventAction.DIRECT_DEBITING,
    )


async def test_one_batch_rates_each_request_in_its_own_bill_period(
    tier_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """Two debits of one account in one batch, at 00:00:05 on 1 December: one stamped
    10 s before midnight (November: 10 MiB used, 0.50 EUR), one 5 s after (December:
    nothing used, 1 EUR); each counts in its own period."""
    engine = tier_engine
    await create_account(r, "a1", balance=100 * EUR, plan="tiered", identities=(MSISDN,))
    await r.hset(keys.period_usage("a1", "2025-11-01"), "data", str(10 * MIB))
    clock.now = DECEMBER + 5
    late, early = await engine.charge([debit("nov", DECEMBER - 10), debit("dec", DECEMBER + 5)])
    assert (late.outcome, early.outcome) == (Outcome.OK, Outcome.OK)
    assert (late.cost, early.cost) == (EUR // 2, EUR)
    assert await usage_of(r, "2025-11-01") == {b"data": str(11 * MIB).encode()}
    assert await usage_of(r, "2025-12-01") == {b"data": str(MIB).encode()}
    assert await money(r, "a1") == 100 * EUR - EUR - EUR // 2


async def test_an_account_with_another_cycle_day_is_read_in_its_period(
    tier_engine: ChargingEngine, r: aioredis.Redis, clock: Clock
) -> None:
    """Cycle day 15, not yet known to the engine (it guesses day 1): a debit stamped
    14 November 23:59:50 (server time 15 November 00:00:05) is rated in the period of
    15 October, where 10 MiB were used."""
    engine = tier_engine
    fifteenth = DECEMBER - 16 * 86400  # 2025-11-15 00:00 UTC
    await create_account(
        r, "a1", balance=100 * EUR, plan="tiered", identities=(MSISDN,), bill_cycle_day=15
    )
    await r.hset(keys.period_usage("a1", "2025-10-15"), "data", str(10 * MIB))
    clock.now = fifteenth + 5
    [result] = await engine.charge([debit("oct", fifteenth - 10)])
    assert (result.outcome, result.cost) == (Outcome.OK, EUR // 2)
    [result] = await engine.charge([debit("nov", fifteenth + 5)])
    assert (result.outcome, result.cost) == (Outcome.OK, EUR)
    assert await usage_of(r, "2025-10-15") == {b"data": str(11 * MIB).encode()}
    assert await usage_of(r, "2025-11-15") == {b"data": str(MIB).encode()}


class UntrustedCounter(NoObserver):
    """Counts the requests the engine rated at server time for their Event-Timestamp."""

    def __init__(self) -> None:
        self.untrusted = 0

    def untrusted_timestamps(self, requests: int) -> None:
        self.untrusted += requests


async def test_the_engine_counts_the_timestamps_it_did_not_trust(
    r: aioredis.Redis, demo_pair: tuple[Catalog, Rater]
) -> None:
    await create_account(r, "a1", identities=(MSISDN,))
    counter = UntrustedCounter()
    engine = ChargingEngine(r, lambda: demo_pair, clock=Clock(NOW), observer=counter)
    stamps = [NOW, NOW - 300, NOW + 300, NOW - 301, NOW + 86400]
    requests = [debit(f"e{n}", stamp) for n, stamp in enumerate(stamps)]
    results = await engine.charge(requests)
    assert [result.outcome for result in results] == [Outcome.OK] * 5
    assert counter.untrusted == 2
    [result] = await engine.charge([debit("e9", NOW + 10)])
    assert counter.untrusted == 2
