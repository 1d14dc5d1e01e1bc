"""ocs.billing_source on a real Redis: accounts made through the real store, provisioning
and balance-action paths, read back as the bill run's BillingAccount values."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ocs.billing.accounts import (
    ITEMISATIONS,
    Adjustment,
    BillingAccount,
    KindChange,
    PlanChange,
    invoice_accounts,
)
from ocs.billing_source import read_billing_account, read_billing_accounts
from quota_engine.accounts import model
from quota_engine.accounts.balance_actions import BalanceActions
from quota_engine.accounts.errors import AccountError
from quota_engine.accounts.model import Account
from quota_engine.accounts.provisioning import provision
from quota_engine.store import keys
from quota_engine.store.accounts import AccountStore, kind_change_entry
from quota_engine.store.catalogs import demo_catalog_document

NOW = 1_764_547_200  # 2025-12-01T00:00:00Z
DAY = 86_400
EUR = 1_000_000


def catalog() -> dict:
    """The demo catalog with a second postpaid plan, postpaid-business."""
    document = demo_catalog_document()
    document["version"] = "demo-billing"
    postpaid = next(p for p in document["plans"] if p["id"] == "postpaid-standard")
    document["plans"].append({**postpaid, "id": "postpaid-business", "recurring_fee": 30 * EUR})
    return document


ACCOUNTS = [
    {
        "id": "corp",
        "kind": "postpaid",
        "plan": "postpaid-standard",
        "bill_cycle_day": 15,
        "credit_limit": 100 * EUR,
        "tax_exempt": True,
        "itemisation": "summary",
        "subscriptions": ["msisdn:491700000001"],
        "buckets": [{"id": "main", "amount": 0}],
    },
    {
        "id": "corp-line-1",
        "kind": "postpaid",
        "plan": "postpaid-standard",
        "parent": "corp",
        "subscriptions": ["msisdn:491700000002", "imsi:262010000000002"],
    },
    {
        "id": "corp-line-2",
        "kind": "postpaid",
        "plan": "postpaid-standard",
        "parent": "corp",
        "bill_separately": True,
        "subscriptions": ["msisdn:491700000003"],
    },
    {
        "id": "kid",
        "kind": "prepaid",
        "plan": "prepaid-basic",
        "subscriptions": ["msisdn:491700000004"],
        "buckets": [{"id": "main", "amount": 5 * EUR}],
        "allowances": ["data-1gb"],
    },
]


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def provisioned(r: aioredis.Redis) -> aioredis.Redis:
    """ACCOUNTS provisioned at NOW, with their history made through the real paths: two
    plan changes of corp, adjustments of money and of units, a top-up and a credit."""
    await provision(r, {"catalog": catalog(), "accounts": ACCOUNTS}, now=NOW)
    store = AccountStore(r)
    corp = await store.get_account("corp")
    assert corp is not None
    business = Account(**{**corp.to_dict(), "plan": "postpaid-business"})
    await store.create_account(business, upsert=True, now=NOW + 10 * DAY)
    await store.create_account(corp, upsert=True, now=NOW + 20 * DAY)
    actions = BalanceActions(r, store)
    await actions.adjust("corp", -3 * EUR, key="adj-1", reason="porting fee", now=NOW + DAY)
    await actions.adjust("corp", 1_500_000, key="adj-2", reason="goodwill", now=NOW + 2 * DAY)
    await actions.topup("corp", 7 * EUR, key="top-1", reason="payment", now=NOW + 3 * DAY)
    await actions.adjust(
        "kid", -1024, key="adj-3", bucket="data-1gb", reason="units", now=NOW + DAY
    )
    await store.credit("corp", "main", EUR, reason="compensation")
    return r


async def adjustment_ids(r: aioredis.Redis, account_id: str) -> list[str]:
    entries = [json.loads(e) for e in await r.lrange(keys.history(account_id), 0, -1)]
    return [e["id"] for e in entries if e.get("type") == "adjustment"]


def partition(account_id: str) -> int:
    """The record partition, computed the documented way (docs/data-model.md)."""
    return zlib.crc32(account_id.encode()) % keys.partitions()


async def test_every_account_is_read_with_its_billing_view(provisioned):
    r = provisioned
    found = await read_billing_accounts(r)
    assert [a.id for a in found] == ["corp", "corp-line-1", "corp-line-2", "kid"]
    by_id = {a.id: a for a in found}
    first, second = await adjustment_ids(r, "corp")
    corp = await AccountStore(r).get_account("corp")
    assert corp is not None and corp.created == NOW
    assert by_id["corp"] == BillingAccount(
        id="corp",
        kind="postpaid",
        status="active",
        currency="EUR",
        plan="postpaid-standard",
        bill_cycle_day=15,
        parent=None,
        created=NOW,
        partition=partition("corp"),
        subscriptions=("msisdn:491700000001",),
        tax_exempt=True,
        bill_separately=False,
        itemisation="summary",
        plan_changes=(
            PlanChange(at=NOW + 10 * DAY, previous="postpaid-standard", plan="postpaid-business"),
            PlanChange(at=NOW + 20 * DAY, previous="postpaid-business", plan="postpaid-standard"),
        ),
        adjustments=(
            Adjustment(
                id=first, at=NOW + DAY, amount=-3 * EUR, bucket="main", reason="porting fee"
            ),
            Adjustment(
                id=second, at=NOW + 2 * DAY, amount=1_500_000, bucket="main", reason="goodwill"
            ),
        ),
    )
    assert by_id["corp"].plan_at(NOW + 15 * DAY) == "postpaid-business"
    assert by_id["corp"].plan_at(NOW) == "postpaid-standard"
    line = by_id["corp-line-1"]
    assert (line.parent, line.subscriptions, line.bill_separately) == (
        "corp",
        ("imsi:262010000000002", "msisdn:491700000002"),
        False,
    )
    assert (line.plan_changes, line.adjustments, line.tax_exempt) == ((), (), False)
    assert by_id["corp-line-2"].bill_separately is True
    kid = by_id["kid"]
    assert (kid.kind, kid.postpaid, kid.itemisation) == ("prepaid", False, "detailed")
    assert kid.adjustments == ()  # an adjustment of a units bucket is no invoice line
    assert {a.id: a.partition for a in found} == {a.id: partition(a.id) for a in found}
    # what the bill run does with them: the child on its parent's invoice, the one
    # billed separately on its own, the prepaid account on none
    groups = invoice_accounts(found)
    assert {k: [a.id for a in v] for k, v in groups.items()} == {
        "corp": ["corp", "corp-line-1"],
        "corp-line-2": ["corp-line-2"],
    }


async def test_one_account_reads_the_same_as_in_the_whole_read(provisioned):
    whole = {a.id: a for a in await read_billing_accounts(provisioned, batch=1)}
    for account_id, account in whole.items():
        assert await read_billing_account(provisioned, account_id) == account


async def test_a_missing_account_is_none_and_an_impossible_id_an_error(provisioned):
    assert await read_billing_account(provisioned, "nobody") is None
    with pytest.raises(AccountError) as exc:
        await read_billing_account(provisioned, "a:b")
    assert exc.value.field == "account"


async def test_an_empty_store_has_no_accounts(r):
    assert await read_billing_accounts(r) == []


async def test_accounts_are_read_in_batches_all_of_them(r):
    await provision(r, {"catalog": catalog(), "accounts": []}, now=NOW)
    count = 1_234
    store = AccountStore(r)
    ids = [f"acct-{i:05d}" for i in range(count)]
    async with r.pipeline(transaction=False) as pipe:  # fast set-up in the shared format
        for account_id in ids:
            account = Account(id=account_id, kind="postpaid", currency="EUR", plan="p", created=1)
            pipe.hset(keys.account(account_id), mapping=account.to_hash())
            pipe.sadd(keys.ACCOUNTS, account_id)
        await pipe.execute()
    await store.create_account(
        Account(id="acct-00007", kind="postpaid", currency="EUR", plan="postpaid-business"),
        upsert=True,
        now=NOW,
    )
    for batch in (1_000, 100, 7):
        found = await read_billing_accounts(r, batch=batch)
        assert [a.id for a in found] == ids
        assert found[7].plan_changes == (PlanChange(NOW, "p", "postpaid-business"),)
        assert sum(len(a.plan_changes) for a in found) == 1


async def test_kind_changes_are_read_oldest_first_and_a_garbled_one_skipped(provisioned):
    r = provisioned
    entries = [
        kind_change_entry("prepaid", "postpaid", NOW + 60),
        kind_change_entry("postpaid", "prepaid", NOW),
        json.dumps({"type": "kind_change", "previous": "prepaid", "time": NOW}),  # no kind
    ]
    await r.rpush(keys.history("corp"), *entries)
    corp = await read_billing_account(r, "corp")
    assert corp is not None
    assert corp.kind_changes == (
        KindChange(NOW, "postpaid", "prepaid"),
        KindChange(NOW + 60, "prepaid", "postpaid"),
    )


@pytest.mark.parametrize("batch", [0, -1, 1.5, True])
async def test_a_bad_batch_is_refused(r, batch):
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        await read_billing_accounts(r, batch=batch)


def skipped(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    return [
        record.ocs_event[1]  # type: ignore[attr-defined]
        for record in caplog.records
        if getattr(record, "ocs_event", (None,))[0] == event
    ]


async def test_a_garbled_history_entry_is_skipped_with_a_warning(provisioned, caplog):
    """The account is still read, with every readable entry; each entry that cannot be
    read is logged with its position (oldest 0) and the problem."""
    r = provisioned
    before = await read_billing_account(r, "corp")
    assert before is not None
    start = await r.llen(keys.history("corp"))
    garbage = [
        b"{not json",
        b"[1, 2]",
        json.dumps({"type": "plan_change", "previous": "a", "plan": "b", "time": "soon"}),
        json.dumps({"type": "plan_change", "plan": "b", "time": NOW}),
        json.dumps(
            {
                "type": "adjustment",
                "id": "x",
                "amount": "5",
                "bucket": "main",
                "unit": "EUR",
                "reason": "r",
                "time": NOW,
            }  # fmt: skip
        ),
        json.dumps({"type": "adjustment", "id": "y", "amount": 5, "bucket": "main", "time": NOW}),
        json.dumps({"type": "something-new", "time": NOW}),  # unknown types: ignored, no warning
    ]
    await r.rpush(keys.history("corp"), *garbage)
    caplog.set_level(logging.WARNING, logger="ocs.billing_source")
    found = {a.id: a for a in await read_billing_accounts(r)}
    assert found["corp"] == before  # the readable entries, as before
    assert len(found) == 4
    warnings = skipped(caplog, "billing_history_entry_skipped")
    assert [(w["account"], w["index"]) for w in warnings] == [("****", start + i) for i in range(6)]
    problems = [w["problem"] for w in warnings]
    assert problems[:2] == ["not JSON", "not a JSON object"]
    assert problems[2] == "plan_change: time must be an integer, got 'soon'"
    assert problems[3] == "plan_change: previous must be a non-empty string, got None"
    assert problems[4] == "adjustment: amount must be an integer, got '5'"
    assert problems[5] == "adjustment: unit must be a currency or a unit, got None"
    assert all(r.levelno == logging.WARNING for r in caplog.records)


async def test_an_unreadable_account_hash_skips_that_account_with_an_error(provisioned, caplog):
    r = provisioned
    await r.hset(keys.account("corp-line-1"), "bill_cycle_day", "fifteen")
    caplog.set_level(logging.WARNING, logger="ocs.billing_source")
    found = await read_billing_accounts(r)
    assert [a.id for a in found] == ["corp", "corp-line-2", "kid"]
    [error] = skipped(caplog, "billing_account_unreadable")
    assert error["account"] == "*******ne-1" and "fifteen" in error["problem"]  # masked
    assert [rec.levelno for rec in caplog.records] == [logging.ERROR]
    assert await read_billing_account(r, "corp-line-1") is None
    # the child whose parent cannot be read is its own invoice account
    assert "corp-line-2" in invoice_accounts(found)


async def test_an_account_listed_but_gone_is_left_out(provisioned):
    await provisioned.delete(keys.account("kid"))  # removed between the list and the read
    assert [a.id for a in await read_billing_accounts(provisioned)] == [
        "corp",
        "corp-line-1",
        "corp-line-2",
    ]


def test_the_itemisations_are_the_billing_ones():
    assert model.ITEMISATIONS == ITEMISATIONS
