"""The session's rating context (issue 9, item 1): the inputs of rating that many network
elements send only in CCR-Initial (destination, visited network, APN) are remembered by
the session, and a later request that omits one is rated with the remembered value,
on any node. Prices from the demo catalog: data at home 1 EUR per MiB, "eu" zone 2 EUR,
"world" zone 10 EUR (MiB blocks); voice national 0.10 EUR per minute (60/60),
international (the table's default) 0.50 EUR per minute (30/6)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgpack
import pytest
import redis.asyncio as aioredis

from quota_engine.catalog import Catalog
from quota_engine.charging.engine import ChargingEngine
from quota_engine.charging.observer import CacheName
from quota_engine.charging.rating import Rater
from quota_engine.model import ChargingRequest, Outcome, RequestType, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
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
    data_request,
    money,
)

WORLD = "310260"  # a US network: zone "world"
EU = "20801"  # a French network: zone "eu"
NATIONAL = "4930123456"


class CountingObserver:
    """Counts the engine's stale reruns and account reads."""

    def __init__(self) -> None:
        self.stale = 0
        self.account_misses = 0

    def charge_batch(self, requests: int) -> None:
        pass

    def cache_lookups(self, cache: CacheName, hits: int, misses: int) -> None:
        if cache == "account":
            self.account_misses += misses

    def stale_requests(self, requests: int) -> None:
        self.stale += requests

    def failed_requests(self, requests: int) -> None:
        pass


def make_engine(
    r: aioredis.Redis, pair: tuple[Catalog, Rater], clock: Clock
) -> tuple[ChargingEngine, CountingObserver]:
    observer = CountingObserver()
    return ChargingEngine(r, lambda: pair, clock=clock, observer=observer), observer


@pytest.fixture
async def two_nodes(
    r: aioredis.Redis, demo_pair: tuple[Catalog, Rater], clock: Clock
) -> AsyncIterator[tuple[tuple[ChargingEngine, CountingObserver], ...]]:
    """Two OCS nodes (engines with their own caches) on one Redis."""
    yield make_engine(r, demo_pair, clock), make_engine(r, demo_pair, clock)


async def one(engine: ChargingEngine, request: ChargingRequest):
    [result] = await engine.charge([request])
    assert result.outcome is Outcome.OK, result
    return result


def voice(kind: RequestType, number: int, *, destination: str | None, used: int = 0):
    return ChargingRequest(
        session_id="v1",
        request_type=kind,
        request_number=number,
        identities=[MSISDN],
        service_context=VOICE_CTX,
        services=[
            ServiceUsage(rating_group=100, requested=None if kind is TERMINATE else 0, used=used)
        ],
        timestamp=NOW,
        destination=destination,
    )


async def test_roaming_zone_of_the_initial_request_rates_every_report(engine, r):
    """World zone, visited network only in CCR-I, 1 MiB per report: every MiB at
    10 EUR (the code before issue 9 charged the second at the home rate: 11 EUR)."""
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0, requested=MIB, visited=WORLD))
    await one(engine, data_request("s1", UPDATE, 1, used=MIB, requested=MIB))
    await one(engine, data_request("s1", TERMINATE, 2, used=MIB, requested=None))
    assert await money(r, "a1") == 50 * EUR - 20 * EUR
    records = await read_records(r, "a1")
    assert [(rec["zone"], rec["charged"]) for rec in records] == [("world", 20 * EUR)]


async def test_eu_roaming_of_the_initial_request_rates_every_report(engine, r):
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0, requested=MIB, visited=EU))
    for n in (1, 2, 3):
        await one(engine, data_request("s1", UPDATE, n, used=MIB, requested=MIB))
    await one(engine, data_request("s1", TERMINATE, 4, used=MIB, requested=None))
    assert await money(r, "a1") == 50 * EUR - 8 * EUR  # 4 MiB at 2 EUR (not 2 + 3 * 1)


async def test_a_new_value_applies_from_that_report_on(engine, r):
    """The subscriber moves from a world network to an EU one: the CCR-U that says so
    commits its usage at the grant's (world) price and closes it as an interim record;
    the next grant and the reports after it, which say nothing, are priced in the EU."""
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(engine, data_request("s1", INITIAL, 0, requested=MIB, visited=WORLD))
    res = await one(engine, data_request("s1", UPDATE, 1, used=MIB, requested=MIB, visited=EU))
    assert res.services[0].cost == 10 * EUR
    res = await one(engine, data_request("s1", UPDATE, 2, used=MIB, requested=MIB))
    assert res.services[0].cost == 2 * EUR
    await one(engine, data_request("s1", TERMINATE, 3, used=MIB, requested=None))
    records = await read_records(r, "a1")
    assert [(rec["cause"], rec["zone"], rec["charged"]) for rec in records] == [
        ("interim", "world", 10 * EUR),
        ("normal", "eu", 4 * EUR),
    ]
    assert await money(r, "a1") == 50 * EUR - 14 * EUR


async def test_voice_call_is_rated_at_the_destination_of_the_initial_request(engine, r):
    """IMS-Information only in CCR-I: the CCR-U and CCR-T are rated at its (national)
    destination, not at the table's default class (international)."""
    await create_account(r, "a1", balance=10 * EUR, identities=(MSISDN,))
    [g] = (await one(engine, voice(INITIAL, 0, destination=NATIONAL))).services
    assert (g.outcome, g.granted) == (Outcome.OK, 300)
    for n in (1, 2):
        [g] = (await one(engine, voice(UPDATE, n, destination=None, used=60))).services
        assert (g.outcome, g.granted, g.cost) == (Outcome.OK, 300, 100_000)
    [g] = (await one(engine, voice(TERMINATE, 3, destination=None, used=60))).services
    assert (g.outcome, g.cost) == (Outcome.OK, 100_000)
    assert await money(r, "a1") == 10 * EUR - 300_000  # 3 minutes national
    [rec] = await read_records(r, "a1")
    assert rec["destination"] == "national" and rec["charged"] == 300_000


async def test_another_node_rates_with_the_session_context(two_nodes, r):
    """CCR-I on one node, the CCR-Us without service information on another, which never
    saw the CCR-I: the script refuses the first one rated without the context (stale,
    with the session's context), it is rated again with it, and from then on that
    node knows it: one run per request."""
    (node_a, _), (node_b, seen_b) = two_nodes
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(node_a, data_request("s1", INITIAL, 0, requested=MIB, visited=WORLD))
    res = await one(node_b, data_request("s1", UPDATE, 1, used=MIB, requested=MIB))
    assert res.services[0].cost == 10 * EUR
    assert seen_b.stale == 1
    misses = seen_b.account_misses
    res = await one(node_b, data_request("s1", UPDATE, 2, used=MIB, requested=MIB))
    assert res.services[0].cost == 10 * EUR
    assert seen_b.stale == 1  # no rerun: its cache knows the context now
    assert seen_b.account_misses == misses  # the context's rerun kept the account cache
    # back on the first node, the CCR-T too: every MiB at the world rate
    await one(node_a, data_request("s1", TERMINATE, 3, used=MIB, requested=None))
    assert await money(r, "a1") == 50 * EUR - 30 * EUR


async def test_a_change_made_on_another_node_reaches_this_one(two_nodes, r):
    """Node A caches "world"; node B learns "eu" from a CCR-U; A's next request, which
    carries nothing, is rated in the EU (its cache is outdated, the script says so)."""
    (node_a, seen_a), (node_b, _) = two_nodes
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(node_a, data_request("s1", INITIAL, 0, requested=MIB, visited=WORLD))
    await one(node_b, data_request("s1", UPDATE, 1, used=MIB, requested=MIB, visited=EU))
    res = await one(node_a, data_request("s1", UPDATE, 2, used=MIB, requested=MIB))
    assert res.services[0].cost == 2 * EUR and seen_a.stale == 1


async def test_the_session_stores_its_context(engine, r):
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    request = data_request("s1", INITIAL, 0, requested=MIB, visited=WORLD)
    request.apn = "internet"
    await one(engine, request)
    state = msgpack.unpackb(await r.get(keys.session("a1", "s1")), raw=True)
    assert state[b"rc"] == {b"v": WORLD.encode(), b"a": b"internet"}
    await one(engine, data_request("s1", UPDATE, 1, used=MIB, requested=MIB, visited=EU))
    [view] = await engine.sessions_of("a1")
    assert view["rating_context"] == {
        "destination": None,
        "visited_mcc_mnc": EU,
        "apn": "internet",
    }


async def test_a_session_without_context_needs_no_rerun(two_nodes, r):
    """A session whose requests never carry service information: another node's
    request matches the (empty) stored context at once."""
    (node_a, _), (node_b, seen_b) = two_nodes
    await create_account(r, "a1", balance=50 * EUR, identities=(MSISDN,))
    await one(node_a, data_request("s1", INITIAL, 0, requested=MIB))
    res = await one(node_b, data_request("s1", UPDATE, 1, used=MIB, requested=MIB))
    assert res.services[0].cost == 1 * EUR and seen_b.stale == 0
