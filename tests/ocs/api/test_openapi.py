"""The OpenAPI document: every route documented, every documented route served, and a
schemathesis run against the live server finds no 5xx and no response off its schema."""

from __future__ import annotations

import json
import re

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from ocs.api.openapi import document
from ocs.api.routes import ROUTES
from tests.ocs.api.conftest import ADMIN_TOKEN, SETTINGS, bearer
from tests.ocs.api.live import LiveServer

AUTH = bearer(ADMIN_TOKEN)


@pytest.fixture(scope="module")
def live(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    server = LiveServer(redis_server.url, SETTINGS).start()
    yield server
    server.stop()


def aiohttp_routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if path.startswith("/v1"):
            found.add((route.method.lower(), path))
    return found


async def test_every_route_is_documented_and_every_documented_route_exists(http):
    document = (await http.get("/v1/openapi.json")).body
    assert document["openapi"].startswith("3.")
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    served = aiohttp_routes(http.client.server.app)
    assert documented == served
    assert len(served) == len(ROUTES)
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert in_path == names, (method, path)
            assert "401" in operation["responses"], (method, path)
            assert any(s.startswith("2") for s in operation["responses"]), (method, path)


async def test_openapi_document_needs_a_token(http):
    assert (await http.as_(None).get("/v1/openapi.json")).status == 401


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": str(value).encode("utf-8", "surrogatepass")}


# The document the server serves is generated from the route table; loading it here
# (rather than from the live URL, which the test below checks is the same) lets
# schemathesis parametrize at collection time.
schema = schemathesis.openapi.from_dict(document(ROUTES))


async def test_the_served_document_is_the_generated_one(http):
    assert (await http.get("/v1/openapi.json")).body == json.loads(json.dumps(document(ROUTES)))


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_finds_no_server_error_and_no_off_schema_response(case, live):
    response = case.call(base_url=live.url, headers=AUTH, timeout=10)
    case.validate_response(
        response,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
