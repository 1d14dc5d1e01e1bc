"""The customer contact of an account (name, address, locale, e-mail, delivery) over real
HTTP: stored in the account hash only when set, shown, changed, unset, and refused with
the field named when invalid."""

from __future__ import annotations

from quota_engine.store import keys

CONTACT = {
    "name": "Erika Mustermann",
    "address": "Musterstraße 1\n10115 Berlin\nDeutschland",
    "locale": "de_DE",
    "email": "erika@example.de",
    "delivery": "paper",
}
POSTPAID = {"id": "erika", "kind": "postpaid", "plan": "postpaid-standard"}


async def test_contact_round_trip_create_show_patch_unset(http, redis_client):
    reply = await http.post("/v1/accounts", {**POSTPAID, **CONTACT})
    assert reply.status == 201, reply.body
    assert {k: reply.body["account"][k] for k in CONTACT} == CONTACT
    stored = await redis_client.hgetall(keys.account("erika"))
    assert stored[b"address"] == CONTACT["address"].encode()
    assert (stored[b"locale"], stored[b"delivery"]) == (b"de_DE", b"paper")
    shown = (await http.get("/v1/accounts/erika")).body
    assert {k: shown[k] for k in CONTACT} == CONTACT
    # the same again is unchanged; another name is a conflict naming it
    assert (await http.post("/v1/accounts", {**POSTPAID, **CONTACT})).status == 200
    reply = await http.post("/v1/accounts", {**POSTPAID, **CONTACT, "name": "E. M."})
    assert reply.status == 409 and reply.fields() == {"name": "differs from the stored account"}
    # patch one field, then unset the optional ones: gone from the hash
    reply = await http.patch("/v1/accounts/erika", {"locale": "en_GB", "email": "e@example.org"})
    assert reply.status == 200
    assert (reply.body["locale"], reply.body["email"]) == ("en_GB", "e@example.org")
    unset = {"name": None, "address": None, "locale": None, "email": None, "delivery": "email"}
    reply = await http.patch("/v1/accounts/erika", unset)
    assert reply.status == 200
    assert {k: reply.body[k] for k in CONTACT} == unset
    stored = await redis_client.hgetall(keys.account("erika"))
    assert not {b"name", b"address", b"locale", b"email", b"delivery"} & set(stored)


async def test_contact_defaults_without_fields(http, redis_client):
    assert (await http.post("/v1/accounts", POSTPAID)).status == 201
    shown = (await http.get("/v1/accounts/erika")).body
    assert {k: shown[k] for k in CONTACT} == {
        "name": None,
        "address": None,
        "locale": None,
        "email": None,
        "delivery": "email",
    }
    stored = await redis_client.hgetall(keys.account("erika"))
    assert not {b"name", b"address", b"locale", b"email", b"delivery"} & set(stored)


async def test_invalid_contact_is_422_naming_each_field_and_writes_nothing(http):
    body = {
        **POSTPAID,
        "locale": "xx_QQ",
        "email": "not an address",
        "address": "\n".join(f"line {i}" for i in range(7)),
        "name": "tab\there",
    }
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 422, reply.body
    fields = reply.fields()
    assert set(fields) == {"locale", "email", "address", "name"}
    assert "xx_QQ" in fields["locale"]
    assert (await http.get("/v1/accounts/erika")).status == 404


async def test_a_locale_babel_does_not_know_or_without_territory_is_422(http):
    for locale in ("de_QQ", "de", "DE_de", "de-DE"):
        reply = await http.post("/v1/accounts", {**POSTPAID, "locale": locale})
        assert reply.status == 422, (locale, reply.body)
        assert set(reply.fields()) == {"locale"}


async def test_invalid_contact_patch_is_422_and_leaves_the_account(http, redis_client):
    assert (await http.post("/v1/accounts", {**POSTPAID, **CONTACT})).status == 201
    reply = await http.patch("/v1/accounts/erika", {"locale": "zz_ZZ", "email": "x@"})
    assert reply.status == 422
    assert set(reply.fields()) == {"locale", "email"}
    assert await redis_client.hget(keys.account("erika"), "locale") == b"de_DE"


async def test_contact_of_the_wrong_type_or_delivery_is_400(http):
    body = {**POSTPAID, "name": 7, "delivery": "fax", "address": ""}
    reply = await http.post("/v1/accounts", body)
    assert reply.status == 400
    assert set(reply.fields()) == {"name", "delivery", "address"}
