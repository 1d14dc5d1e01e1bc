"""An account's reseller over real HTTP: stored in the account hash only when set,
shown, changed and unset, checked against the active catalog's resellers (422 naming
the field), and carried into the billing view (BillingAccount.reseller)."""

from __future__ import annotations

from ocs.billing_source import read_billing_accounts
from quota_engine.store import keys

POSTPAID = {"id": "nina", "kind": "postpaid", "plan": "postpaid-standard"}
DEMO_RESELLER = "nordic-mobile"  # quota_engine/catalog/demo_catalog.toml


async def test_reseller_round_trip_create_show_patch_unset(http, redis_client):
    reply = await http.post("/v1/accounts", {**POSTPAID, "reseller": DEMO_RESELLER})
    assert reply.status == 201, reply.body
    assert reply.body["account"]["reseller"] == DEMO_RESELLER
    stored = await redis_client.hgetall(keys.account("nina"))
    assert stored[b"reseller"] == DEMO_RESELLER.encode()
    assert (await http.get("/v1/accounts/nina")).body["reseller"] == DEMO_RESELLER
    (billing,) = [a for a in await read_billing_accounts(redis_client) if a.id == "nina"]
    assert billing.reseller == DEMO_RESELLER
    # another reseller at creation is a conflict naming it
    reply = await http.post("/v1/accounts", {**POSTPAID})
    assert reply.status == 409 and reply.fields() == {"reseller": "differs from the stored account"}
    reply = await http.patch("/v1/accounts/nina", {"reseller": None})
    assert reply.status == 200 and reply.body["reseller"] is None
    assert b"reseller" not in await redis_client.hgetall(keys.account("nina"))


async def test_an_account_without_reseller_has_none_and_no_field(http, redis_client):
    assert (await http.post("/v1/accounts", POSTPAID)).status == 201
    assert (await http.get("/v1/accounts/nina")).body["reseller"] is None
    assert b"reseller" not in await redis_client.hgetall(keys.account("nina"))


async def test_an_unknown_reseller_is_422_naming_the_field(http, redis_client):
    reply = await http.post("/v1/accounts", {**POSTPAID, "reseller": "nobody"})
    assert reply.status == 422, reply.body
    assert reply.fields() == {
        "reseller": "unknown reseller 'nobody' in catalog demo-1 (resellers: nordic-mobile)"
    }
    assert not await redis_client.exists(keys.account("nina"))
    assert (await http.post("/v1/accounts", POSTPAID)).status == 201
    reply = await http.patch("/v1/accounts/nina", {"reseller": "nobody"})
    assert reply.status == 422 and set(reply.fields()) == {"reseller"}
    assert (await http.get("/v1/accounts/nina")).body["reseller"] is None


async def test_a_reseller_that_is_no_id_is_400(http):
    reply = await http.post("/v1/accounts", {**POSTPAID, "reseller": "no spaces"})
    assert reply.status == 400 and "reseller" in reply.fields()
