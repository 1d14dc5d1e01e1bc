"""Accounts, identities and the identity index over real HTTP."""

from __future__ import annotations

import time

from ocs.api.context import API_KEY
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.ocs.api.conftest import EUR, MSISDN, PREPAID, events_of, next_events

# --------------------------------------------------------------------------- create


async def test_create_account_with_identities_and_buckets(http):
    reply = await http.post("/v1/accounts", PREPAID)
    assert reply.status == 201
    assert reply.headers["Location"] == "/v1/accounts/alice"
    assert reply.body["outcome"] == "created"
    account = reply.body["account"]
    assert account["id"] == "alice"
    assert account["currency"] == "EUR"  # the catalog's, by default
    assert account["status"] == "active"
    assert account["subscriptions"] == [MSISDN]
    assert isinstance(account["created"], int)
    buckets = await http.get("/v1/accounts/alice/buckets")
    assert [(b["id"], b["amount"]) for b in buckets.body] == [("main", 10 * EUR)]


async def test_create_with_allowances_uses_the_plan(http):
    body = {**PREPAID, "allowances": ["data-1gb"]}
    assert (await http.post("/v1/accounts", body)).status == 201
    bucket = await http.get("/v1/accounts/alice/buckets/data-1gb")
    assert bucket.status == 200
    assert bucket.body["kind"] == "units" and bucket.body["unit"] == "octets"


async def test_create_same_account_again_is_200_unchanged(http, alice):
    reply = await http.post("/v1/accounts", PREPAID)
    assert reply.status == 200
    assert reply.body["outcome"] == "unchanged"


async def test_create_same_account_adds_missing_identities(http, alice):
    body = {**PREPAID, "subscriptions": [MSISDN, "imsi:001010000000001"]}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 200
    assert reply.body["account"]["subscriptions"] == ["imsi:001010000000001", MSISDN]


async def test_create_differing_account_is_409_naming_fields_and_writes_nothing(http, alice):
    body = {
        **PREPAID,
        "plan": "prepaid-basic",
        "bill_cycle_day": 5,
        "subscriptions": ["msisdn:4917099"],
    }
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 409
    assert reply.fields() == {"bill_cycle_day": "differs from the stored account"}
    account = await http.get("/v1/accounts/alice")
    assert account.body["subscriptions"] == [MSISDN]


async def test_create_names_every_bad_field(http):
    body = {"id": "bad id", "kind": "gold", "credit_limit": -1, "buckets": [{"id": "main"}], "x": 1}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 400
    assert reply.body["error"]["message"] == "invalid request"
    fields = reply.fields()
    assert set(fields) == {"id", "kind", "plan", "credit_limit", "buckets[0].amount", "x"}
    assert fields["plan"] == "is required"
    assert fields["x"] == "unknown field"


async def test_create_refused_by_provisioning_names_the_field(http):
    body = {**PREPAID, "plan": "no-such-plan"}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 422  # schema-valid: refused by meaning (ocs.api.errors)
    assert "unknown plan 'no-such-plan'" in reply.fields()["plan"]


async def test_create_with_an_identity_of_another_account_is_422(http, alice):
    body = {**PREPAID, "id": "bob"}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 422
    assert "belongs to account 'alice'" in reply.fields()["subscriptions[0]"]
    assert (await http.get("/v1/accounts/bob")).status == 404


async def test_create_without_an_active_catalog_is_422(bare_http):
    reply = await bare_http.post("/v1/accounts", PREPAID)
    assert reply.status == 422
    assert reply.fields() == {"plan": "no catalog is active"}


async def test_create_body_not_json_or_not_an_object(http):
    reply = await http.call("POST", "/v1/accounts", data=b"{not json")
    assert reply.status == 400
    assert reply.fields()["body"].startswith("not valid JSON")
    reply = await http.post("/v1/accounts", [1, 2])
    assert (reply.status, reply.fields()) == (400, {"body": "must be an object"})
    reply = await http.call("POST", "/v1/accounts", data=b"")
    assert reply.fields() == {"body": "a JSON body is required"}


# --------------------------------------------------------------------------- read and list


async def test_get_account_and_404_and_400(http, alice):
    reply = await http.get("/v1/accounts/alice")
    assert reply.status == 200 and reply.body["plan"] == "prepaid-basic"
    missing = await http.get("/v1/accounts/nobody")
    assert missing.status == 404
    assert missing.fields() == {"account_id": "no such account"}
    bad = await http.get("/v1/accounts/-bad")
    assert bad.status == 400 and "account_id" in bad.fields()


async def test_list_accounts_pages_with_total(http):
    for i in range(5):
        body = {"id": f"acct-{i}", "kind": "prepaid", "plan": "prepaid-basic"}
        assert (await http.post("/v1/accounts", body)).status == 201
    reply = await http.get("/v1/accounts", params={"offset": 1, "limit": 2})
    assert reply.status == 200
    assert reply.headers["X-Total-Count"] == "5"
    assert [a["id"] for a in reply.body] == ["acct-1", "acct-2"]
    tail = await http.get("/v1/accounts", params={"offset": 4})
    assert [a["id"] for a in tail.body] == ["acct-4"]
    beyond = await http.get("/v1/accounts", params={"offset": 10})
    assert (beyond.body, beyond.headers["X-Total-Count"]) == ([], "5")


async def test_list_bad_paging_names_each_parameter(http):
    reply = await http.get("/v1/accounts", params={"offset": "-1", "limit": "0"})
    assert reply.status == 400
    assert set(reply.fields()) == {"offset", "limit"}
    reply = await http.get("/v1/accounts", params={"limit": "1001"})
    assert reply.fields() == {"limit": "must be an integer from 1 to 1000"}
    reply = await http.get("/v1/accounts", params={"offset": "abc"})
    assert set(reply.fields()) == {"offset"}


# --------------------------------------------------------------------------- patch


async def test_patch_status_bar_publishes_account_barred(http, alice, redis_client):
    pubsub = await events_of(redis_client)
    reply = await http.patch("/v1/accounts/alice", {"status": "barred"})
    assert reply.status == 200 and reply.body["status"] == "barred"
    assert await next_events(pubsub, 1) == [{"event": "account_barred", "account": "alice"}]
    await pubsub.aclose()
    reply = await http.patch("/v1/accounts/alice", {"status": "active"})
    assert reply.body["status"] == "active"


async def test_patch_plan_and_credit_limit(http):
    body = {"id": "corp", "kind": "postpaid", "plan": "postpaid-standard", "credit_limit": 5 * EUR}
    assert (await http.post("/v1/accounts", body)).status == 201
    reply = await http.patch("/v1/accounts/corp", {"credit_limit": 50 * EUR, "status": "suspended"})
    assert reply.status == 200
    assert (reply.body["credit_limit"], reply.body["status"]) == (50 * EUR, "suspended")


async def test_patch_errors(http, alice):
    reply = await http.patch("/v1/accounts/alice", {})
    assert reply.status == 400 and "body" in reply.fields()
    reply = await http.patch("/v1/accounts/alice", {"status": "closed", "kind": "postpaid"})
    assert reply.status == 400 and set(reply.fields()) == {"status", "kind"}
    reply = await http.patch("/v1/accounts/alice", {"plan": "postpaid-standard"})
    assert reply.status == 422 and "postpaid" in reply.fields()["plan"]
    reply = await http.patch("/v1/accounts/alice", {"credit_limit": 5})
    assert reply.status == 422  # the document cannot say "0 for prepaid"
    assert reply.fields() == {"credit_limit": "must be 0 for a prepaid account"}
    reply = await http.patch("/v1/accounts/nobody", {"status": "barred"})
    assert reply.status == 404


async def test_patch_closed_account_is_422(http, alice):
    assert (await http.delete("/v1/accounts/alice")).status == 200
    reply = await http.patch("/v1/accounts/alice", {"status": "active"})
    assert reply.status == 422
    assert reply.fields() == {"account_id": "is closed"}


# --------------------------------------------------------------------------- close


async def test_close_releases_identities_and_aborts_sessions(http, alice, redis_client):
    pubsub = await events_of(redis_client)
    reply = await http.delete("/v1/accounts/alice")
    assert reply.status == 200
    assert reply.body["previous_status"] == "active"
    assert reply.body["released"] == [MSISDN]
    assert reply.body["account"]["status"] == "closed"
    assert reply.body["account"]["subscriptions"] == []
    assert await next_events(pubsub, 1) == [{"event": "account_barred", "account": "alice"}]
    assert await redis_client.get(keys.subscriber(MSISDN)) is None
    again = await http.delete("/v1/accounts/alice")
    assert (again.status, again.body["previous_status"], again.body["released"]) == (
        200,
        "closed",
        [],
    )
    assert await next_events(pubsub, 1, timeout=0.2) == []
    await pubsub.aclose()
    # the id is not reused; the identity can move on
    assert (await http.post("/v1/accounts", PREPAID)).status == 409
    bob = {**PREPAID, "id": "bob"}
    assert (await http.post("/v1/accounts", bob)).status == 201


async def test_close_unknown_or_bad_id(http):
    assert (await http.delete("/v1/accounts/nobody")).status == 404
    assert (await http.delete("/v1/accounts/_x")).status == 400


# --------------------------------------------------------------------------- subscriptions


async def test_subscriptions_add_list_remove(http, alice):
    path = "/v1/accounts/alice/subscriptions"
    sip = "sip:sip:alice@example.net"
    added = await http.post(path, {"identity": sip})
    assert (added.status, added.body) == (201, {"identity": sip, "account": "alice", "added": True})
    again = await http.post(path, {"identity": sip})
    assert (again.status, again.body["added"]) == (200, False)
    listed = await http.get(path, params={"limit": 1})
    assert (listed.body, listed.headers["X-Total-Count"]) == ([MSISDN], "2")
    found = await http.get(f"/v1/identities/{sip}")
    assert found.body == {"identity": sip, "account": "alice"}
    removed = await http.delete(f"{path}/{sip}")
    assert (removed.status, removed.body) == (204, None)
    assert (await http.get(f"/v1/identities/{sip}")).status == 404
    assert (await http.delete(f"{path}/{sip}")).status == 404


async def test_subscription_errors(http, alice):
    path = "/v1/accounts/alice/subscriptions"
    bad = await http.post(path, {"identity": "msisdn:12"})
    assert bad.status == 400 and "E.164" in bad.fields()["identity"]
    missing = await http.post(path, {})
    assert missing.fields() == {"identity": "is required"}
    assert (
        await http.post("/v1/accounts/nobody/subscriptions", {"identity": MSISDN})
    ).status == 404
    assert (await http.get("/v1/accounts/nobody/subscriptions")).status == 404
    bob = {"id": "bob", "kind": "prepaid", "plan": "prepaid-basic"}
    assert (await http.post("/v1/accounts", bob)).status == 201
    taken = await http.post("/v1/accounts/bob/subscriptions", {"identity": MSISDN})
    assert taken.status == 409
    assert "belongs to account 'alice'" in taken.fields()["identity"]
    assert (await http.delete(f"/v1/accounts/bob/subscriptions/{MSISDN}")).status == 404
    assert (await http.delete("/v1/accounts/alice/subscriptions/phone:1")).status == 400
    assert (await http.get("/v1/identities/nonsense")).status == 400


async def test_subscription_add_to_closed_account_is_422(http, alice):
    await http.delete("/v1/accounts/alice")
    reply = await http.post("/v1/accounts/alice/subscriptions", {"identity": MSISDN})
    assert reply.status == 422


async def test_create_racing_another_create_with_other_values_is_409(http, alice, monkeypatch):
    api = http.client.server.app[API_KEY]
    real = api.accounts.get_account
    calls = []

    async def not_yet(account_id):  # the pre-check misses the account created meanwhile
        calls.append(account_id)
        return None if len(calls) == 1 else await real(account_id)

    monkeypatch.setattr(api.accounts, "get_account", not_yet)
    reply = await http.post("/v1/accounts", {**PREPAID, "bill_cycle_day": 7})
    assert reply.status == 409
    assert reply.fields() == {"id": "exists"}


# --------------------------------------------------------------------------- billing preferences


async def with_second_prepaid_plan(redis_client) -> None:
    """Activate a catalog with a second prepaid plan, "prepaid-plus"."""
    document = demo_catalog_document()
    document["version"] = "demo-plans"
    document["plans"].append({**document["plans"][0], "id": "prepaid-plus"})
    catalogs = CatalogStore(redis_client)
    await catalogs.activate(await catalogs.save(document))


async def test_billing_preferences_default_and_are_shown(http, alice):
    account = (await http.get("/v1/accounts/alice")).body
    assert (account["tax_exempt"], account["bill_separately"], account["itemisation"]) == (
        False,
        False,
        "detailed",
    )
    listed = (await http.get("/v1/accounts")).body
    assert listed[0]["itemisation"] == "detailed"


async def test_create_with_billing_preferences_stores_and_shows_them(http, redis_client):
    parent = {"id": "corp", "kind": "postpaid", "plan": "postpaid-standard"}
    assert (await http.post("/v1/accounts", parent)).status == 201
    child = {
        "id": "line-1",
        "kind": "postpaid",
        "plan": "postpaid-standard",
        "parent": "corp",
        "tax_exempt": True,
        "bill_separately": True,
        "itemisation": "summary",
    }
    reply = await http.post("/v1/accounts", child)
    assert reply.status == 201, reply.body
    shown = reply.body["account"]
    assert (shown["tax_exempt"], shown["bill_separately"], shown["itemisation"]) == (
        True,
        True,
        "summary",
    )
    stored = await redis_client.hgetall(keys.account("line-1"))
    assert (stored[b"tax_exempt"], stored[b"bill_separately"], stored[b"itemisation"]) == (
        b"1",
        b"1",
        b"summary",
    )
    # the same again: unchanged; with another itemisation: 409 naming it
    assert (await http.post("/v1/accounts", child)).status == 200
    reply = await http.post("/v1/accounts", {**child, "itemisation": "detailed"})
    assert reply.status == 409
    assert reply.fields() == {"itemisation": "differs from the stored account"}


async def test_bad_billing_preferences_are_400_naming_each_field(http, alice):
    body = {**PREPAID, "id": "bob", "tax_exempt": "yes", "bill_separately": 1, "itemisation": "x"}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 400
    assert set(reply.fields()) == {"tax_exempt", "bill_separately", "itemisation"}
    reply = await http.patch("/v1/accounts/alice", {"itemisation": "full", "tax_exempt": None})
    assert reply.status == 400
    assert set(reply.fields()) == {"itemisation", "tax_exempt"}
    assert (await http.get("/v1/accounts/bob")).status == 404


async def test_patch_billing_preferences_and_back_to_the_defaults(http, alice, redis_client):
    reply = await http.patch("/v1/accounts/alice", {"itemisation": "summary", "tax_exempt": True})
    assert reply.status == 200
    assert (reply.body["itemisation"], reply.body["tax_exempt"]) == ("summary", True)
    assert await redis_client.hget(keys.account("alice"), "itemisation") == b"summary"
    reply = await http.patch("/v1/accounts/alice", {"itemisation": "detailed", "tax_exempt": False})
    assert (reply.body["itemisation"], reply.body["tax_exempt"]) == ("detailed", False)
    stored = await redis_client.hgetall(keys.account("alice"))
    assert b"itemisation" not in stored and b"tax_exempt" not in stored
    history = (await http.get("/v1/accounts/alice/balanceActionHistory")).body
    assert "plan_change" not in {e["type"] for e in history}  # the plan did not change


async def test_patch_plan_is_a_plan_change_in_the_history(http, alice, redis_client):
    await with_second_prepaid_plan(redis_client)
    before = int(time.time())
    reply = await http.patch("/v1/accounts/alice", {"plan": "prepaid-plus"})
    assert reply.status == 200 and reply.body["plan"] == "prepaid-plus"
    history = (await http.get("/v1/accounts/alice/balanceActionHistory")).body
    change = history[0]  # newest first
    assert change["type"] == "plan_change"
    assert (change["previous"], change["plan"]) == ("prepaid-basic", "prepaid-plus")
    assert before <= change["time"] <= int(time.time())
    assert (change["id"], change["amount"], change["bucket"], change["unit"]) == (
        None,
        None,
        None,
        None,
    )
    assert change["created_bucket"] is False
    # the same plan again changes nothing and appends nothing
    assert (await http.patch("/v1/accounts/alice", {"plan": "prepaid-plus"})).status == 200
    assert await redis_client.llen(keys.history("alice")) == len(history)
    reply = await http.patch("/v1/accounts/alice", {"plan": "prepaid-basic"})
    assert reply.status == 200
    history = (await http.get("/v1/accounts/alice/balanceActionHistory")).body
    assert [(e["previous"], e["plan"]) for e in history if e["type"] == "plan_change"] == [
        ("prepaid-plus", "prepaid-basic"),
        ("prepaid-basic", "prepaid-plus"),
    ]


async def test_a_refused_plan_change_writes_no_history(http, alice, redis_client):
    reply = await http.patch("/v1/accounts/alice", {"plan": "postpaid-standard"})
    assert reply.status == 422
    assert await redis_client.llen(keys.history("alice")) == 0
    assert (await http.get("/v1/accounts/alice")).body["plan"] == "prepaid-basic"
