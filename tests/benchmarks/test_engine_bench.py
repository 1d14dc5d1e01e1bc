"""Charging engine benchmark: CCR-Updates through ChargingEngine.charge against a real
redis-server (the session's private one, on 127.0.0.1), demo catalog.

Run with ``pytest tests/benchmarks/test_engine_bench.py --benchmark-only
--benchmark-enable`` (or ``make bench``). Skipped in the default run
(``--benchmark-skip``); the plain test at the end always runs (when this file is
named) and checks that the benchmarked calls charge what they should.

Each round is one new CCR-U (the next request number of an open data session, 1 MiB
used, a default grant asked), so each round runs ccr.lua for real: commit, release,
reserve, session write, idempotency write; not a replay of a stored result.
"""

from __future__ import annotations

import itertools

import pytest
import redis.asyncio as aioredis

from ocs.metrics import Metrics
from quota_engine.catalog import load_demo_catalog
from quota_engine.charging.engine import ChargingEngine
from quota_engine.charging.rating import Rater
from quota_engine.model import Outcome, RequestType
from quota_engine.store.redis_link import RedisLink
from tests.quota_engine.conftest import MIB, Clock, create_account, data_request

BALANCE = 2**50


@pytest.fixture
def engine(loop, redis_url):
    catalog = load_demo_catalog()
    pair = (catalog, Rater(catalog))
    client = aioredis.Redis.from_url(redis_url)
    # as in ocs serve: a timeout (redis.timeout) and the metrics' observer
    observer = Metrics(process=False).redis.client("charging")
    link = loop.run_until_complete(RedisLink.connect(redis_url, timeout=1.0, observer=observer))
    engine = ChargingEngine(client, lambda: pair, clock=Clock(), link=link)

    async def setup():
        identities = tuple(f"msisdn:4917{n:08d}" for n in range(10))
        await create_account(client, "bench", balance=BALANCE, identities=identities)
        await engine.charge(
            [
                data_request(f"s{n}", RequestType.INITIAL, 0, identity=identities[n])
                for n in range(10)
            ]
        )

    loop.run_until_complete(setup())
    yield engine
    loop.run_until_complete(link.aclose())
    loop.run_until_complete(client.aclose())


def updates(batch: int):
    counter = itertools.count(1)

    def make():
        n = next(counter)
        return [
            data_request(f"s{s}", RequestType.UPDATE, n, identity=f"msisdn:4917{s:08d}", used=MIB)
            for s in range(batch)
        ]

    return make


def test_bench_one_ccr_update(benchmark, loop, engine):
    make = updates(1)
    benchmark(lambda: loop.run_until_complete(engine.charge(make())))


def test_bench_batch_of_ten_ccr_updates(benchmark, loop, engine):
    """Ten requests that arrived together: one pipeline, ten script calls."""
    make = updates(10)
    benchmark(lambda: loop.run_until_complete(engine.charge(make())))


def test_benchmarked_calls_charge_correctly(loop, engine):
    make = updates(10)
    for _ in range(3):
        results = loop.run_until_complete(engine.charge(make()))
        assert all(r.outcome is Outcome.OK for r in results)
        assert all(r.services[0].granted == 10 * MIB for r in results)
        assert all(r.services[0].cost == 1_000_000 for r in results)
    sessions = loop.run_until_complete(engine.sessions_of("bench"))
    assert len(sessions) == 10 and all(s["request_number"] == 3 for s in sessions)
