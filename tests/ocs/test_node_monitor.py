"""The node metrics (ocs/metrics/node.py) and what feeds them: the sweeper's observer,
the catalog holder's, the sampler of the open-session counters, the event-loop lag
probe and the GC timer of ocs/node_monitor.py. Real redis-server, real engine."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from ocs.catalog_holder import CatalogHolder
from ocs.metrics import Metrics
from ocs.node_monitor import GcTimer, lag_probe, monitoring, sample_once
from quota_engine.catalog import load_demo_catalog
from quota_engine.charging.engine import ChargingEngine
from quota_engine.charging.rating import Rater
from quota_engine.charging.sweeper import Sweeper
from quota_engine.store import keys
from quota_engine.store.open_counts import read_open_counts
from tests.helpers import node_settings
from tests.ocs.test_catalog_holder import activate, version, wait_for
from tests.quota_engine.conftest import (
    EUR,
    INITIAL,
    MIB,
    NOW,
    UPDATE,
    Clock,
    create_account,
    data_request,
    voice_request,
)

DEADLINE = NOW + 1800 + 60  # validity 1800, grace 60


@pytest.fixture
async def r(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.now = NOW
    return clock


@pytest.fixture
def engine(r, clock) -> ChargingEngine:
    catalog = load_demo_catalog()
    pair = (catalog, Rater(catalog))
    return ChargingEngine(r, lambda: pair, clock=clock)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def unreachable() -> aioredis.Redis:
    """A client of a port nobody listens on, failing at once (no retries)."""
    return aioredis.Redis(port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0))


async def open_sessions(engine, r, count: int) -> None:
    await create_account(r, "a1", balance=100 * EUR, identities=("msisdn:491700000001",))
    for n in range(count):
        await engine.charge([data_request(f"s{n}", INITIAL, 0)])


# ------------------------------------------------------------------ the sweeper


async def test_sweeper_rounds_and_settled_sessions_are_counted(engine, r, clock):
    metrics = Metrics()
    await open_sessions(engine, r, 3)
    sweeper = Sweeper(engine, clock=clock, observer=metrics.node)
    clock.now = DEADLINE - 1
    assert await sweeper.sweep_once() == 0
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="ok") == 1
    assert value(metrics, "ocs_sweeper_settled_sessions_total") == 0
    clock.now = DEADLINE
    assert await sweeper.sweep_once() == 3
    assert await sweeper.sweep_once() == 0
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="ok") == 3
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="failed") == 0
    assert value(metrics, "ocs_sweeper_settled_sessions_total") == 3
    assert value(metrics, "ocs_sweeper_round_duration_seconds_count") == 3


async def test_failed_sweeper_rounds_are_counted_failed(clock, caplog):
    metrics = Metrics()
    client = unreachable()
    sweeper = Sweeper(client, interval=0.01, clock=clock, observer=metrics.node)
    with pytest.raises(RedisConnectionError):
        await sweeper.sweep_once()
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="failed") == 1
    stop = asyncio.Event()
    task = asyncio.create_task(sweeper.run(stop))
    while value(metrics, "ocs_sweeper_rounds_total", outcome="failed") < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    await client.aclose()
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="ok") == 0
    assert value(metrics, "ocs_sweeper_settled_sessions_total") == 0


async def test_a_round_with_a_failed_settle_is_counted_failed(engine, r, clock):
    """A settle script that fails (here: a session whose stored state is not msgpack)
    makes its round "failed", though the other sessions of the round are settled."""
    metrics = Metrics()
    await open_sessions(engine, r, 2)
    await r.set(keys.session("a1", "s1"), b"\xc1 not msgpack")
    sweeper = Sweeper(engine, clock=clock, observer=metrics.node)
    clock.now = DEADLINE
    assert await sweeper.sweep_once() == 1
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="failed") == 1
    assert value(metrics, "ocs_sweeper_rounds_total", outcome="ok") == 0
    assert value(metrics, "ocs_sweeper_settled_sessions_total") == 1


# ------------------------------------------------------------------ the catalog


async def test_catalog_version_and_load_time_follow_a_reload(r):
    metrics = Metrics()
    times = iter([1_000.0, 2_000.0])
    holder = CatalogHolder(retry_delay=0.05, observer=metrics.node, clock=lambda: next(times))
    await activate(r, version("v1"))
    await holder.start(r)
    try:
        assert value(metrics, "ocs_catalog_active_version", version="v1") == 1
        assert value(metrics, "ocs_catalog_loaded_timestamp_seconds") == 1_000.0
        await activate(r, version("v2"))  # announced on the channel: a hot reload
        await wait_for(holder, "v2")
    finally:
        await holder.stop()
    assert value(metrics, "ocs_catalog_active_version", version="v2") == 1
    assert value(metrics, "ocs_catalog_active_version", version="v1") is None  # one series
    assert value(metrics, "ocs_catalog_loaded_timestamp_seconds") == 2_000.0
    assert holder.activated_at == 2_000.0


# ------------------------------------------------------------------ the sample


async def test_the_sample_sets_the_gauges_from_the_counters(engine, r, clock):
    metrics = Metrics()
    await open_sessions(engine, r, 2)
    await engine.charge([voice_request("v1", INITIAL, 0)])
    await engine.charge([data_request("s0", UPDATE, 1, used=MIB)])
    await sample_once(r, metrics.node)
    counts = await read_open_counts(r)
    assert value(metrics, "ocs_sessions_open", service="data") == 2
    assert value(metrics, "ocs_sessions_open", service="voice") == 1
    assert value(metrics, "ocs_sessions_open", service="sms") == 0
    for service in ("data", "voice"):
        money = value(metrics, "ocs_reservations_money_micro_units", service=service)
        assert money == counts.money[service] > 0
    assert value(metrics, "ocs_reservations_units", service="data", unit="octets") == 20 * MIB
    assert (
        value(metrics, "ocs_reservations_units", service="voice", unit="seconds")
        == (counts.units["voice", "seconds"])
    )
    assert value(metrics, "ocs_sample_duration_seconds") > 0


async def test_monitoring_samples_at_once_and_survives_redis_errors(engine, r, caplog):
    metrics = Metrics()
    await open_sessions(engine, r, 1)
    settings = node_settings(metrics_sample_interval=0.01)
    async with monitoring(settings, r, metrics):
        while not value(metrics, "ocs_sessions_open", service="data"):
            await asyncio.sleep(0.01)
    client = unreachable()
    caplog.set_level(logging.WARNING, logger="ocs.node_monitor")
    async with monitoring(settings, client, metrics):
        while "sessions_sample_failed" not in caplog.text:
            await asyncio.sleep(0.01)
    await client.aclose()
    assert value(metrics, "ocs_sessions_open", service="data") == 1  # the last good sample


# ------------------------------------------------------------------ event loop and GC


async def test_the_lag_probe_sees_a_blocked_loop():
    seen: list[float] = []
    interval, block = 0.01, 0.2
    probe = asyncio.create_task(lag_probe(seen.append, interval))
    await asyncio.sleep(0)  # the probe is asleep, due ``interval`` from now
    time.sleep(block)  # noqa: ASYNC251 - blocking the loop is the point
    while not seen:
        await asyncio.sleep(0.001)
    probe.cancel()
    # it was due at most ``interval`` after the block began, and ran after it ended
    assert seen[0] >= block - interval


async def test_monitoring_observes_event_loop_lag():
    metrics = Metrics()
    async with monitoring(node_settings(), unreachable(), metrics, lag_interval=0.01):
        await asyncio.sleep(0.02)
        time.sleep(0.1)  # noqa: ASYNC251
        while not value(metrics, "ocs_event_loop_lag_seconds_count"):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
    assert value(metrics, "ocs_event_loop_lag_seconds_sum") >= 0.1 - 0.01
    assert value(metrics, "ocs_event_loop_lag_seconds_bucket", le="0.05") < value(
        metrics, "ocs_event_loop_lag_seconds_count"
    )


async def test_gc_pauses_are_timed_by_generation_while_monitoring():
    metrics = Metrics()

    def count(generation: str) -> float:
        result = value(metrics, "ocs_gc_pause_seconds_count", generation=generation)
        assert result is not None
        return result

    async def observed(generation: str, at_least: float) -> None:
        while count(generation) < at_least:
            await asyncio.sleep(0.005)

    monitor = monitoring(node_settings(), unreachable(), metrics, lag_interval=0.01)
    async with monitor:
        before = count("2")
        gc.collect()
        await observed("2", before + 1)  # handed over by the lag probe
        gc.collect(0)
        await observed("0", 1)
    after = count("2")
    assert after >= before + 1
    gc.collect()
    await asyncio.sleep(0.05)
    assert count("2") == after  # the callback is gone with the context
    # another node's monitoring in the same process counts each collection once
    async with monitoring(node_settings(), unreachable(), metrics):
        gc.collect()
    assert count("2") == after + 1  # flushed on exit


def test_the_gc_timer_installs_once_and_removes_cleanly():
    seen: list[tuple[int, float]] = []
    timer = GcTimer(lambda generation, seconds: seen.append((generation, seconds)))
    timer.install()
    timer.install()
    try:
        gc.collect(1)
    finally:
        timer.remove()
    timer.remove()  # harmless
    assert seen == []  # nothing observed from inside the collection
    timer.flush()
    assert [generation for generation, _ in seen] == [1]
    assert seen[0][1] >= 0
    assert timer not in gc.callbacks
    timer.flush()
    assert len(seen) == 1


def test_sessions_and_mscc_outcomes_use_one_service_table():
    """ocs_sessions_open{service} (the counters' classes) and ocs_diameter_mscc_total
    {service} (ocs/gy/observer.py) classify every context alike, in any case."""
    from ocs.gy.observer import service_of
    from quota_engine.store.open_counts import SERVICE_OF_CONTEXT, service_of_context

    for context in [*SERVICE_OF_CONTEXT, "32251@3GPP.ORG", "32274@3gpp.ORG", "x@example.net"]:
        assert service_of(context) == service_of_context(context)
    assert service_of("32251@3GPP.ORG") == "data"
