"""TMF676 payments and refunds over real HTTP: recorded against accounts of the real
Redis, allocated to bills of a real billing database (a SQLite file, then PostgreSQL),
with every error answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.billing.database import migrate, open_database
from ocs.billing.representation import timestamp
from ocs.metrics import Metrics
from ocs.payment_dunning import run_dunning
from tests.ocs.api.conftest import SETTINGS, VIEWER_TOKEN, Http, healthy
from tests.ocs.billing.conftest import (  # noqa: F401 (fixtures of the billing tests)
    database_url,
    postgres_server,
    postgres_url,
    sqlite_url,
)
from tests.ocs.billing.test_payments import DAY, START, bill

POSTPAID = {"kind": "postpaid", "plan": "postpaid-standard"}


def body(account: str = "alice", value: str = "10.00", **more):
    return {"account": {"id": account}, "amount": {"unit": "EUR", "value": value}, **more}


def key(text: str) -> dict[str, str]:
    return {"Idempotency-Key": text}


@pytest.fixture
def billing_engine(database_url: str):  # noqa: F811
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def http(
    redis_client,
    engine,
    catalog_active,
    database_url,  # noqa: F811
    billing_engine,
) -> AsyncIterator[Http]:
    """alice (two final bills: 20.00 and 30.00) and bob (none) in Redis and the database."""
    settings = dataclasses.replace(SETTINGS, billing_database_url=database_url)
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    http = Http(client)
    for account in ("alice", "bob"):
        assert (await http.post("/v1/accounts", {"id": account, **POSTPAID})).status == 201
    with billing_engine.begin() as connection:
        bill(connection, "in_1", 20_000_000, final_at=START + 31 * DAY)
        bill(connection, "in_2", 30_000_000, month=1, final_at=START + 61 * DAY)
    try:
        yield http
    finally:
        await client.close()


async def bill_of(http, document: str) -> tuple[str, str]:
    shown = (await http.get(f"/v1/customerBill/{document}")).body
    return shown["state"], shown["remainingAmount"]["value"]


async def test_partial_full_and_over_payment_over_http(http):
    reply = await http.post(
        "/v1/payment",
        body(value="25.00", paymentMethod={"name": "card"}, correlatorId="psp-1",
             paymentDate="2026-03-05T10:00:00+01:00", reference="INV-0001"),
        headers=key("pay-1"),
    )  # fmt: skip
    assert reply.status == 201, reply.body
    assert reply.headers["Idempotent-Replayed"] == "false"
    payment = reply.body
    assert reply.headers["Location"] == payment["href"] == f"/v1/payment/{payment['id']}"
    assert payment["account"] == {"id": "alice", "href": "/v1/accounts/alice"}
    assert payment["amount"] == {"unit": "EUR", "value": "25.00"}
    assert (payment["paymentMethod"]["name"], payment["channel"], payment["status"]) == (
        "card", {"name": "api"}, "succeeded",
    )  # fmt: skip
    assert (payment["paymentDate"], payment["correlatorId"]) == ("2026-03-05T09:00:00Z", "psp-1")
    assert [(i["item"]["id"], i["amount"]["value"]) for i in payment["paymentItem"]] == [
        ("in_1", "20.00"),
        ("in_2", "5.00"),
    ]
    assert await bill_of(http, "in_1") == ("settled", "0.00")
    assert await bill_of(http, "in_2") == ("partiallyPaid", "25.00")
    # the same key and body: the same payment, nothing recorded twice
    again = await http.post(
        "/v1/payment",
        body(value="25.00", paymentMethod={"name": "card"}, correlatorId="psp-1",
             paymentDate="2026-03-05T10:00:00+01:00", reference="INV-0001"),
        headers=key("pay-1"),
    )  # fmt: skip
    assert (again.status, again.headers["Idempotent-Replayed"]) == (201, "true")
    assert again.body["id"] == payment["id"]
    # over-payment: 25.00 settles in_2, 0.00 left of 30.00 - 5.00; 5.00 is credit
    over = await http.post("/v1/payment", body(value="30.00"), headers=key("pay-2"))
    assert over.status == 201
    assert await bill_of(http, "in_2") == ("settled", "0.00")
    listed = await http.as_(VIEWER_TOKEN).get("/v1/payment", params={"account.id": "alice"})
    assert (listed.status, listed.headers["X-Total-Count"]) == (200, "2")
    assert [p["id"] for p in listed.body] == [over.body["id"], payment["id"]]  # newest first
    one = await http.as_(VIEWER_TOKEN).get(f"/v1/payment/{payment['id']}")
    assert one.body == payment
    # the credit (5.00) is refunded, not more
    too_much = await http.post(
        "/v1/refund", body(value="5.01", reason="closing"), headers=key("refund-1")
    )
    assert too_much.status == 422
    assert "more than the credit of account 'alice': 5.00 EUR" in too_much.fields()["amount.value"]
    refund = await http.post(
        "/v1/refund", body(value="5.00", reason="closing"), headers=key("refund-1")
    )
    assert refund.status == 201, refund.body
    assert (refund.body["amount"]["value"], refund.body["reason"]) == ("5.00", "closing")
    assert (await http.get(f"/v1/refund/{refund.body['id']}")).body == refund.body
    assert (await http.get("/v1/refund")).headers["X-Total-Count"] == "1"
    empty = await http.post("/v1/refund", body(value="0.01", reason="x"), headers=key("refund-2"))
    assert empty.status == 422


async def test_payment_errors(http):
    # idempotency: the key with another body
    assert (await http.post("/v1/payment", body(), headers=key("k"))).status == 201
    conflict = await http.post("/v1/payment", body(value="11.00"), headers=key("k"))
    assert conflict.status == 409 and "Idempotency-Key" in conflict.fields()
    # no key
    missing = await http.post("/v1/payment", body())
    assert missing.status == 400 and "Idempotency-Key" in missing.fields()
    # unknown account (not in Redis)
    unknown = await http.post("/v1/payment", body(account="nobody"), headers=key("k2"))
    assert unknown.status == 404 and unknown.fields() == {"account.id": "no such account"}
    # currency mismatch, too many decimals, zero, a malformed amount, an unknown method
    usd = await http.post("/v1/payment", {**body(), "amount": {"unit": "USD", "value": "1"}},
                          headers=key("k3"))  # fmt: skip
    assert usd.status == 422 and "billed in EUR, not USD" in usd.fields()["amount.unit"]
    fine = await http.post("/v1/payment", body(value="1.001"), headers=key("k4"))
    assert fine.status == 422 and "3 decimals, the currency has 2" in fine.fields()["amount.value"]
    zero = await http.post("/v1/payment", body(value="0.00"), headers=key("k5"))
    assert zero.status == 422 and "more than 0" in zero.fields()["amount.value"]
    huge = await http.post("/v1/payment", body(value="99999999999999.00"), headers=key("k5b"))
    assert huge.status == 422 and "largest amount" in huge.fields()["amount.value"]
    malformed = await http.post("/v1/payment", body(value="1,00"), headers=key("k6"))
    assert malformed.status == 400 and "amount.value" in malformed.fields()
    method = await http.post(
        "/v1/payment", body(paymentMethod={"name": "barter"}), headers=key("k7")
    )
    assert method.status == 400 and "paymentMethod.name" in method.fields()
    date = await http.post("/v1/payment", body(paymentDate="2026-13-01"), headers=key("k8"))
    assert date.status == 422 and "paymentDate" in date.fields()
    ahead = await http.post("/v1/payment", body(paymentDate="2099-01-01T00:00:00Z"),
                            headers=key("k8b"))  # fmt: skip
    assert ahead.status == 422 and "in the future" in ahead.fields()["paymentDate"]
    # an external id is recorded once
    assert (
        await http.post("/v1/payment", body(correlatorId="x1"), headers=key("k9"))
    ).status == 201
    twice = await http.post("/v1/payment", body(correlatorId="x1"), headers=key("k10"))
    assert twice.status == 409 and "externalId" in twice.fields()
    # reads
    assert (await http.get("/v1/payment/pay_nothing")).status == 404
    assert (await http.get("/v1/refund/ref_nothing")).status == 404
    assert (await http.get("/v1/payment", params={"limit": "0"})).status == 400
    # a refund for an account that never paid, and a viewer may not write
    never = await http.post("/v1/refund", body(account="bob", reason="x"), headers=key("r"))
    assert never.status == 404
    viewer = await http.as_(VIEWER_TOKEN).post("/v1/payment", body(), headers=key("v"))
    assert viewer.status == 403


async def test_a_first_payment_of_an_account_without_bills_is_credit(http):
    reply = await http.post("/v1/payment", body(account="bob", value="15.00"), headers=key("b"))
    assert reply.status == 201, reply.body
    assert reply.body["paymentItem"] == []
    refund = await http.post(
        "/v1/refund", body(account="bob", value="15.00", reason="paid by mistake"),
        headers=key("b-back"),
    )  # fmt: skip
    assert refund.status == 201


async def test_a_payment_that_settles_what_is_overdue_lifts_a_dunning_bar(
    http,
    redis_client,
    billing_engine,
    database_url,  # noqa: F811
):
    settings = dataclasses.replace(SETTINGS, billing_database_url=database_url)
    # alice's bills of February and March are long overdue: dunning bars her
    report = await run_dunning(redis_client, billing_engine, settings, now=int(time.time()))
    assert report.barred == ["alice"]
    assert (await http.get("/v1/accounts/alice")).body["status"] == "barred"
    partial = await http.post("/v1/payment", body(value="20.00"), headers=key("p1"))
    assert partial.status == 201
    assert (await http.get("/v1/accounts/alice")).body["status"] == "barred"  # in_2 overdue
    rest = await http.post("/v1/payment", body(value="30.00"), headers=key("p2"))
    assert rest.status == 201
    assert (await http.get("/v1/accounts/alice")).body["status"] == "active"


async def test_payment_balance_lists_the_open_bills_the_credit_and_the_dunning_state(http):
    balance = await http.as_(VIEWER_TOKEN).get("/v1/accounts/alice/paymentBalance")
    assert balance.status == 200
    assert balance.body["amountDue"] == {"unit": "EUR", "value": "50.00"}
    assert [(b["billNo"], b["remainingAmount"]["value"]) for b in balance.body["openBill"]] == [
        ("INV-0001", "20.00"),
        ("INV-0002", "30.00"),
    ]
    # due 14 days (documents.payment_terms) after it was finalised
    assert balance.body["openBill"][0]["paymentDueDate"] == timestamp(START + 45 * DAY)
    assert (await http.post("/v1/payment", body(value="60.00"), headers=key("all"))).status == 201
    after = (await http.get("/v1/accounts/alice/paymentBalance")).body
    assert (after["amountDue"]["value"], after["credit"]["value"], after["openBill"]) == (
        "0.00", "10.00", [],
    )  # fmt: skip
    assert after["dunningState"] == "none"
    unknown = await http.get("/v1/accounts/bob/paymentBalance")  # no bill, no payment
    assert unknown.status == 404 and "account_id" in unknown.fields()
