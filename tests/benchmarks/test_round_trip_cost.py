"""CPU per CCR on both sides of the Redis round trip, by batch size.

Not a timing benchmark: for batches of 1, 2, 8 and 32 requests, data sessions
(CCR-I, two CCR-U, CCR-T) go through ChargingEngine.charge on a RedisLink (as in
``ocs serve``) against a private redis-server with AOF, and the test prints the CPU
time this process spent per request (``time.process_time``) and the CPU time the
redis-server spent per request (``INFO cpu``), plus the time Redis' command
statistics account for. The difference between the two Redis figures is what a
round trip costs the server beyond the commands (reading, parsing, writing, the
event loop, the AOF write). docs/benchmarks.md quotes it; run with

    .venv/bin/pytest tests/benchmarks/test_round_trip_cost.py -s -p no:cacheprovider
"""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from ocs.embedded_redis import EmbeddedRedis
from quota_engine.catalog import load_demo_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.model import Outcome, RequestType
from quota_engine.store.redis_link import RedisLink
from tests.quota_engine.conftest import MIB, NOW, create_account, data_request

SESSIONS = 512
STEPS = [
    (RequestType.INITIAL, 0, 0),
    (RequestType.UPDATE, 1, MIB),
    (RequestType.UPDATE, 2, MIB),
    (RequestType.TERMINATE, 3, MIB // 2),
]


async def redis_cpu(client: aioredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def command_seconds(client: aioredis.Redis) -> float:
    stats = await client.info("commandstats")
    return sum(float(s["usec"]) for s in stats.values()) / 1e6


@pytest.mark.parametrize("batch", [1, 2, 8, 32])
async def test_cpu_per_request_by_batch_size(tmp_path, batch):
    server = EmbeddedRedis(tmp_path, appendonly=True)
    url = server.start()
    client = aioredis.Redis.from_url(url)
    link = await RedisLink.connect(url)
    try:
        catalog = load_demo_catalog()
        pair = (catalog, Rater(catalog))
        engine = ChargingEngine(
            client, lambda: pair, EngineSettings(), clock=lambda: NOW, link=link
        )
        identities = [f"msisdn:4917{n:08d}" for n in range(SESSIONS)]
        for n, identity in enumerate(identities):
            await create_account(client, f"a{n}", balance=10**12, identities=(identity,))
        await client.config_resetstat()
        redis_before, ours_before = await redis_cpu(client), time.process_time()
        for kind, number, used in STEPS:
            for start in range(0, SESSIONS, batch):
                requests = [
                    data_request(
                        f"s{n}",
                        kind,
                        number,
                        identity=identities[n],
                        used=used,
                        requested=None if kind is RequestType.TERMINATE else 0,
                    )
                    for n in range(start, start + batch)
                ]
                results = await engine.charge(requests)
                assert all(r.outcome is Outcome.OK for r in results)
        ours = time.process_time() - ours_before
        redis_total = await redis_cpu(client) - redis_before
        commands = await command_seconds(client)
    finally:
        await link.aclose()
        await client.aclose()
        server.stop()
    count = SESSIONS * len(STEPS)
    print(
        f"\nbatch {batch:3}: OCS process {ours / count * 1e6:6.0f} µs/request, "
        f"redis-server {redis_total / count * 1e6:6.0f} µs/request "
        f"(commands {commands / count * 1e6:5.1f} µs)"
    )
