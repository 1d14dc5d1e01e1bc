"""HTTP hygiene over real TCP (issue 13 item 7): the API served by
:class:`ocs.api.serving.ApiRunner` closes idle keep-alive connections, closes clients
that do not send a whole request in time (slowloris, a stalled body), and closes at
once the connections beyond ``http.max_connections`` while serving the others.

The clients are raw sockets (asyncio streams), so a request can be cut anywhere.
Timeouts are set to fractions of a second; the assertions wait for the closing with a
bound far above them (a missing timeout fails the wait), never for a precise time.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from ocs.api.app import create_app
from ocs.api.serving import ApiRunner
from ocs.config import Settings
from ocs.metrics import Metrics

#: Longest wait for a connection the server should close (every timeout here is < 1 s).
CLOSE_BOUND = 10.0

GET = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


async def healthy() -> dict[str, bool]:
    return {"redis": True}


async def echo(request: web.Request) -> web.Response:
    """A handler that reads the whole body (the request timeout covers the body)."""
    body = await request.read()
    return web.json_response({"bytes": len(body)})


async def slow_reader(request: web.Request) -> web.Response:
    """A handler consuming its body slowly, as bulk provisioning does while it applies
    each chunk: aiohttp stops reading the socket meanwhile."""
    received = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        received += len(chunk)
        await asyncio.sleep(0.02)
    return web.json_response({"bytes": received})


@dataclasses.dataclass
class Served:
    port: int
    metrics: Metrics
    runner: ApiRunner

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    runners: list[ApiRunner] = []

    async def start(**overrides: Any) -> Served:
        settings = dataclasses.replace(Settings(), **overrides)
        metrics = Metrics(process=False)
        app = create_app(settings, metrics, healthy)
        app.router.add_post("/echo", echo)
        app.router.add_post("/slow", slow_reader)
        runner = ApiRunner(app, settings, metrics.http)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return Served(port, metrics, runner)

    yield start
    for runner in runners:
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (within CLOSE_BOUND)."""
    received = b""
    async with asyncio.timeout(CLOSE_BOUND):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


async def response(reader: asyncio.StreamReader) -> bytes:
    """One response's status line and headers (the bodies here are short JSON)."""
    async with asyncio.timeout(CLOSE_BOUND):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return head


async def test_half_a_request_line_is_closed_after_the_request_timeout(serve):
    served = await serve(http_request_timeout=0.3, http_keepalive_timeout=120.0)
    reader, writer = await served.connect()
    writer.write(b"GET /heal")
    await writer.drain()
    assert await closed_by_server(reader) == b""  # closed, nothing answered
    assert served.sample("ocs_http_timeouts_total", kind="request") == 1
    assert served.sample("ocs_http_timeouts_total", kind="idle") == 0
    writer.close()


async def test_a_client_trickling_headers_is_closed_although_bytes_keep_coming(serve):
    """Slowloris: every byte arrives well within any read timeout, the request never ends."""
    served = await serve(http_request_timeout=0.5, http_keepalive_timeout=120.0)
    reader, writer = await served.connect()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")

    async def trickle() -> None:
        for _ in range(10 * int(CLOSE_BOUND)):
            writer.write(b"X-a: b\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    trickling = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader) == b""
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
    assert served.sample("ocs_http_timeouts_total", kind="request") == 1
    writer.close()


async def test_a_stalled_body_is_closed_and_a_whole_one_is_answered(serve):
    served = await serve(http_request_timeout=0.3, http_keepalive_timeout=120.0)
    head = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n"
    reader, writer = await served.connect()
    writer.write(head + b"x" * 10)
    await writer.drain()
    assert await closed_by_server(reader) == b""
    writer.close()
    reader, writer = await served.connect()
    writer.write(head + b"x" * 100)
    assert (await response(reader)).startswith(b"HTTP/1.1 200")
    assert served.sample("ocs_http_timeouts_total", kind="request") == 1
    writer.close()


async def test_an_idle_keepalive_connection_is_closed(serve):
    served = await serve(http_request_timeout=120.0, http_keepalive_timeout=0.3)
    reader, writer = await served.connect()
    writer.write(GET)
    assert (await response(reader)).startswith(b"HTTP/1.1 200")
    assert await closed_by_server(reader) == b""
    # a connection that never sends a byte is idle too
    reader2, writer2 = await served.connect()
    assert await closed_by_server(reader2) == b""
    assert served.sample("ocs_http_timeouts_total", kind="idle") == 2
    assert served.sample("ocs_http_timeouts_total", kind="request") == 0
    writer.close()
    writer2.close()


async def test_a_request_that_has_begun_is_not_cut_by_the_idle_timeout(serve):
    """Once the first byte came, the request has request_timeout, not what is left of
    the keep-alive period."""
    served = await serve(http_request_timeout=120.0, http_keepalive_timeout=0.2)
    reader, writer = await served.connect()
    writer.write(GET[:10])
    await writer.drain()
    await asyncio.sleep(1.0)  # five keep-alive periods
    writer.write(GET[10:])
    assert (await response(reader)).startswith(b"HTTP/1.1 200")
    assert served.sample("ocs_http_timeouts_total", kind="idle") == 0
    writer.close()


async def test_connections_beyond_the_bound_are_closed_at_once_the_others_served(serve):
    served = await serve(http_max_connections=3, http_keepalive_timeout=120.0)
    clients = [await served.connect() for _ in range(3)]
    for reader, writer in clients:  # each accepted and served, then kept alive
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")
    assert served.sample("ocs_http_connections") == 3

    reader, writer = await served.connect()
    writer.write(GET)
    # closed without an answer, before the (120 s) keep-alive or request timeouts
    assert await closed_by_server(reader) == b""
    writer.close()
    assert served.sample("ocs_http_connections_refused_total") == 1

    for reader, writer in clients:  # the three are still served
        writer.write(GET)
        assert (await response(reader)).startswith(b"HTTP/1.1 200")

    # one closes: a new connection fits again
    clients[0][1].close()
    await closed_by_server(clients[0][0])
    async with asyncio.timeout(CLOSE_BOUND):
        while served.sample("ocs_http_connections") != 2:
            await asyncio.sleep(0.01)
    reader, writer = await served.connect()
    writer.write(GET)
    assert (await response(reader)).startswith(b"HTTP/1.1 200")
    assert served.sample("ocs_http_connections_refused_total") == 1
    writer.close()
    for _, other in clients[1:]:
        other.close()


async def test_a_large_body_the_application_consumes_slowly_is_not_cut(serve):
    """4 MiB read in 64 KiB chunks 20 ms apart take about 1.3 s, over the request
    timeout: the client sent it all at once, the time is the application's."""
    served = await serve(http_request_timeout=0.3, http_keepalive_timeout=120.0)
    size = 4 * 1024 * 1024
    reader, writer = await served.connect()
    writer.write(f"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: {size}\r\n\r\n".encode())
    writer.write(b"x" * size)
    head = await response(reader)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert served.sample("ocs_http_timeouts_total", kind="request") == 0
    writer.close()
