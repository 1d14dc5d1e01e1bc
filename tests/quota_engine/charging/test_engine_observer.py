"""The engine reports to its observer: batch sizes, cache hits and misses, stale
reruns and failed requests (counts only)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from quota_engine.charging.engine import ChargingBatchError, ChargingEngine
from quota_engine.charging.observer import NO_OBSERVER, EngineObserver
from quota_engine.charging.periods import bill_period
from quota_engine.store import keys
from quota_engine.store.redis_link import RedisAddress, RedisLink
from tests.quota_engine.charging.test_account_cache import MSISDN, catalog_pair, request
from tests.quota_engine.conftest import EUR, INITIAL, NOW, TERMINATE, create_account, data_request


class Recorder:
    """An observer that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def charge_batch(self, requests: int) -> None:
        self.calls.append(("batch", requests))

    def cache_lookups(self, cache: str, hits: int, misses: int) -> None:
        self.calls.append((cache, hits, misses))

    def stale_requests(self, requests: int) -> None:
        self.calls.append(("stale", requests))

    def failed_requests(self, requests: int) -> None:
        self.calls.append(("failed", requests))

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
async def account(r):
    await create_account(r, "A1", plan="basic", identities=(MSISDN,), balance=100 * EUR)
    return "A1"


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(r, clock, recorder) -> ChargingEngine:
    pair = catalog_pair()
    return ChargingEngine(r, lambda: pair, clock=clock, observer=recorder)


def test_the_default_observer_and_the_recorder_fit_the_protocol():
    observers: list[EngineObserver] = [NO_OBSERVER, Recorder()]
    for observer in observers:
        observer.charge_batch(1)
        observer.cache_lookups("identity", 1, 0)


async def test_misses_then_hits(engine, recorder, account):
    unknown = data_request("s9", INITIAL, 0, identity="msisdn:490000000000")
    await engine.charge([request("s1", INITIAL, 0), unknown])
    assert recorder.take() == [("batch", 2), ("identity", 0, 2), ("account", 0, 1)]
    await engine.charge([request("s1", TERMINATE, 1, 1000)])
    assert recorder.take() == [("batch", 1), ("identity", 1, 0), ("account", 1, 0)]


async def test_a_request_rated_from_an_outdated_copy_is_reported_stale(
    engine, recorder, account, r
):
    await engine.charge([request("s1", INITIAL, 0)])
    await r.hset(keys.account(account), "plan", "cheap")
    recorder.take()
    await engine.charge([request("s2", INITIAL, 0)])
    assert recorder.take() == [
        ("batch", 1),
        ("identity", 1, 0),
        ("account", 1, 0),  # the cached copy, still fresh by its TTL...
        ("stale", 1),  # ...is refused by the script
        ("account", 0, 1),  # the copy was dropped: the account is read again
    ]


async def test_requests_that_fail_are_reported(engine, recorder, account, r):
    # a usage value Lua reads but Python does not: every run is stale (see test_account_cache)
    await r.hset(keys.period_usage(account, bill_period(NOW, 1)), "data", "6e6")
    with pytest.raises(ChargingBatchError):
        await engine.charge([request("s1", INITIAL, 0)])
    calls = recorder.take()
    assert calls.count(("stale", 1)) == 3 and calls[-1] == ("failed", 1)


async def test_a_batch_that_fails_whole_reports_all_its_requests(r, clock, recorder, free_port):
    pair = catalog_pair()
    link = RedisLink(RedisAddress(host="127.0.0.1", port=free_port()))
    engine = ChargingEngine(r, lambda: pair, clock=clock, link=link, observer=recorder)
    with pytest.raises(RedisConnectionError):
        await engine.charge([request("s1", INITIAL, 0), request("s2", INITIAL, 0)])
    assert recorder.take()[-1] == ("failed", 2)
