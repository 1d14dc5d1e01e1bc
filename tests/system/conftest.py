"""Fixtures that start the real OCS Diameter node in-process on a free TCP port."""

from __future__ import annotations

import asyncio

import pytest

from ocs.metrics import Metrics
from ocs.service import build_node
from protocol.server import DiameterServer
from tests.helpers import node_settings


class CountingApplication:
    """The real credit-control application, counted (and optionally slowed) for tests.

    Counting shows whether the transport handed a request to the application at all,
    e.g. for a retransmission answered from the cache.
    """

    def __init__(self, inner, delay: float = 0.0) -> None:
        self.inner = inner
        self.application_id = inner.application_id
        self.commands = inner.commands
        self.delay = delay
        self.calls = 0

    async def handle(self, requests, peer):
        self.calls += len(requests)
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.inner.handle(requests, peer)


@pytest.fixture
async def start_server():
    """Factory: ``await start_server(**settings)`` -> a started DiameterServer."""
    servers: list[DiameterServer] = []

    async def start(application_delay: float = 0.0, **overrides) -> DiameterServer:
        settings = node_settings(**overrides)
        metrics = Metrics()
        node = build_node(settings, metrics)
        node.application = CountingApplication(node.application, application_delay)
        server = DiameterServer(node, settings.diameter_host, settings.diameter_port)
        server.metrics = metrics
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
