"""/livez and /readyz (issue 13) over real HTTP: liveness asks nothing; readiness follows
the Redis state the clients' observers feed (ocs_redis_up) and the node's draining, and
keeps ocs_ready in step; the client observers count by client and kind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.config import Settings
from ocs.metrics import Metrics
from ocs.service import Readiness


async def never_called() -> dict[str, bool]:
    raise AssertionError("/livez and /readyz must not run the health check")


@pytest.fixture
async def node() -> AsyncIterator[tuple[TestClient, Metrics, Readiness]]:
    metrics = Metrics(process=False)
    readiness = Readiness(metrics.redis.state, metrics.node.ready, 0.5)
    app = create_app(Settings(), metrics, never_called, readiness=readiness.reasons)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, metrics, readiness
    await client.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_livez_answers_without_asking_anything(node) -> None:
    client, _, _ = node
    response = await client.get("/livez")
    assert response.status == 200 and await response.json() == {"live": True}


async def test_readyz_follows_the_redis_state_and_draining(node) -> None:
    client, metrics, readiness = node
    charging, general = metrics.redis.client("charging"), metrics.redis.client("general")
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"ready": True, "reasons": []}
    assert sample(metrics, "ocs_ready") == 1 and sample(metrics, "ocs_redis_up") == 1

    charging.failed("timeout")  # a batch got no answer within the timeout
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {
        "ready": False,
        "reasons": ["redis: no answer within 0.5 s"],
    }
    assert sample(metrics, "ocs_ready") == 0 and sample(metrics, "ocs_redis_up") == 0
    assert sample(metrics, "ocs_redis_errors_total", client="charging", kind="timeout") == 1

    general.failed("connection")
    assert (await (await client.get("/readyz")).json())["reasons"] == ["redis: unreachable"]
    general.failed("response")  # an error reply: Redis answered, still the same state
    assert (await client.get("/readyz")).status == 503

    general.answered(0.001)  # the periodic PING answered
    assert (await client.get("/readyz")).status == 200
    assert sample(metrics, "ocs_redis_up") == 1
    assert sample(metrics, "ocs_redis_command_duration_seconds_count", client="general") == 1
    assert sample(metrics, "ocs_redis_command_duration_seconds_count", client="charging") == 0

    readiness.draining = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reasons"] == ["draining: the node is stopping"]
    assert sample(metrics, "ocs_ready") == 0
    assert (await client.get("/livez")).status == 200


def test_client_observers_are_bounded() -> None:
    metrics = Metrics(process=False)
    with pytest.raises(ValueError):
        metrics.redis.client("sweeper")
    observer = metrics.redis.client("general")
    observer.reconnected()
    metrics.redis.embedded_restarted()
    assert sample(metrics, "ocs_redis_reconnects_total", client="general") == 1
    assert sample(metrics, "ocs_redis_reconnects_total", client="charging") == 0
    assert sample(metrics, "ocs_redis_embedded_restarts_total") == 1
