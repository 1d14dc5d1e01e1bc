"""The catalog routes: validate, upload a version, read it, activate it, read the active one."""

from __future__ import annotations

import copy

import pytest

from quota_engine.store import keys
from quota_engine.store.catalogs import demo_catalog_document


@pytest.fixture
def document():
    return demo_catalog_document()


def next_version(document, version="demo-2"):
    changed = copy.deepcopy(document)
    changed["version"] = version
    return changed


async def test_validate_good_and_bad_catalogs_stores_nothing(bare_http, document, redis_client):
    good = await bare_http.post("/v1/catalog/validate", document)
    assert (good.status, good.body) == (200, {"valid": True, "version": "demo-1", "problems": []})
    bad = copy.deepcopy(document)
    bad["currency"] = "euro"
    del bad["plans"]
    reply = await bare_http.post("/v1/catalog/validate", bad)
    assert reply.status == 200
    assert reply.body["valid"] is False and reply.body["version"] == "demo-1"
    assert {p["field"] for p in reply.body["problems"]} >= {"currency"}
    assert await redis_client.keys("*") == []


async def test_validate_needs_a_json_object(bare_http):
    reply = await bare_http.post("/v1/catalog/validate", [1])
    assert (reply.status, reply.fields()) == (400, {"body": "must be an object"})


async def test_upload_then_again_then_conflict(bare_http, document):
    first = await bare_http.post("/v1/catalog/versions", document)
    assert (first.status, first.body) == (201, {"version": "demo-1", "saved": True})
    assert first.headers["Location"] == "/v1/catalog/versions/demo-1"
    again = await bare_http.post("/v1/catalog/versions", document)
    assert (again.status, again.body) == (200, {"version": "demo-1", "saved": False})
    changed = copy.deepcopy(document)
    changed["minor_digits"] = 3
    conflict = await bare_http.post("/v1/catalog/versions", changed)
    assert conflict.status == 409
    assert "new version" in conflict.body["error"]["message"]


async def test_upload_invalid_names_each_problem(bare_http, document):
    bad = copy.deepcopy(document)
    bad["currency"] = "euro"
    reply = await bare_http.post("/v1/catalog/versions", bad)
    assert reply.status == 422
    assert reply.body["error"]["message"] == "invalid catalog"
    assert "currency" in reply.fields()


async def test_get_version_and_activate(bare_http, document, redis_client):
    await bare_http.post("/v1/catalog/versions", document)
    stored = await bare_http.get("/v1/catalog/versions/demo-1")
    assert stored.status == 200
    assert (stored.body["version"], stored.body["active"]) == ("demo-1", False)
    assert stored.body["document"]["currency"] == "EUR"
    assert (await bare_http.get("/v1/catalog/active")).status == 404

    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.CATALOG_CHANNEL)
    await pubsub.get_message(timeout=1)
    activated = await bare_http.put("/v1/catalog/active", {"version": "demo-1"})
    assert (activated.status, activated.body) == (200, {"version": "demo-1", "changed": True})
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message["data"] == b"demo-1"  # every node swaps to it
    await pubsub.aclose()
    again = await bare_http.put("/v1/catalog/active", {"version": "demo-1"})
    assert again.body["changed"] is False
    active = await bare_http.get("/v1/catalog/active")
    assert (active.body["version"], active.body["active"]) == ("demo-1", True)

    await bare_http.post("/v1/catalog/versions", next_version(document))
    assert (await bare_http.put("/v1/catalog/active", {"version": "demo-2"})).body["changed"]
    assert (await bare_http.get("/v1/catalog/versions/demo-1")).body["active"] is False


async def test_catalog_errors(bare_http):
    assert (await bare_http.get("/v1/catalog/versions/nope")).status == 404
    assert (await bare_http.get("/v1/catalog/versions/" + "v" * 201)).status == 400
    missing = await bare_http.put("/v1/catalog/active", {"version": "nope"})
    assert (missing.status, missing.fields()) == (422, {"version": "not uploaded"})
    bad = await bare_http.put("/v1/catalog/active", {"version": 3, "x": 1})
    assert (bad.status, set(bad.fields())) == (400, {"version", "x"})
