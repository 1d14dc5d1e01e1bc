"""Redis client benchmark: the hot path's pipeline shape through redis-py's asyncio
pipeline and through :class:`~quota_engine.store.redis_link.RedisLink`, against the
session's private redis-server on 127.0.0.1.

One round is one pipeline of 16 ``EVALSHA`` calls (a small script: HINCRBY and HGET
on its key) and 16 ``HMGET`` of five account fields, the shape of a batch of 16
charging requests, executed with ``raise_on_error=False`` as ``ScriptPipeline``
does. The "ten at once" pair runs ten such pipelines concurrently (redis-py: on
pooled connections; RedisLink: all in flight on its one connection).

Run with ``pytest tests/benchmarks/test_redis_link_bench.py --benchmark-only
--benchmark-enable``. Skipped in the default run (``--benchmark-skip``); the plain
test at the end always runs (when this file is named) and checks that both clients
answer the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from quota_engine.store.redis_link import RedisLink
from quota_engine.store.scripts import LuaScript

CALLS = 16
FIELDS = ("status", "kind", "currency", "plan", "bill_cycle_day")
SCRIPT = LuaScript(
    "redis.call('HINCRBY', KEYS[1], 'n', ARGV[1]) return redis.call('HGET', KEYS[1], 'v')",
    "bench",
)


@pytest.fixture
def clients(loop, redis_url):
    redis_py = aioredis.Redis.from_url(redis_url)
    link = RedisLink.from_url(redis_url)

    async def setup():
        for i in range(CALLS):
            await redis_py.hset(f"bench:acct:{{{i}}}", mapping=dict.fromkeys(FIELDS, "x"))
            await redis_py.hset(f"bench:s:{{{i}}}", mapping={"v": f"value-{i}", "n": 0})
        await SCRIPT.load(redis_py)
        await link.ensure_connected()

    loop.run_until_complete(setup())
    yield redis_py, link
    loop.run_until_complete(redis_py.aclose())
    loop.run_until_complete(link.aclose())


async def one_round(client: Any) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for i in range(CALLS):
        pipe.execute_command("EVALSHA", SCRIPT.sha, 1, f"bench:s:{{{i}}}", 1)
        pipe.hmget(f"bench:acct:{{{i}}}", FIELDS)
    return await pipe.execute(raise_on_error=False)


async def ten_at_once(client: Any) -> list[list[Any]]:
    return await asyncio.gather(*(one_round(client) for _ in range(10)))


CLIENTS = {"redis-py": 0, "RedisLink": 1}


@pytest.mark.parametrize("name", CLIENTS)
def test_bench_one_pipeline(benchmark, loop, clients, name):
    benchmark.group = "16 EVALSHA + 16 HMGET"
    client = clients[CLIENTS[name]]
    benchmark(lambda: loop.run_until_complete(one_round(client)))


@pytest.mark.parametrize("name", CLIENTS)
def test_bench_ten_pipelines_at_once(benchmark, loop, clients, name):
    benchmark.group = "ten such pipelines at once"
    client = clients[CLIENTS[name]]
    benchmark(lambda: loop.run_until_complete(ten_at_once(client)))


def test_both_clients_answer_the_same(loop, clients):
    redis_py, link = clients
    expected = []
    for i in range(CALLS):
        expected += [f"value-{i}".encode(), [b"x"] * len(FIELDS)]
    assert loop.run_until_complete(one_round(redis_py)) == expected
    assert loop.run_until_complete(one_round(link)) == expected
    assert loop.run_until_complete(ten_at_once(link)) == [expected] * 10
    counts = loop.run_until_complete(redis_py.hget("bench:s:{0}", "n"))
    assert counts == b"12"  # 1 + 1 + 10 script runs on each key
