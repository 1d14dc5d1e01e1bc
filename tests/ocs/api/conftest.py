"""Fixtures of the API tests: the real application over real HTTP (aiohttp's test
server binds a localhost port) on the session's real Redis (``redis_url``), with the
demo catalog active and bearer tokens for each role."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.config import ApiToken, Settings
from ocs.embedded_redis import EmbeddedRedis
from ocs.metrics import Metrics
from quota_engine.catalog import load_catalog
from quota_engine.charging.engine import ChargingEngine, EngineSettings
from quota_engine.charging.rating import Rater
from quota_engine.store import keys
from quota_engine.store.catalogs import CatalogStore, demo_catalog_document
from tests.ocs.api.live import LiveServer

ADMIN_TOKEN = "admin-token-0123456789abcdef"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
EUR = 1_000_000
MSISDN = "msisdn:491700000001"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = (ApiToken(digest(ADMIN_TOKEN), "admin"), ApiToken(digest(VIEWER_TOKEN), "viewer"))
# records.directory: one that no exporter writes, so the usage tests see only the
# records they make (the default ./data/records is relative to where pytest runs); the
# billing database likewise (the bill routes create it on first use)
SETTINGS = dataclasses.replace(
    Settings(),
    http_tokens=TOKENS,
    records_directory=tempfile.mkdtemp(prefix="ocs-api-test-records-"),
    billing_database_url="sqlite:///"
    + tempfile.mkdtemp(prefix="ocs-api-test-billing-")
    + "/billing.db",
)


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def fields(self) -> dict[str, str]:
        """The error's fields as {field: message}."""
        return {f["field"]: f["message"] for f in self.body["error"].get("fields", [])}


def _body(raw: bytes) -> Any:
    """A reply's body as JSON; a document that is not JSON (a PDF) as its bytes."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError too
        return raw


class Http:
    """A client of the API with a default token; every call returns a :class:`Reply`."""

    def __init__(self, client: TestClient, token: str | None = ADMIN_TOKEN) -> None:
        self.client = client
        self.token = token

    def as_(self, token: str | None) -> Http:
        return Http(self.client, token)

    async def call(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Reply:
        all_headers = {**bearer(self.token), **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body)
        if data is not None:  # raw bytes are JSON too unless the test names another type
            all_headers.setdefault("Content-Type", "application/json")
        async with self.client.request(
            method, path, data=data, headers=all_headers, params=params
        ) as response:
            raw = await response.read()
            return Reply(response.status, _body(raw), response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, json_body, **kw)

    async def put(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return await self.call("PUT", path, json_body, **kw)

    async def patch(self, path: str, json_body: Any = None, **kw: Any) -> Reply:
        return await self.call("PATCH", path, json_body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)

    async def topup(self, account: str, amount: int, key: str, **body: Any) -> Reply:
        return await self.post(
            f"/v1/accounts/{account}/topupBalance",
            {"amount": amount, **body},
            headers={"Idempotency-Key": key},
        )


@pytest.fixture(scope="module")
def live(redis_server: EmbeddedRedis) -> Iterator[LiveServer]:
    """The API in a thread of its own on an emptied redis-server, one per test module
    (for clients that speak HTTP over TCP: the CLI, curl, schemathesis)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    server = LiveServer(redis_server.url, SETTINGS).start()
    yield server
    server.stop()


async def healthy() -> dict[str, bool]:
    return {"redis": True}


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def catalog_active(redis_client: aioredis.Redis) -> str:
    """The demo catalog, saved and active."""
    store = CatalogStore(redis_client)
    version = await store.save(demo_catalog_document())
    await store.activate(version)
    return version


@pytest.fixture
def engine(redis_client: aioredis.Redis) -> ChargingEngine:
    catalog = load_catalog(demo_catalog_document())
    rater = Rater(catalog)
    return ChargingEngine(redis_client, lambda: (catalog, rater), EngineSettings())


@pytest.fixture
async def http(redis_client, engine, catalog_active) -> AsyncIterator[Http]:
    """The API with the demo catalog active, as the admin."""
    app = create_app(SETTINGS, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Http(client)
    await client.close()


@pytest.fixture
async def bare_http(redis_client, engine) -> AsyncIterator[Http]:
    """The API on an empty Redis (no catalog), as the admin."""
    app = create_app(SETTINGS, Metrics(), healthy, store=redis_client, sessions=engine)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Http(client)
    await client.close()


PREPAID = {
    "id": "alice",
    "kind": "prepaid",
    "plan": "prepaid-basic",
    "subscriptions": [MSISDN],
    "buckets": [{"id": "main", "amount": 10 * EUR}],
}


@pytest.fixture
async def alice(http: Http) -> str:
    """A prepaid account with 10 EUR and one MSISDN, created through the API."""
    reply = await http.post("/v1/accounts", PREPAID)
    assert reply.status == 201, reply.body
    return "alice"


async def events_of(redis_client: aioredis.Redis):
    """A pubsub subscribed to the account events channel (call ``next_events``)."""
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(keys.EVENTS_CHANNEL)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    return pubsub


async def next_events(pubsub, count: int, timeout: float = 2.0) -> list[dict[str, Any]]:
    found = []
    while len(found) < count:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is None:
            break
        found.append(json.loads(message["data"]))
    return found
