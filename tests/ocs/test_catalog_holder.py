"""ocs.catalog_holder against a real Redis: load, follow activations, swap atomically."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis

from ocs.catalog_holder import CatalogHolder, NoActiveCatalog
from quota_engine.charging.rating import Rater
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.quota_engine.catalogs import base_catalog


@pytest.fixture
async def r(redis_url):
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def holder():
    made = CatalogHolder(retry_delay=0.05)
    yield made
    await made.stop()


def version(name: str) -> dict:
    document = base_catalog()
    document["version"] = name
    return document


async def activate(r, document: dict) -> str:
    catalogs = CatalogStore(r)
    name = await catalogs.save(document)
    await catalogs.activate(name)
    return name


async def wait_for(holder: CatalogHolder, name: str, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while holder.version != name:
        assert loop.time() < deadline, f"holder still on {holder.version}, expected {name}"
        await asyncio.sleep(0.01)


async def test_start_loads_the_active_catalog(r, holder):
    await activate(r, version("v1"))
    await holder.start(r)
    catalog, rater = holder.current()
    assert catalog.version == "v1" and holder.version == "v1"
    assert isinstance(rater, Rater) and rater.catalog is catalog


def test_current_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="before start"):
        CatalogHolder().current()


async def test_no_active_catalog_is_an_error_unless_demo_is_allowed(r, holder):
    with pytest.raises(NoActiveCatalog, match="ocs provision"):
        await holder.start(r)
    demo = CatalogHolder(install_demo=True)
    try:
        await demo.start(r)
        assert demo.version == "demo-1"
        assert await CatalogStore(r).active_version() == "demo-1"
    finally:
        await demo.stop()


async def test_install_demo_never_replaces_an_active_catalog(r):
    await activate(r, version("v1"))
    demo = CatalogHolder(install_demo=True)
    try:
        await demo.start(r)
        assert demo.version == "v1"
        assert await r.exists(keys.catalog("demo-1")) == 0
    finally:
        await demo.stop()


async def test_a_new_activation_is_swapped_in_quickly(r, holder):
    await activate(r, version("v1"))
    await holder.start(r)
    before = holder.current()
    await activate(r, version("v2"))
    await wait_for(holder, "v2", timeout=1.0)
    after = holder.current()
    assert after[0].version == "v2" and after[1].catalog is after[0]
    assert before[0].version == "v1" and before[1].catalog is before[0]  # old pair intact
    await activate(r, demo_catalog_document())
    await wait_for(holder, "demo-1", timeout=1.0)
    await CatalogStore(r).activate("v1")  # back to a saved version
    await wait_for(holder, "v1", timeout=1.0)


async def test_a_catalog_that_fails_to_load_is_skipped(r, holder, caplog):
    await activate(r, version("v1"))
    await holder.start(r)
    await r.set(keys.catalog("broken"), '{"version": "broken"}')
    with caplog.at_level(logging.ERROR, logger="ocs.catalog"):
        await CatalogStore(r).activate("broken")
        await asyncio.sleep(0.3)
    assert holder.version == "v1"
    assert "catalog_load_failed" in caplog.text
    await activate(r, version("v2"))  # still following
    await wait_for(holder, "v2")


async def test_an_activation_missed_while_disconnected_is_caught_up(r, holder):
    await activate(r, version("v1"))
    await holder.start(r)
    await r.client_kill_filter(_type="pubsub")
    await activate(r, version("v2"))  # published while the holder may be disconnected
    await wait_for(holder, "v2")
    await r.client_kill_filter(_type="pubsub")
    await asyncio.sleep(0.2)
    await activate(r, version("v3"))  # after resubscribing
    await wait_for(holder, "v3")


async def test_stop_stops_following(r, holder):
    await activate(r, version("v1"))
    await holder.start(r)
    await holder.stop()
    await activate(r, version("v2"))
    await asyncio.sleep(0.2)
    assert holder.version == "v1"
    assert holder.current()[0].version == "v1"  # still usable after stop
    await holder.stop()  # twice is fine
