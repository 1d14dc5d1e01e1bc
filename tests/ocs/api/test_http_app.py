"""ocs.api.app over real HTTP (aiohttp's test server binds a real localhost port)."""

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ocs.api.app import HEALTH_KEY, METRICS_KEY, SETTINGS_KEY, create_app
from ocs.config import Settings
from ocs.metrics import Metrics

TOKEN = "metrics-token-0123456789"


def healthy(**checks: bool):
    async def health() -> dict[str, bool]:
        return dict(checks)

    return health


@pytest.fixture
async def serve():
    """Factory: ``await serve(app)`` -> a client talking to it over a real socket."""
    clients: list[TestClient] = []

    async def start(app: web.Application) -> TestClient:
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def make_app(settings: Settings | None = None, health=None, **kwargs) -> web.Application:
    return create_app(
        settings or Settings(), Metrics(version="9.9.9"), health or healthy(redis=True), **kwargs
    )


async def test_app_keys_hold_what_was_passed():
    settings, metrics, health = Settings(), Metrics(), healthy()
    app = create_app(settings, metrics, health)
    assert app[SETTINGS_KEY] is settings
    assert app[METRICS_KEY] is metrics
    assert app[HEALTH_KEY] is health


# --- /healthz ---------------------------------------------------------------------------


async def test_healthz_ok_when_every_check_passes(serve):
    client = await serve(make_app(health=healthy(redis=True, diameter=True)))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"redis": True, "diameter": True}}


async def test_healthz_503_names_the_failing_checks(serve):
    client = await serve(make_app(health=healthy(redis=False, diameter=True, records=False)))
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {
        "status": "fail",
        "checks": {"redis": False, "diameter": True, "records": False},
        "failing": ["records", "redis"],
    }


async def test_healthz_treats_non_boolean_as_failing(serve):
    async def health():
        return {"redis": "yes"}

    response = await (await serve(make_app(health=health))).get("/healthz")
    assert response.status == 503
    assert (await response.json())["failing"] == ["redis"]


async def test_healthz_503_when_the_check_raises(serve, caplog):
    async def health():
        raise ConnectionError("redis://:secret@db: refused")

    client = await serve(make_app(health=health))
    with caplog.at_level(logging.WARNING):
        response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body == {"error": {"status": 503, "message": "health check failed: ConnectionError"}}
    assert "secret" not in await response.text()
    assert any(r.getMessage() == "health_check_error" for r in caplog.records)


async def test_healthz_503_when_the_check_hangs(serve):
    async def health():
        await asyncio.sleep(30)
        return {}

    client = await serve(make_app(health=health, health_timeout=0.1))
    response = await client.get("/healthz")
    assert response.status == 503
    assert await response.json() == {"error": {"status": 503, "message": "health check timed out"}}


# --- /metrics ---------------------------------------------------------------------------


async def test_metrics_open_without_token(serve):
    app = make_app()
    app[METRICS_KEY].observe_answer("CCR", 2001, 0.001)
    response = await (await serve(app)).get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'ocs_build_info{python="' in text and 'version="9.9.9"' in text
    assert (
        'ocs_diameter_requests_total{command="CCR",peer="other",request_type="none",result_code="2001"} 1.0'
        in text
    )


async def test_metrics_openmetrics_on_request(serve):
    client = await serve(make_app())
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-0123456789",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        "Bearer ü",
    ],
)
async def test_metrics_with_token_refuses_missing_or_wrong_bearer(serve, authorization):
    client = await serve(make_app(Settings(http_metrics_token=TOKEN)))
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get("/metrics", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="ocs-metrics"'
    assert await response.json() == {
        "error": {"status": 401, "message": "missing or wrong bearer token"}
    }
    assert TOKEN not in await response.text()


@pytest.mark.parametrize(
    "authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN} "]
)
async def test_metrics_with_token_accepts_the_right_bearer(serve, authorization):
    client = await serve(make_app(Settings(http_metrics_token=TOKEN)))
    response = await client.get("/metrics", headers={"Authorization": authorization})
    assert response.status == 200
    assert "ocs_build_info" in await response.text()


async def test_healthz_needs_no_token(serve):
    client = await serve(make_app(Settings(http_metrics_token=TOKEN)))
    assert (await client.get("/healthz")).status == 200


# --- errors -----------------------------------------------------------------------------


async def test_unknown_path_is_json_404(serve):
    response = await (await serve(make_app())).get("/nope")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {"error": {"status": 404, "message": "Not Found"}}


async def test_wrong_method_is_json_405_with_allow(serve):
    response = await (await serve(make_app())).post("/healthz")
    assert response.status == 405
    assert response.headers["Allow"] == "GET,HEAD"
    assert await response.json() == {"error": {"status": 405, "message": "Method Not Allowed"}}


async def test_head_is_served(serve):
    response = await (await serve(make_app())).head("/healthz")
    assert response.status == 200


async def test_unexpected_exception_is_a_bare_500_and_logged(serve, caplog):
    app = make_app()

    async def broken(request: web.Request) -> web.Response:
        raise KeyError("internal detail /srv/ocs/secret.py")

    app.router.add_get("/broken", broken)
    client = await serve(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/broken")
    assert response.status == 500
    assert await response.json() == {"error": {"status": 500, "message": "internal server error"}}
    text = await response.text()
    assert "Traceback" not in text and "internal detail" not in text
    [record] = [r for r in caplog.records if r.getMessage() == "http_unhandled_error"]
    assert record.exc_info and record.exc_info[0] is KeyError


async def test_http_error_with_text_keeps_its_message(serve):
    app = make_app()

    async def teapot(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest(text="field 'msisdn' is required")

    app.router.add_get("/bad", teapot)
    response = await (await serve(app)).get("/bad")
    assert response.status == 400
    assert await response.json() == {
        "error": {"status": 400, "message": "field 'msisdn' is required"}
    }


async def test_redirects_pass_through_unchanged(serve):
    app = make_app()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    app.router.add_get("/old", moved)
    client = await serve(app)
    response = await client.get("/old", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/healthz"


async def test_served_over_a_real_runner_on_a_free_port(free_port):
    port = free_port()
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
    finally:
        await runner.cleanup()
