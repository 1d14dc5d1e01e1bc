"""Bearer tokens and roles: 401 without a valid token on every /v1 route, 403 for a
viewer on every write, nothing changed by a viewer, tokens never logged."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.api.auth import role_of_token
from ocs.api.routes import ROUTES
from ocs.billing.compose import ComposedInvoice, InvoiceLine
from ocs.billing.database import migrate, open_database
from ocs.billing.invoices import write_invoice
from ocs.billing.lifecycle import CreditLine, create_credit_note, finalize
from ocs.billing.numbering import ensure_sequence
from ocs.billing.payments.allocation import (
    AccountMoney,
    PaymentRequest,
    RefundRequest,
    record_payment,
    refund_credit,
)
from ocs.config import ApiToken, Settings, load_settings
from ocs.metrics import Metrics
from quota_engine.store import keys
from tests.ocs.api.conftest import (
    ADMIN_TOKEN,
    PREPAID,
    SETTINGS,
    TOKENS,
    VIEWER_TOKEN,
    Http,
    digest,
    healthy,
)

SAMPLE = {
    "account_id": "alice",
    "bucket_id": "main",
    "identity": "msisdn:491700000001",
    "version": "demo-1",
    "bill_id": "in_00000000000000000000",
    "credit_note_id": "cn_00000000000000000000",
    "payment_id": "pay_00000000000000000000",
    "refund_id": "ref_00000000000000000000",
}
BODIES = {
    "/v1/catalog/active": {"version": "demo-1"},
    "/v1/accounts": {**PREPAID, "id": "bob", "subscriptions": []},
    "/v1/accounts/{account_id}": {"status": "barred"},
    "/v1/accounts/{account_id}/subscriptions": {"identity": "msisdn:491700000009"},
    "/v1/accounts/{account_id}/topupBalance": {"amount": 1},
    "/v1/accounts/{account_id}/adjustBalance": {"amount": 1, "reason": "x"},
    "/v1/customerBill/{bill_id}/void": {"reason": "x"},
    "/v1/customerBill/{bill_id}/creditNote": {"reason": "x", "lines": [{"position": 1}]},
    "/v1/customerBillOnDemand": {"billingAccount": {"id": "dora"}},
    "/v1/payment": {"account": {"id": "alice"}, "amount": {"unit": "EUR", "value": "10.00"}},
    "/v1/refund": {
        "account": {"id": "alice"},
        "amount": {"unit": "EUR", "value": "1.00"},
        "reason": "x",
    },
}


def concrete(path: str, sample: dict[str, str] = SAMPLE) -> str:
    return re.sub(r"{(\w+)}", lambda m: {**SAMPLE, **sample}[m.group(1)], path)


def seed_bills() -> dict[str, dict[str, str]]:
    """Bills in the API's billing database for the admin to act on, per route: a draft to
    finalise, a final bill to void, a final bill with a credit note for the rest."""
    url = SETTINGS.billing_database_url
    migrate(url)
    engine = open_database(url)
    tag, now = uuid.uuid4().hex[:10], int(time.time())
    lines = (
        InvoiceLine("recurring", "Fee", 20_000_000, 20_000_000, tax_category="standard",
                    tax_rate_ppm=190_000),
        InvoiceLine("tax", "VAT", 3_800_000, 3_800_000, tax_category="standard",
                    tax_rate_ppm=190_000),
    )  # fmt: skip
    ids = [f"in_{tag}_{n}" for n in range(3)]
    try:
        with engine.begin() as connection:
            ensure_sequence(connection, "default", "invoice", "INV-{seq:06d}")
            for n, document in enumerate(ids):
                invoice = ComposedInvoice(f"auth-{tag}-{n}", "EUR", 2, now - 86_400, now, lines)
                write_invoice(
                    connection, invoice, document=document, entity="default", bill_run_id=None,
                    now=now,
                )  # fmt: skip
            for document in ids[1:]:
                finalize(connection, document, now=now, actor="test")
            note, _ = create_credit_note(
                connection, ids[2], [CreditLine(1, 1_000_000)], reason="x", now=now, actor="test"
            )
            payer = f"auth-{tag}-payer"
            paid = record_payment(
                connection, PaymentRequest(payer, 5_000_000, "EUR"), now=now,
                known=AccountMoney("EUR", 2),
            )  # fmt: skip
            refunded = refund_credit(connection, RefundRequest(payer, 1_000_000, "EUR"), now=now)
    finally:
        engine.dispose()
    rest = {
        "bill_id": ids[2],
        "credit_note_id": note,
        "payment_id": paid.id,
        "refund_id": refunded.id,
    }
    return {
        "finalize_customer_bill": {"bill_id": ids[0]},
        "void_customer_bill": {"bill_id": ids[1]},
        "get_payment_balance": {"account_id": payer},
        "": rest,
    }


async def call(http: Http, route, document=None, sample: dict[str, str] = SAMPLE):
    body = BODIES.get(route.path)
    if route.path.startswith("/v1/catalog/v") and route.method == "POST":
        body = document
    if route.path == "/v1/bulk/accounts":
        data = b'{"id": "carol", "kind": "prepaid", "plan": "prepaid-basic"}\n'
        return await http.call(route.method, concrete(route.path), data=data)
    return await http.call(
        route.method,
        concrete(route.path, sample),
        body,
        headers={"Idempotency-Key": f"auth-{route.operation_id}"},
    )


async def test_every_v1_route_needs_a_token(http, alice):
    for route in ROUTES:
        reply = await call(http.as_(None), route)
        assert reply.status == 401, (route.method, route.path, reply.body)
        assert reply.headers["WWW-Authenticate"] == 'Bearer realm="ocs-api"'
        assert reply.body == {"error": {"status": 401, "message": "missing bearer token"}}
    # unknown routes too, before 404/405: nothing is learnt without a token
    for method, path in (("GET", "/v1/nothing"), ("DELETE", "/v1/accounts"), ("GET", "/v1")):
        assert (await http.as_(None).call(method, path)).status == 401


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-0123456789",
        f"Basic {ADMIN_TOKEN}",
        "Bearer",
        f"Bearer {digest(ADMIN_TOKEN)}",  # the digest is not the token
        f"bearer  {ADMIN_TOKEN}x",
    ],
)
async def test_a_wrong_token_is_401_invalid_token(http, header):
    reply = await http.as_(None).get("/v1/accounts", headers={"Authorization": header})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="ocs-api", error="invalid_token"'


async def test_scheme_is_case_insensitive(http):
    reply = await http.as_(None).get(
        "/v1/accounts", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )
    assert reply.status == 200


async def test_viewer_reads_but_gets_403_on_every_write_and_changes_nothing(
    http, alice, redis_client, catalog_active
):
    viewer = http.as_(VIEWER_TOKEN)
    document = (await http.get("/v1/catalog/active")).body["document"]
    before = {k: await redis_client.dump(k) for k in await redis_client.keys("*")}
    for route in ROUTES:
        reply = await call(viewer, route, document)
        if route.role == "admin":
            assert reply.status == 403, (route.method, route.path, reply.body)
            assert "needs admin" in reply.body["error"]["message"]
        else:
            assert reply.status not in (401, 403), (route.method, route.path)
    after = {k: await redis_client.dump(k) for k in await redis_client.keys("*")}
    assert after == before


async def test_admin_may_do_every_route(http, alice, catalog_active, redis_client):
    document = (await http.get("/v1/catalog/active")).body["document"]
    samples = seed_bills()
    dora = {"id": "dora", "kind": "postpaid", "plan": "postpaid-standard"}
    assert (await http.post("/v1/accounts", dora)).status == 201  # billed on demand
    # a customer for 40 days: its on-demand bill has fee days (one created today has none)
    await redis_client.hset(keys.account("dora"), "created", int(time.time()) - 40 * 86_400)
    deleting_last = sorted(ROUTES, key=lambda r: (r.method == "DELETE", r.path.count("/") < 4))
    for route in deleting_last:
        sample = samples.get(route.operation_id, samples[""])
        reply = await call(http, route, document, sample)
        assert reply.status < 400, (route.method, route.path, reply.body)


async def test_no_tokens_configured_refuses_everything(redis_client, engine):
    app = create_app(Settings(), Metrics(), healthy, store=redis_client, sessions=engine)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for token in (ADMIN_TOKEN, "0" * 64):
            response = await client.get(
                "/v1/accounts", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 401
        assert (await client.get("/healthz")).status == 200  # always open


async def test_tokens_from_the_environment(redis_client, engine):
    settings = load_settings(
        env={
            "OCS_HTTP_TOKENS": f"viewer:{digest(VIEWER_TOKEN)},admin:{digest(ADMIN_TOKEN).upper()}"
        }
    )
    assert settings.http_tokens == TOKENS[::-1]
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.get("/v1/accounts", headers=headers)).status == 200


def test_tokens_in_the_config_file(tmp_path):
    path = tmp_path / "ocs.toml"
    path.write_text(
        f'[[http.tokens]]\nsha256 = "{digest(ADMIN_TOKEN)}"\nrole = "admin"\n'
        f'[[http.tokens]]\nsha256 = "{digest(VIEWER_TOKEN)}"\nrole = "viewer"\n'
    )
    settings = load_settings(path, env={})
    assert settings.http_tokens == TOKENS
    assert digest(ADMIN_TOKEN) not in repr(settings)
    assert settings.redacted()["http_tokens"] == "<hidden>"
    path.write_text('[http]\ntokens = [{sha256 = "abc", role = "root"}]\n')
    with pytest.raises(Exception, match="http.tokens: must be a list of tokens") as info:
        load_settings(path, env={})
    assert "abc" not in str(info.value)


def test_role_of_token_takes_the_highest_role_and_needs_bearer():
    both = (ApiToken(digest("t" * 20), "viewer"), ApiToken(digest("t" * 20), "admin"))
    assert role_of_token("Bearer " + "t" * 20, both) == "admin"
    assert role_of_token("Bearer " + "t" * 20, ()) is None
    assert role_of_token(None, both) is None
    assert role_of_token("Bearer \udcff", both) is None


async def test_tokens_are_never_logged(http, caplog):
    caplog.set_level(logging.DEBUG)
    await http.get("/v1/accounts")
    await http.as_("Bearer-wrong-0123456789").get("/v1/accounts")
    await http.as_(VIEWER_TOKEN).post("/v1/accounts", {})
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for secret in (ADMIN_TOKEN, VIEWER_TOKEN, digest(ADMIN_TOKEN), digest(VIEWER_TOKEN)):
        assert secret not in text


async def test_metrics_stays_open_or_protected_by_its_own_token(redis_client, engine):
    settings = dataclasses.replace(
        Settings(), http_tokens=TOKENS, http_metrics_token="metrics-token-0123456789"
    )
    app = create_app(settings, Metrics(), healthy, store=redis_client, sessions=engine)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/metrics")).status == 401
        headers = {"Authorization": "Bearer metrics-token-0123456789"}
        assert (await client.get("/metrics", headers=headers)).status == 200
        # an API token is not a metrics token, and the reverse
        api = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.get("/metrics", headers=api)).status == 401
        assert (await client.get("/v1/accounts", headers=headers)).status == 401


async def test_every_write_is_audited_without_token_or_identity(http, alice, caplog):
    caplog.set_level(logging.INFO, logger="ocs.api")
    await http.topup("alice", 1, "audit-1")
    await http.as_(VIEWER_TOKEN).patch("/v1/accounts/alice", {"status": "barred"})
    await http.delete("/v1/accounts/alice/subscriptions/msisdn:491700000001")
    await http.get("/v1/accounts/alice")  # reads are not audited
    events = [r.ocs_event[1] for r in caplog.records if r.getMessage() == "api_write"]
    assert events == [
        {"method": "POST", "route": "/v1/accounts/{account_id}/topupBalance",
         "account": "*lice", "role": "admin", "status": 201},
        {"method": "PATCH", "route": "/v1/accounts/{account_id}",
         "account": "*lice", "role": "viewer", "status": 403},
        {"method": "DELETE", "route": "/v1/accounts/{account_id}/subscriptions/{identity}",
         "account": "*lice", "role": "admin", "status": 204},
    ]  # fmt: skip
