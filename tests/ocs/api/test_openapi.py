"""The OpenAPI document: every route documented, every documented route served, and
schemathesis runs against the live server, in both directions:

* positive data (what the document allows): never a 400, nor a 5xx, nor a response off
  the document; a refusal may only be 404, 409 or 422 (the document cannot know which
  accounts exist, nor state every rule across fields: see ocs.api.errors);
* negative data (what the document forbids): never accepted (a 2xx), nor a 5xx.

Each run is bounded (a fixed number of examples per operation, derandomized)."""

from __future__ import annotations

import json
import re

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from ocs.api.openapi import document
from ocs.api.routes import ROUTES
from tests.ocs.api.conftest import ADMIN_TOKEN, bearer

AUTH = bearer(ADMIN_TOKEN)


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

#: What a request the document allows may be refused with (besides 2xx): an id that does
#: not exist, a conflict with what is stored, a meaning or state refused. Never 400.
ACCEPTED_REFUSALS = ["2xx", "404", "409", "422"]

positive = schemathesis.openapi.from_dict(
    document(ROUTES),
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"mode": "positive"},
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_REFUSALS}},
        }
    ),
)
# The token is configuration (not a header the test forces on every call), so that a
# case whose mutation is "no Authorization header" is sent without one (and gets 401).
negative = schemathesis.openapi.from_dict(
    document(ROUTES),
    config=SchemathesisConfig.from_dict({"generation": {"mode": "negative"}, "headers": AUTH}),
)


async def test_the_served_document_is_the_generated_one(http):
    assert (await http.get("/v1/openapi.json")).body == json.loads(json.dumps(document(ROUTES)))


BOUNDED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@BOUNDED
def test_schemathesis_finds_no_server_error_and_no_off_schema_response(case, live):
    response = case.call(base_url=live.url, headers=AUTH, timeout=10)
    case.validate_response(response, checks=RESPONSE_CHECKS)


@positive.parametrize()
@BOUNDED
def test_schema_valid_requests_are_accepted(case, live):
    response = case.call(base_url=live.url, headers=AUTH, timeout=10)
    case.validate_response(response, checks=[*RESPONSE_CHECKS, checks.positive_data_acceptance])


@negative.parametrize()
@BOUNDED
def test_schema_invalid_requests_are_rejected(case, live):
    response = case.call(base_url=live.url, timeout=10)
    case.validate_response(response, checks=[*RESPONSE_CHECKS, checks.negative_data_rejection])
