"""The sweeper settles sessions whose CCR-TERMINATE never came, once, from any number of
processes, and repairs the global deadline index as it goes."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from quota_engine.charging.sweeper import Sweeper, settle_account, sweep_expired
from quota_engine.model import Outcome
from quota_engine.store import keys
from quota_engine.store.records import read_records
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    NOW,
    UPDATE,
    Clock,
    create_account,
    data_request,
    get_buckets,
)

DEADLINE = NOW + 100 + 1800 + 60  # last request at NOW + 100, validity 1800, grace 60


async def open_session(engine, r, clock, session="s1"):
    clock.now = NOW
    await engine.charge([data_request(session, INITIAL, 0)])
    clock.now = NOW + 100
    await engine.charge([data_request(session, UPDATE, 1, used=3 * MIB, timestamp=NOW + 100)])


async def test_expired_session_is_settled_with_an_expired_record(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await open_session(engine, r, clock)
    assert await r.zscore(keys.DEADLINES, "a1|s1") == DEADLINE
    assert await engine.sweep(DEADLINE - 1) == 0
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 10 * EUR
    assert await engine.sweep(DEADLINE) == 1
    main = (await get_buckets(r, "a1"))["main"]
    # the 3 MiB reported stay charged (3 EUR); the open 10 MiB reservation is released
    assert (main["amount"], main["reserved"]) == (22 * EUR, 0)
    [rec] = await read_records(r, "a1")
    assert (rec["id"], rec["cause"]) == ("s1;2;10", "expired")
    assert (rec["used"], rec["charged"], rec["money"]) == (
        {"octets": 3 * MIB},
        3 * EUR,
        {"main": 3 * EUR},
    )
    assert (rec["start"], rec["end"]) == (NOW, NOW + 100)
    assert await engine.sessions_of("a1") == []
    assert await r.zcard(keys.DEADLINES) == 0
    # the late CCR-UPDATE finds no session
    [late] = await engine.charge([data_request("s1", UPDATE, 2, used=MIB)])
    assert late.outcome is Outcome.UNKNOWN_SESSION
    assert await engine.sweep(DEADLINE + 10_000) == 0  # nothing twice


async def test_index_entries_are_repaired(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await open_session(engine, r, clock)
    # a stale (too early) score, an entry for a session that is gone, a malformed one
    await r.zadd(keys.DEADLINES, {"a1|s1": NOW, "a1|gone": NOW, "garbage": NOW})
    assert await sweep_expired(r, NOW + 200) == 0
    assert await r.zrange(keys.DEADLINES, 0, -1, withscores=True) == [(b"a1|s1", DEADLINE)]
    assert (await get_buckets(r, "a1"))["main"]["reserved"] == 10 * EUR


async def test_concurrent_sweepers_settle_once(engine, r, clock, redis_url):
    await create_account(r, "a1", balance=100 * EUR, identities=("msisdn:491700000001",))
    for n in range(5):
        await open_session(engine, r, clock, session=f"s{n}")
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    try:
        counts = await asyncio.gather(*(sweep_expired(c, DEADLINE, limit=3) for c in clients))
        counts += await asyncio.gather(*(sweep_expired(c, DEADLINE) for c in clients))
    finally:
        for client in clients:
            await client.aclose()
    assert sum(counts) == 5
    records = await read_records(r, "a1")
    assert sorted(rec["id"] for rec in records) == [f"s{n};2;10" for n in range(5)]
    main = (await get_buckets(r, "a1"))["main"]
    assert (main["amount"], main["reserved"]) == (100 * EUR - 5 * 3 * EUR, 0)


async def test_settle_account_works_without_the_global_index(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await open_session(engine, r, clock)
    await r.delete(keys.DEADLINES)
    assert await settle_account(r, "a1", DEADLINE - 1) == 0
    assert await settle_account(r, "a1", DEADLINE) == 1
    assert [rec["cause"] for rec in await read_records(r, "a1")] == ["expired"]


async def test_sweeper_run_loop_until_stopped(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    sweep_clock = Clock(DEADLINE)
    for session, target in (("s1", engine), ("s2", r)):  # an engine or a bare Redis client
        await open_session(engine, r, clock, session)
        sweeper = Sweeper(target, interval=0.01, clock=sweep_clock)
        stop = asyncio.Event()
        task = asyncio.create_task(sweeper.run(stop))
        for _ in range(200):
            if not await r.exists(keys.session("a1", session)):
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        assert sweeper.settled == 1
    records = await read_records(r, "a1")
    assert [(rec["session"], rec["cause"]) for rec in records] == [
        ("s1", "expired"), ("s2", "expired"),
    ]  # fmt: skip


async def test_sweeper_loops_while_rounds_are_full_even_of_junk(engine, r, clock):
    await create_account(r, "a1", balance=25 * EUR, identities=("msisdn:491700000001",))
    await open_session(engine, r, clock)
    # due entries of sessions that are gone, ahead of the real expired one
    await r.zadd(keys.DEADLINES, {f"a1|gone{n}": NOW for n in range(5)})
    sweeper = Sweeper(r, interval=3600, limit=2, clock=Clock(DEADLINE))
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run(stop))
    for _ in range(200):
        if sweeper.settled:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sweeper.settled == 1
    assert await r.zcard(keys.DEADLINES) == 0


async def test_sweeper_survives_redis_errors(clock):
    # nobody listens; no retries with back-off (redis-py's default waits seconds)
    client = aioredis.Redis(port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0))
    sweeper = Sweeper(client, interval=0.01, clock=clock)
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run(stop))
    await asyncio.sleep(0.1)
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    await client.aclose()
