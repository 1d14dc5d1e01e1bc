"""Many sessions on one prepaid account at once, through two engines on separate
connections: the balance never goes negative and every micro-unit is accounted for."""

from __future__ import annotations

import asyncio
import random

import redis.asyncio as aioredis

from quota_engine.charging.engine import ChargingEngine
from quota_engine.model import Outcome
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    TERMINATE,
    UPDATE,
    create_account,
    data_request,
    get_buckets,
)

SESSIONS = 200
INITIAL_BALANCE = 37 * EUR + 123_456  # far less than 200 sessions want


async def test_200_concurrent_sessions_on_one_shared_balance(redis_url, demo_pair, clock):
    identities = tuple(f"msisdn:4917000{n:05d}" for n in range(4))
    setup = aioredis.Redis.from_url(redis_url)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    engines = [ChargingEngine(c, lambda: demo_pair, clock=clock) for c in clients]
    await create_account(setup, "shared", balance=INITIAL_BALANCE, identities=identities)
    rng = random.Random(20250307)
    plans = [(rng.randint(1, 5) * MIB, rng.randint(1, 4) * MIB, rng.random()) for _ in range(200)]
    violations: list[str] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            main = (await get_buckets(setup, "shared"))["main"]
            if main["amount"] < 0 or not 0 <= main["reserved"] <= main["amount"]:
                violations.append(f"amount {main['amount']} reserved {main['reserved']}")
            await asyncio.sleep(0)

    async def session(n: int) -> None:
        engine = engines[n % 2]
        sid = f"pgw;{n}"
        identity = identities[n % len(identities)]
        first, second, share = plans[n]
        [res] = await engine.charge(
            [data_request(sid, INITIAL, 0, identity=identity, requested=first)]
        )
        granted = res.services[0].granted
        assert granted <= first
        await asyncio.sleep(0)
        # use the whole grant, ask for more
        [res] = await engine.charge(
            [data_request(sid, UPDATE, 1, identity=identity, used=granted, requested=second)]
        )
        again = res.services[0]
        assert again.granted <= second
        assert again.granted > 0 or again.outcome is Outcome.CREDIT_LIMIT_REACHED
        await asyncio.sleep(0)
        used = int(again.granted * share)
        await engine.charge(
            [data_request(sid, TERMINATE, 2, identity=identity, used=used, requested=None)]
        )

    watcher = asyncio.create_task(monitor())
    try:
        await asyncio.gather(*(session(n) for n in range(SESSIONS)))
    finally:
        done.set()
        await watcher
    main = (await get_buckets(setup, "shared"))["main"]
    records = await read_records(setup, "shared", count=None)
    for client in (setup, *clients):
        await client.aclose()
    assert violations == []
    assert main["reserved"] == 0 and main["amount"] >= 0
    assert main["amount"] + sum(rec["charged"] for rec in records) == INITIAL_BALANCE
    assert len({rec["id"] for rec in records}) == len(records)
    # the balance was actually exhausted: the test exercised the limit
    assert main["amount"] < 1 * EUR
    assert sum(rec["money"].get("main", 0) for rec in records) == INITIAL_BALANCE - main["amount"]
