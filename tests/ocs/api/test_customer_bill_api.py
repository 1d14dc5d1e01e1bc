"""TMF678 customer bills over real HTTP: invoices made by a real bill run in a real
billing database (a SQLite file, then PostgreSQL), listed, read line by line, finalised,
voided and credited through /v1, with every error answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.billing.bill_run import BillRunOptions, run_bill_run
from ocs.billing.database import (
    check_revision,
    create_billing_engine,
    head_revision,
    migrate,
    open_database,
    revision_status,
)
from ocs.billing.invoices import invoice_id
from ocs.billing.representation import parse_decimal
from ocs.metrics import Metrics
from quota_engine.store import keys
from tests.ocs.api.conftest import SETTINGS, VIEWER_TOKEN, Http, healthy
from tests.ocs.billing.conftest import (  # noqa: F401 (fixtures of the billing tests)
    database_url,
    postgres_server,
    postgres_url,
    sqlite_url,
)
from tests.ocs.billing.factory import account, at, catalog, record, write_records

MIB = 1_048_576
NOVEMBER = at("2026-11-01 00:00")
ALICE = invoice_id("alice", NOVEMBER)
BOB = invoice_id("bob", NOVEMBER)
KEY = {"Idempotency-Key": "credit-1"}


@asynccontextmanager
async def api(redis_client, engine, url: str, records: Path | None = None) -> AsyncIterator[Http]:
    """The API with its billing database at ``url``."""
    settings = dataclasses.replace(
        SETTINGS,
        billing_database_url=url,
        records_directory=str(records or SETTINGS.records_directory),
    )
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Http(client)
    finally:
        await client.close()


@pytest.fixture
def billing_engine(database_url: str):  # noqa: F811
    migrate(database_url)
    engine = open_database(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def http(redis_client, engine, catalog_active, database_url, billing_engine, tmp_path):  # noqa: F811
    """Two draft November bills, made by a bill run: alice's and bob's."""
    records = tmp_path / "records"
    accounts = [account(a, created=at("2026-01-10 12:00")) for a in ("alice", "bob")]
    write_records(
        records,
        [
            record("s1;1;10", "alice", at("2026-11-02 10:00"), used=3 * MIB, charged=1_500_000),
            record("s3;1;100", "alice", at("2026-11-04 09:00"), service="voice", used=125,
                   charged=300_000, destination="national"),
            record("s8;2;10", "bob", at("2026-11-20 09:00"), used=2 * MIB, charged=4_000_000),
        ],
        accounts,
    )  # fmt: skip
    summary = run_bill_run(
        billing_engine,
        catalog(),
        accounts,
        records,
        period="2026-11",
        now=at("2026-12-10 00:00"),
        options=BillRunOptions(entity="acme", finalize=False),
    )
    assert (summary.errors, summary.invoices_created) == ([], 2)
    async with api(redis_client, engine, database_url, records) as client:
        yield client


def money(value: str) -> dict[str, str]:
    return {"unit": "EUR", "value": value}


# --------------------------------------------------------------------------- reads


async def test_list_and_get_bills(http):
    reply = await http.get("/v1/customerBill")
    assert reply.status == 200 and reply.headers["X-Total-Count"] == "2"
    assert {b["id"] for b in reply.body} == {ALICE, BOB}
    bill = (await http.as_(VIEWER_TOKEN).get(f"/v1/customerBill/{ALICE}")).body
    assert bill["billNo"] is None
    assert (bill["state"], bill["lifecycleState"], bill["category"]) == ("new", "draft", "normal")
    assert bill["billingAccount"] == {"id": "alice", "href": "/v1/accounts/alice"}
    assert bill["billingPeriod"] == {
        "startDateTime": "2026-10-31T23:00:00Z",
        "endDateTime": "2026-11-30T23:00:00Z",
    }
    # 20.00 fee + 1.50 data + 0.30 voice = 21.80; 19 % = 4.142 -> 4.14
    assert bill["taxExcludedAmount"] == money("21.80")
    assert bill["taxIncludedAmount"] == money("25.94") == bill["amountDue"]
    assert bill["taxItem"] == [
        {"taxCategory": "standard", "taxRate": "19", "taxAmount": money("4.14")}
    ]
    assert bill in reply.body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"billingAccount.id": "alice"}, [ALICE]),
        ({"billingAccount.id": "nobody"}, []),
        ({"state": "new"}, sorted([ALICE, BOB])),
        ({"state": "draft"}, sorted([ALICE, BOB])),
        ({"state": "validated"}, []),
        ({"state": "draft", "billingAccount.id": "bob"}, [BOB]),
    ],
)
async def test_list_filters(http, params, expected):
    reply = await http.get("/v1/customerBill", params=params)
    assert reply.status == 200
    assert sorted(b["id"] for b in reply.body) == expected
    assert reply.headers["X-Total-Count"] == str(len(expected))


async def test_list_pages(http):
    first = await http.get("/v1/customerBill", params={"limit": "1"})
    second = await http.get("/v1/customerBill", params={"limit": "1", "offset": "1"})
    assert first.headers["X-Total-Count"] == second.headers["X-Total-Count"] == "2"
    assert {first.body[0]["id"], second.body[0]["id"]} == {ALICE, BOB}


async def test_lines_with_and_without_their_records(http):
    reply = await http.as_(VIEWER_TOKEN).get(f"/v1/customerBill/{ALICE}/appliedCustomerBillingRate")
    assert reply.status == 200 and reply.headers["X-Total-Count"] == "4"
    assert [(x["position"], x["type"], x["name"], x["taxExcludedAmount"]) for x in reply.body] == [
        (1, "recurring", "Postpaid Standard: recurring fee", money("20.00")),
        (2, "usage", "Data, weekday", money("1.50")),
        (3, "usage", "Voice, national, weekday", money("0.30")),
        (4, "tax", "VAT 19 %", money("4.14")),
    ]
    data = reply.body[1]
    assert data["quantity"] == {"amount": 3 * MIB, "units": "octets"}
    assert data["appliedTax"] == [{"taxCategory": "standard", "taxRate": "19"}]
    assert data["bill"] == {"id": ALICE, "href": f"/v1/customerBill/{ALICE}"}
    assert all("ratedRecords" not in x for x in reply.body)
    detailed = await http.get(
        f"/v1/customerBill/{ALICE}/appliedCustomerBillingRate", params={"detail": "true"}
    )
    assert [x["ratedRecords"] for x in detailed.body] == [[], ["s1;1;10"], ["s3;1;100"], []]
    paged = await http.get(
        f"/v1/customerBill/{ALICE}/appliedCustomerBillingRate",
        params={"offset": "2", "limit": "1"},
    )
    assert [x["position"] for x in paged.body] == [3] and paged.headers["X-Total-Count"] == "4"


# --------------------------------------------------------------------------- lifecycle


async def test_finalize_then_credit_then_no_void(http):
    final = await http.post(f"/v1/customerBill/{ALICE}/finalize")
    assert final.status == 200, final.body
    assert (final.body["state"], final.body["billNo"]) == ("validated", "INV-000001")
    assert final.body["billDate"] is not None
    again = await http.post(f"/v1/customerBill/{ALICE}/finalize")
    assert again.status == 409 and "is final, not a draft" in again.fields()["state"]

    body = {"reason": "goodwill", "lines": [{"position": 2, "amount": "1.00"}]}
    note = await http.post(f"/v1/customerBill/{ALICE}/creditNote", body, headers=KEY)
    assert note.status == 201, note.body
    assert note.headers["Idempotent-Replayed"] == "false"
    assert note.headers["Location"] == f"/v1/creditNote/{note.body['id']}"
    assert note.body["billNo"] == "CN-000001"
    assert note.body["bill"]["id"] == ALICE
    assert note.body["taxExcludedAmount"] == money("1.00")
    assert note.body["taxIncludedAmount"] == money("1.19")
    [item] = note.body["creditNoteItem"]
    assert item["appliedCustomerBillingRate"]["position"] == 2
    assert item["taxAmount"] == money("0.19")

    replay = await http.post(f"/v1/customerBill/{ALICE}/creditNote", body, headers=KEY)
    assert (replay.status, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert replay.body == note.body
    other = {**body, "lines": [{"position": 2, "amount": "2.00"}]}
    reused = await http.post(f"/v1/customerBill/{ALICE}/creditNote", other, headers=KEY)
    assert reused.status == 409 and "Idempotency-Key" in reused.fields()
    notes = await http.as_(VIEWER_TOKEN).get(f"/v1/customerBill/{ALICE}/creditNote")
    assert notes.body == [note.body] and notes.headers["X-Total-Count"] == "1"
    assert (await http.get(f"/v1/creditNote/{note.body['id']}")).body == note.body
    bill = (await http.get(f"/v1/customerBill/{ALICE}")).body
    assert bill["amountDue"] == money("24.75")  # 25.94 - 1.19
    assert bill["taxIncludedAmount"] == money("25.94")  # a final bill never changes

    whole = await http.post(
        f"/v1/customerBill/{ALICE}/creditNote",
        {"reason": "voice not delivered", "lines": [{"position": 3}]},
        headers={"Idempotency-Key": "credit-2"},
    )
    assert whole.status == 201
    assert whole.body["taxIncludedAmount"] == money("0.36")  # 0.30 + 0.057 -> 0.06

    voided = await http.post(f"/v1/customerBill/{ALICE}/void", {"reason": "oops"})
    assert voided.status == 409 and "credit note" in voided.fields()["state"]


@pytest.mark.parametrize(
    ("lines", "field", "why"),
    [
        ([{"position": 3, "amount": "0.31"}], "lines[0].amount", "at most 300000"),
        ([{"position": 4}], "lines[0]", "a tax line"),
        ([{"position": 9}], "lines[0]", "no such line"),
        ([{"position": 2}, {"position": 2, "amount": "0.01"}], "lines[1]", "credited twice"),
        ([{"position": 2, "amount": "0"}], "lines[0].amount", "more than 0"),
        ([{"position": 2, "amount": "1.001"}], "lines[0].amount", "more than the currency's 2"),
    ],
)
async def test_a_credit_refused_by_meaning_is_422(http, lines, field, why):
    assert (await http.post(f"/v1/customerBill/{ALICE}/finalize")).status == 200
    reply = await http.post(
        f"/v1/customerBill/{ALICE}/creditNote", {"reason": "r", "lines": lines}, headers=KEY
    )
    assert reply.status == 422, reply.body
    assert why in reply.fields()[field]
    notes = await http.get(f"/v1/customerBill/{ALICE}/creditNote")
    assert notes.body == []


async def test_void_a_final_bill(http):
    draft = await http.post(f"/v1/customerBill/{BOB}/void", {"reason": "wrong plan"})
    assert draft.status == 409 and "only a final invoice is voided" in draft.fields()["state"]
    credit = await http.post(
        f"/v1/customerBill/{BOB}/creditNote", {"reason": "r", "lines": [{"position": 1}]},
        headers=KEY,
    )  # fmt: skip
    assert credit.status == 409 and "only a final invoice is credited" in credit.fields()["state"]
    assert (await http.post(f"/v1/customerBill/{BOB}/finalize")).status == 200
    blank = await http.post(f"/v1/customerBill/{BOB}/void", {"reason": "   "})
    assert blank.status == 422 and "reason" in blank.fields()
    voided = await http.post(f"/v1/customerBill/{BOB}/void", {"reason": "wrong plan"})
    assert voided.status == 200, voided.body
    bill = voided.body
    assert (bill["state"], bill["lifecycleState"], bill["voidReason"]) == (
        "cancelled",
        "void",
        "wrong plan",
    )
    assert bill["billNo"] == "INV-000001"  # numbers are never reused
    assert bill["amountDue"] == money("0.00")
    assert bill["taxIncludedAmount"] == money("28.56")  # 24.00 + 4.56
    twice = await http.post(f"/v1/customerBill/{BOB}/void", {"reason": "again"})
    assert twice.status == 409
    listed = await http.get("/v1/customerBill", params={"state": "cancelled"})
    assert [b["id"] for b in listed.body] == [BOB]


async def test_viewer_may_not_change_bills(http):
    viewer = http.as_(VIEWER_TOKEN)
    for path, body, headers in (
        (f"/v1/customerBill/{ALICE}/finalize", None, None),
        (f"/v1/customerBill/{ALICE}/void", {"reason": "x"}, None),
        (f"/v1/customerBill/{ALICE}/creditNote", {"reason": "x", "lines": [{"position": 1}]}, KEY),
        ("/v1/customerBillOnDemand", {"billingAccount": {"id": "alice"}}, None),
    ):
        reply = await viewer.post(path, body, headers=headers)
        assert reply.status == 403, path
    assert (await http.get(f"/v1/customerBill/{ALICE}")).body["lifecycleState"] == "draft"
    assert (await http.as_(None).get("/v1/customerBill")).status == 401


# --------------------------------------------------------------------------- errors


async def test_unknown_bills_and_credit_notes_are_404(http):
    unknown = "in_00000000000000000000"
    for method, path, body, headers in (
        ("GET", f"/v1/customerBill/{unknown}", None, None),
        ("GET", f"/v1/customerBill/{unknown}/appliedCustomerBillingRate", None, None),
        ("GET", f"/v1/customerBill/{unknown}/creditNote", None, None),
        ("POST", f"/v1/customerBill/{unknown}/finalize", None, None),
        ("POST", f"/v1/customerBill/{unknown}/void", {"reason": "x"}, None),
        ("POST", f"/v1/customerBill/{unknown}/creditNote",
         {"reason": "x", "lines": [{"position": 1}]}, KEY),
        ("GET", "/v1/creditNote/cn_00000000000000000000", None, None),
    ):  # fmt: skip
        reply = await http.call(method, path, body, headers=headers)
        assert reply.status == 404, (method, path, reply.body)
        assert "no " in reply.fields()["id"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/customerBill/a%20b", {}, "bill_id"),
        ("/v1/customerBill/a%20b/appliedCustomerBillingRate", {}, "bill_id"),
        ("/v1/creditNote/a%20b", {}, "credit_note_id"),
        ("/v1/customerBill", {"state": "paid"}, "state"),
        ("/v1/customerBill", {"billingAccount.id": "a b"}, "billingAccount.id"),
        ("/v1/customerBill", {"limit": "0"}, "limit"),
        (f"/v1/customerBill/{ALICE}/appliedCustomerBillingRate", {"detail": "yes"}, "detail"),
    ],
)
async def test_malformed_paths_and_queries_are_400(http, path, params, field):
    reply = await http.get(path, params=params)
    assert reply.status == 400, reply.body
    assert field in reply.fields()


@pytest.mark.parametrize(
    ("body", "headers", "fields"),
    [
        ({"reason": "x", "lines": [{"position": 1}]}, {}, {"Idempotency-Key": "is required"}),
        ({"reason": "x", "lines": [{"position": 1}]}, {"Idempotency-Key": "a b"},
         {"Idempotency-Key": "must be"}),
        ({"reason": "x"}, {}, {"Idempotency-Key": "is required", "lines": "is required"}),
        ({"reason": "x", "lines": []}, KEY, {"lines": "at least 1"}),
        ({"reason": "", "lines": [{"position": 1}]}, KEY, {"reason": "must not be empty"}),
        ({"reason": "x", "lines": [{"position": "1"}]}, KEY,
         {"lines[0].position": "must be an integer"}),
        ({"reason": "x", "lines": [{"position": 1, "amount": "1,50"}]}, KEY,
         {"lines[0].amount": "must match"}),
        ({"reason": "x", "lines": [{"position": 1, "amount": 1.5}]}, KEY,
         {"lines[0].amount": "must be a string"}),
        ({"reason": "x", "lines": [{"position": 1, "more": 1}]}, KEY,
         {"lines[0].more": "unknown field"}),
    ],
)  # fmt: skip
async def test_bad_credit_note_requests_are_400_naming_the_field(http, body, headers, fields):
    assert (await http.post(f"/v1/customerBill/{ALICE}/finalize")).status == 200
    reply = await http.post(f"/v1/customerBill/{ALICE}/creditNote", body, headers=headers)
    assert reply.status == 400, reply.body
    found = reply.fields()
    assert set(found) == set(fields)
    for field, why in fields.items():
        assert why in found[field]


async def test_bad_void_bodies_are_400_or_415(http):
    missing = await http.post(f"/v1/customerBill/{ALICE}/void", {})
    assert (missing.status, missing.fields()) == (400, {"reason": "is required"})
    extra = await http.post(f"/v1/customerBill/{ALICE}/void", {"reason": "x", "why": 1})
    assert (extra.status, extra.fields()) == (400, {"why": "unknown field"})
    garbled = await http.post(f"/v1/customerBill/{ALICE}/void", data=b"{not json")
    assert garbled.status == 400 and "body" in garbled.fields()
    text = await http.post(
        f"/v1/customerBill/{ALICE}/void", data=b"x", headers={"Content-Type": "text/plain"}
    )
    assert text.status == 415


# --------------------------------------------------------------------------- the database


async def test_the_embedded_sqlite_database_is_created_on_first_use(
    redis_client, engine, catalog_active, tmp_path
):
    path = tmp_path / "new" / "billing.db"
    async with api(redis_client, engine, f"sqlite:///{path}") as client:
        assert not path.exists()  # not at start-up: only when a bill route needs it
        reply = await client.get("/v1/customerBill")
        assert (reply.status, reply.body, reply.headers["X-Total-Count"]) == (200, [], "0")
    billing = create_billing_engine(f"sqlite:///{path}")
    try:
        assert check_revision(billing) == head_revision()
    finally:
        billing.dispose()


async def test_a_postgresql_database_is_never_migrated_behind_the_operator(
    redis_client,
    engine,
    catalog_active,
    postgres_url,  # noqa: F811
):
    async with api(redis_client, engine, postgres_url) as client:
        reply = await client.get("/v1/customerBill")
        assert reply.status == 503, reply.body
        assert "ocs billing migrate" in reply.body["error"]["message"]
        assert "postgres@" not in reply.body["error"]["message"]  # no URL in the answer
        assert reply.headers["Retry-After"] == "1"
        migrate(postgres_url)  # the operator migrates: the API works, without a restart
        reply = await client.get("/v1/customerBill")
        assert (reply.status, reply.body) == (200, [])
    billing = create_billing_engine(postgres_url)
    try:
        assert revision_status(billing).current
    finally:
        billing.dispose()


# --------------------------------------------------------------------------- on demand


def _total(bill) -> int:
    return parse_decimal(bill["taxIncludedAmount"]["value"], 2)


async def test_an_off_cycle_bill_on_demand(http, redis_client):
    created = await http.post(
        "/v1/accounts", {"id": "carol", "kind": "postpaid", "plan": "postpaid-standard"}
    )
    assert created.status == 201, created.body
    # created just now: nothing to bill yet (its first day is billed from that day on)
    early = await http.post("/v1/customerBillOnDemand", {"billingAccount": {"id": "carol"}})
    assert early.status == 422 and "nothing to bill" in early.fields()["billingAccount.id"]
    # a customer for a while: the days of this period so far
    await redis_client.hset(keys.account("carol"), "created", int(time.time()) - 40 * 86_400)
    reply = await http.post(
        "/v1/customerBillOnDemand",
        {"billingAccount": {"id": "carol"}, "description": "close"},
        headers={"Idempotency-Key": "close-carol"},
    )
    assert reply.status == 201, reply.body
    again = await http.post(
        "/v1/customerBillOnDemand",
        {"billingAccount": {"id": "carol"}, "description": "close"},
        headers={"Idempotency-Key": "close-carol"},
    )
    assert reply.headers["Idempotent-Replayed"] == "false"
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.body["customerBill"] == reply.body["customerBill"]
    assert (reply.body["@type"], reply.body["state"]) == ("CustomerBillOnDemand", "done")
    assert reply.body["description"] == "close"
    bill = reply.body["customerBill"]
    assert reply.headers["Location"] == bill["href"] == f"/v1/customerBill/{bill['id']}"
    assert (bill["category"], bill["runType"], bill["lifecycleState"]) == (
        "offCycle",
        "offCycle",
        "final",
    )
    assert bill["billNo"] is not None and bill["billingAccount"]["id"] == "carol"
    taxes = sum(parse_decimal(t["taxAmount"]["value"], 2) for t in bill["taxItem"])
    assert _total(bill) == parse_decimal(bill["taxExcludedAmount"]["value"], 2) + taxes
    listed = await http.get("/v1/customerBill", params={"billingAccount.id": "carol"})
    assert [b["id"] for b in listed.body] == [bill["id"]]


@pytest.mark.parametrize(
    ("account_id", "why"),
    [("nobody", "no account 'nobody'"), ("alice", "prepaid")],
)
async def test_an_off_cycle_bill_refused_is_422(http, alice_prepaid, account_id, why):
    reply = await http.post("/v1/customerBillOnDemand", {"billingAccount": {"id": account_id}})
    assert reply.status == 422, reply.body
    assert why in reply.fields()["billingAccount.id"]


async def test_an_off_cycle_bill_with_a_malformed_idempotency_key_is_400(http):
    """The key is optional there, but one given must be a key: nothing is billed."""
    reply = await http.post(
        "/v1/customerBillOnDemand",
        {"billingAccount": {"id": "carol"}},
        headers={"Idempotency-Key": "a b"},
    )
    assert reply.status == 400, reply.body
    assert "must be" in reply.fields()["Idempotency-Key"]
    listed = await http.get("/v1/customerBill", params={"billingAccount.id": "carol"})
    assert listed.body == []


@pytest.fixture
async def alice_prepaid(http):
    """alice in Redis as a prepaid account (the bill run's alice was made up)."""
    from tests.ocs.api.conftest import PREPAID

    assert (await http.post("/v1/accounts", PREPAID)).status == 201


async def test_bad_on_demand_bodies_are_400(http):
    reply = await http.post("/v1/customerBillOnDemand", {"billingAccount": {}})
    assert (reply.status, reply.fields()) == (400, {"billingAccount.id": "is required"})
    reply = await http.post("/v1/customerBillOnDemand", {"account": "x"})
    assert reply.status == 400
    assert set(reply.fields()) == {"billingAccount", "account"}
