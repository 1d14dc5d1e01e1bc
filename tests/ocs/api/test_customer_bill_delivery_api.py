"""The delivery of a bill over real TCP: GET and POST /v1/customerBill/{id}/delivery
and the bill's own ``delivery`` and TMF678 state, with the e-mail going to a real SMTP
server (aiosmtpd) and the customer's address read from Redis, as the API reads it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.invoices import invoice_id
from ocs.billing.payments.allocation import PaymentRequest, record_payment
from ocs.metrics import Metrics
from quota_engine.store import keys
from tests.ocs.api.conftest import SETTINGS, VIEWER_TOKEN, Http, healthy
from tests.ocs.api.test_customer_bill_api import billing_engine  # noqa: F401
from tests.ocs.billing.conftest import sqlite_url  # noqa: F401
from tests.ocs.billing.delivery.smtp_server import smtp_server
from tests.ocs.billing.factory import account, at, catalog, record, write_records

NOVEMBER = at("2026-11-01 00:00")
ERIKA, MAX = invoice_id("erika", NOVEMBER), invoice_id("max", NOVEMBER)


@pytest.fixture
def database_url(sqlite_url):  # noqa: F811
    return sqlite_url


@asynccontextmanager
async def api(redis_client, engine, settings) -> AsyncIterator[Http]:
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Http(client)
    finally:
        await client.close()


@pytest.fixture
async def http(redis_client, engine, catalog_active, database_url, billing_engine, tmp_path):  # noqa: F811
    """Erika's final November bill (delivery by e-mail), Max's draft (paper)."""
    records: Path = tmp_path / "records"
    with smtp_server() as server:
        settings = dataclasses.replace(
            SETTINGS, billing_database_url=database_url, records_directory=str(records),
            smtp_host=server.host, smtp_port=server.port, smtp_security="none",
            smtp_from="billing@beispiel.example", delivery_print_directory=str(tmp_path / "print"),
        )  # fmt: skip
        async with api(redis_client, engine, settings) as client:
            for name, extra in (
                ("erika", {"email": "erika@example.de"}),
                ("max", {"delivery": "paper", "address": "Weg 1\n1010 Wien"}),
            ):
                created = await client.post(
                    "/v1/accounts",
                    {"id": name, "kind": "postpaid", "plan": "postpaid-standard",
                     "name": name.title(), **extra},
                )  # fmt: skip
                assert created.status == 201, created.body
            made = [account(a, created=at("2026-01-10 12:00"), partition=keys.partition_of(a))
                    for a in ("erika", "max")]  # fmt: skip
            write_records(records, [record("s1;1;10", "erika", at("2026-11-02 10:00"))], made)
            for billed, finalize in ((made[0], True), (made[1], False)):
                summary = run_bill_run(
                    billing_engine, catalog(), [billed], records, period="2026-11",
                    now=at("2026-12-10 00:00"), options=BillRunOptions(finalize=finalize),
                )  # fmt: skip
                assert summary.errors == []
            client.server = server  # type: ignore[attr-defined]
            yield client


async def test_a_bill_without_a_delivery_yet(http):
    reply = await http.as_(VIEWER_TOKEN).get(f"/v1/customerBill/{ERIKA}/delivery")
    assert reply.status == 200
    assert reply.body == {
        "id": ERIKA, "href": f"/v1/customerBill/{ERIKA}/delivery", "delivery": None,
        "deliveries": [],
    }  # fmt: skip
    bill = (await http.get(f"/v1/customerBill/{ERIKA}")).body
    assert bill["delivery"] is None and bill["state"] == "validated"


async def test_post_delivers_by_e_mail_and_the_bill_is_sent(http, billing_engine):  # noqa: F811
    reply = await http.post(f"/v1/customerBill/{ERIKA}/delivery", None)
    assert reply.status == 200, reply.body
    delivery = reply.body["delivery"]
    assert delivery["channel"] == "email" and delivery["state"] == "sent"
    assert delivery["recipient"] == "erika@example.de" and delivery["attempts"] == 1
    assert delivery["sentDate"].endswith("Z") and delivery["lastError"] is None
    [received] = http.server.sink.received
    assert received.recipients == ["erika@example.de"]
    assert received.message["Message-ID"] == delivery["messageId"]
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "INV-000001.pdf"
    bill = (await http.as_(VIEWER_TOKEN).get(f"/v1/customerBill/{ERIKA}")).body
    assert bill["state"] == "sent" and bill["delivery"] == delivery
    listed = (await http.get("/v1/customerBill?billingAccount.id=erika")).body
    assert listed[0]["state"] == "sent"
    # a resend is the next delivery; the status is the latest
    again = await http.post(f"/v1/customerBill/{ERIKA}/delivery", None)
    assert again.body["delivery"]["resends"] == 1 and len(again.body["deliveries"]) == 2
    assert len(http.server.sink.received) == 2
    # payments' states come first: a partial payment makes it partiallyPaid
    with billing_engine.begin() as connection:
        record_payment(connection, PaymentRequest("erika", 1_000_000, "EUR"),
                       now=at("2026-12-11 00:00"))  # fmt: skip
    bill = (await http.get(f"/v1/customerBill/{ERIKA}")).body
    assert bill["state"] == "partiallyPaid" and bill["delivery"]["state"] == "sent"


async def test_a_refused_recipient_shows_as_failed_with_the_reason(http):
    http.server.sink.replies = ["550 5.1.1 no such user"]
    reply = await http.post(f"/v1/customerBill/{ERIKA}/delivery", None)
    assert reply.body["delivery"]["state"] == "failed"
    assert reply.body["delivery"]["lastError"] == "recipient refused: 550 5.1.1 no such user"
    bill = (await http.get(f"/v1/customerBill/{ERIKA}")).body
    assert bill["state"] == "validated"  # not delivered


async def test_a_draft_cannot_be_delivered_and_an_unknown_bill_is_404(http):
    reply = await http.post(f"/v1/customerBill/{MAX}/delivery", None)
    assert reply.status == 409
    assert reply.fields()["state"] == f"invoice {MAX!r} is draft: only final invoices are delivered"
    for method in ("GET", "POST"):
        missing = await http.call(method, "/v1/customerBill/in_00000000000000000000/delivery")
        assert missing.status == 404, (method, missing.body)


async def test_a_viewer_cannot_resend(http):
    reply = await http.as_(VIEWER_TOKEN).post(f"/v1/customerBill/{ERIKA}/delivery")
    assert reply.status == 403 and http.server.sink.received == []
