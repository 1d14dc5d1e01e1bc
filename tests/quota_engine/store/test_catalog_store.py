"""quota_engine.store.catalogs against a real Redis: versions saved once, one active."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import pytest

from quota_engine.catalog import CatalogError, load_demo_catalog
from quota_engine.store import keys
from quota_engine.store.catalogs import (
    CatalogStore,
    CatalogStoreError,
    canonical_json,
    demo_catalog_document,
    json_ready,
)
from tests.quota_engine.catalogs import base_catalog


@pytest.fixture
def store(r):
    return CatalogStore(r)


async def test_save_stores_canonical_json_under_the_version(store, r):
    assert await store.save(base_catalog()) == "t1"
    stored = await r.get(keys.catalog("t1"))
    assert stored.decode() == canonical_json(base_catalog())
    assert await store.document("t1") == base_catalog()
    assert (await store.load("t1")).version == "t1"
    assert await store.document("t9") is None and await store.load("t9") is None


async def test_saving_the_same_document_again_is_a_no_op(store, r):
    await store.save(base_catalog())
    before = await r.dump(keys.catalog("t1"))
    reordered = dict(reversed(list(base_catalog().items())))
    assert await store.save(reordered) == "t1"
    assert await r.dump(keys.catalog("t1")) == before


async def test_a_different_document_under_a_saved_version_is_refused(store):
    await store.save(base_catalog())
    changed = base_catalog()
    changed["currency"] = "USD"
    with pytest.raises(CatalogStoreError, match="'t1' is already saved with a different"):
        await store.save(changed)
    assert (await store.load("t1")).currency == "EUR"


async def test_an_invalid_catalog_is_not_saved(store, r):
    bad = base_catalog()
    bad["currency"] = "euro"
    with pytest.raises(CatalogError) as exc:
        await store.save(bad)
    assert exc.value.problems == ["currency: must be an ISO 4217 code (three capital letters)"]
    assert await r.keys("*") == []


async def test_toml_dates_are_stored_as_iso_strings(store):
    document = demo_catalog_document()
    assert "2025-12-25" in document["holidays"]
    raw = base_catalog()
    raw["holidays"] = [date(2025, 12, 25)]
    await store.save(raw)
    assert (await store.document("t1"))["holidays"] == ["2025-12-25"]


def test_json_ready_names_what_json_cannot_hold():
    with pytest.raises(CatalogError, match=r"plans\[0\]: unsupported value"):
        json_ready({"plans": [object()]})
    assert json_ready({"a": (1, date(2025, 1, 2))}) == {"a": [1, "2025-01-02"]}


async def test_activate_sets_active_and_publishes_once(store, r):
    pubsub = r.pubsub()
    await pubsub.subscribe(keys.CATALOG_CHANNEL)
    await pubsub.get_message(timeout=1)
    assert await store.active() is None and await store.active_version() is None
    await store.save(base_catalog())
    assert await store.activate("t1") is True
    assert await store.activate("t1") is False  # already active: nothing published
    assert await store.active_version() == "t1"
    assert (await store.active()).version == "t1"
    messages = []
    for _ in range(3):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3)
        if message:
            messages.append(message["data"])
    assert messages == [b"t1"]
    await pubsub.aclose()


async def test_activate_an_unknown_version_is_refused(store, r):
    with pytest.raises(CatalogStoreError, match="no saved catalog version 'nope'"):
        await store.activate("nope")
    assert await r.get(keys.CATALOG_ACTIVE) is None


async def test_only_if_none_never_replaces_an_active_catalog(store):
    await store.save(base_catalog())
    demo = await store.save(demo_catalog_document())
    assert await store.activate("t1", only_if_none=True) is True
    assert await store.activate(demo, only_if_none=True) is False
    assert await store.active_version() == "t1"


async def test_active_version_without_its_document_is_an_error(store, r):
    await r.set(keys.CATALOG_ACTIVE, "lost")
    with pytest.raises(CatalogStoreError, match="'lost' is not saved"):
        await store.active()


async def test_demo_catalog_document_is_the_demo_catalog(store):
    version = await store.save(demo_catalog_document())
    assert await store.load(version) == load_demo_catalog()


async def test_concurrent_saves_of_the_same_version(store):
    results = await asyncio.gather(*(store.save(base_catalog()) for _ in range(10)))
    assert results == ["t1"] * 10
    assert json.loads(canonical_json(await store.document("t1"))) == base_catalog()
