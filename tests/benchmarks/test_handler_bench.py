"""One CCR-Update end to end below the socket: bytes in, CCA bytes out.

Decode with our codec, parse in the Gy handler, charge through the engine against a
real redis-server (ccr.lua: commit, release, reserve), build and encode the CCA: the
whole request path except the TCP read and write. Skipped in the default run; the
plain test at the end checks the benchmarked path answers what it should.

    pytest tests/benchmarks/test_handler_bench.py --benchmark-only --benchmark-enable
"""

from __future__ import annotations

import itertools

import pytest
import redis.asyncio as aioredis

from ocs.gy.application import CreditControlApplication
from ocs.metrics import Metrics
from protocol.dictionary import constants as c
from protocol.messages import Codec, LocalIdentity
from quota_engine.catalog import load_demo_catalog
from quota_engine.charging.engine import ChargingEngine
from quota_engine.charging.rating import Rater
from quota_engine.store.redis_link import RedisLink
from tests.charging import messages as m
from tests.quota_engine.conftest import create_account

MSISDN = "491700001234"


@pytest.fixture
def handler(loop, redis_url):
    catalog = load_demo_catalog()
    pair = (catalog, Rater(catalog))
    client = aioredis.Redis.from_url(redis_url)
    # as in ocs serve: a timeout (redis.timeout) and the metrics' observer
    observer = Metrics(process=False).redis.client("charging")
    link = loop.run_until_complete(RedisLink.connect(redis_url, timeout=1.0, observer=observer))
    codec = Codec(LocalIdentity("ocs.bench.net", "bench.net"))
    engine = ChargingEngine(client, lambda: pair, link=link)
    application = CreditControlApplication(codec, engine)
    numbers = itertools.count(1)

    async def setup():
        await create_account(client, "bench", balance=2**50, identities=(f"msisdn:{MSISDN}",))
        opening = m.ccr(
            "pgw;bench;1",
            subscriptions=(("msisdn", MSISDN),),
            services=[m.mscc(10, requested=m.rsu())],
        )
        await application.handle([codec.decode(opening.as_bytes())], None)

    def one_update() -> bytes:
        data = m.ccr(
            "pgw;bench;1",
            m.UPDATE,
            next(numbers),
            subscriptions=(("msisdn", MSISDN),),
            services=[m.mscc(10, requested=m.rsu(), used=[m.usu(octets=m.MIB)])],
        ).as_bytes()
        return data

    async def serve(data: bytes) -> bytes:
        request = codec.decode(data)
        (answer,) = await application.handle([request], None)
        return codec.encode_answer(request.header, answer, request.get(c.AVP_SESSION_ID))

    loop.run_until_complete(setup())
    yield one_update, serve
    loop.run_until_complete(link.aclose())
    loop.run_until_complete(client.aclose())


def test_bench_ccr_update_bytes_to_cca_bytes(benchmark, loop, handler):
    one_update, serve = handler
    benchmark.pedantic(
        lambda data: loop.run_until_complete(serve(data)),
        setup=lambda: ((one_update(),), {}),
        rounds=2000,
    )


def test_benchmarked_path_answers_2001_with_a_grant(loop, handler):
    one_update, serve = handler
    answer = m.answer_of(loop.run_until_complete(serve(one_update())))
    assert answer.result_code == 2001
    grant = m.mscc_by_group(answer)[10]
    assert grant.granted_service_unit.cc_total_octets == 10 * m.MIB
