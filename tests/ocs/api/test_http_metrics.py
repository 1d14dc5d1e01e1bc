"""The HTTP request metrics (ocs.api.observability) over real HTTP on the real app and
Redis: one series per route template whatever the ids in the path, ``unmatched`` for a
path no route serves, the status the client got (JSON errors included), methods
outside the fixed set folded into ``other``."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.metrics import Metrics
from tests.ocs.api.conftest import ADMIN_TOKEN, SETTINGS, bearer, healthy

ACCOUNT = "/v1/accounts/{account_id}"


def requests(metrics: Metrics, **labels: str) -> float:
    value = metrics.registry.get_sample_value("ocs_http_requests_total", labels)
    return 0.0 if value is None else value


def series(metrics: Metrics) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        if family.name == "ocs_http_requests"
        for sample in family.samples
        if sample.name == "ocs_http_requests_total"
    ]


async def test_requests_are_counted_by_route_template_method_and_status(redis_client, engine):
    metrics = Metrics(process=False)
    app = create_app(SETTINGS, metrics, healthy, store=redis_client, sessions=engine)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for account in ("acc-491700000001", "acc-491700000002", "bob"):
            reply = await client.get(f"/v1/accounts/{account}", headers=bearer(ADMIN_TOKEN))
            assert reply.status == 404  # no such account: the route's own 404
        assert (await client.get("/v1/accounts/bob")).status == 401  # no token
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/no/such/path/491700000003")).status == 404
        assert (await client.request("PROPFIND", "/healthz")).status == 405

    assert requests(metrics, method="GET", route=ACCOUNT, status="404") == 3
    assert requests(metrics, method="GET", route=ACCOUNT, status="401") == 1
    assert requests(metrics, method="GET", route="/healthz", status="200") == 1
    assert requests(metrics, method="GET", route="unmatched", status="404") == 1
    assert requests(metrics, method="other", route="unmatched", status="405") == 1
    labels = series(metrics)
    assert len(labels) == 5  # the ids made no series of their own
    assert not any("4917" in value or "bob" in value for s in labels for value in s.values())
    duration = metrics.registry.get_sample_value(
        "ocs_http_request_duration_seconds_count", {"method": "GET", "route": ACCOUNT}
    )
    assert duration == 4
