"""Error paths common to every route: 404, 405, 413, bad JSON, Redis down (503) and an
unexpected failure (500 without a trace)."""

from __future__ import annotations

import json
import logging

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import create_app
from ocs.api.context import API_KEY, MAX_BODY
from ocs.metrics import Metrics
from tests.helpers import get_free_port
from tests.ocs.api.conftest import PREPAID, SETTINGS, Http, healthy


async def test_unknown_route_is_404_json(http):
    reply = await http.get("/v1/nothing")
    assert reply.status == 404
    assert reply.body == {"error": {"status": 404, "message": "Not Found"}}


async def test_wrong_method_is_405_with_allow(http):
    reply = await http.call("PUT", "/v1/accounts")
    assert reply.status == 405
    assert set(reply.headers["Allow"].split(",")) == {"GET", "POST"}


async def test_body_too_large_is_413(http):
    huge = {**PREPAID, "plan": "x" * (MAX_BODY + 10)}
    reply = await http.post("/v1/accounts", huge)
    assert reply.status == 413
    assert reply.body["error"]["status"] == 413
    topup = await http.call(
        "POST",
        "/v1/accounts/alice/topupBalance",
        data=b"[" + b"0," * MAX_BODY + b"0]",
        headers={"Idempotency-Key": "k"},
    )
    assert topup.status == 413


async def test_deeply_nested_json_is_400(http):
    deep = "[" * 100_000 + "]" * 100_000
    reply = await http.call("POST", "/v1/catalog/validate", data=deep.encode())
    assert reply.status == 400 and "body" in reply.fields()
    nested = json.dumps({"a": json.loads("[" * 40 + "1" + "]" * 40)})
    reply = await http.call("POST", "/v1/catalog/validate", data=nested.encode())
    assert (reply.status, reply.fields()) == (400, {"body": "is nested deeper than 32 levels"})


async def test_non_utf8_body_is_400(http):
    reply = await http.call("POST", "/v1/accounts", data=b'{"id": "\xff"}')
    assert reply.status == 400 and "body" in reply.fields()


async def test_unexpected_error_is_500_without_a_trace_and_logged(http, alice, caplog):
    api = http.client.server.app[API_KEY]

    async def broken(account_id):
        raise RuntimeError("secret internal detail")

    api.accounts.get_account = broken
    with caplog.at_level(logging.ERROR):
        reply = await http.get("/v1/accounts/alice")
    assert reply.status == 500
    assert reply.body == {"error": {"status": 500, "message": "internal server error"}}
    [record] = [r for r in caplog.records if r.getMessage() == "http_unhandled_error"]
    assert record.exc_info is not None  # the trace goes to the log, never to the client


async def test_redis_down_is_503(engine, caplog):
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{get_free_port()}/0")
    app = create_app(SETTINGS, Metrics(), healthy, store=dead, sessions=engine)
    caplog.set_level(logging.WARNING, logger="ocs.api")
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for method, path in (("GET", "/v1/accounts"), ("GET", "/v1/accounts/alice/balances")):
            reply = await Http(client).call(method, path)
            assert reply.status == 503
            assert reply.headers["Retry-After"] == "1"
            assert "unavailable" in reply.body["error"]["message"]
        reply = await Http(client).topup("alice", 1, "k")
        assert reply.status == 503
    await dead.aclose()
    # an outage is one WARNING line per request, not an ERROR with a traceback each
    unavailable = [r for r in caplog.records if r.getMessage() == "http_dependency_unavailable"]
    assert len(unavailable) == 3
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in unavailable)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
