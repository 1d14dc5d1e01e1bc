"""Diameter server: accepts TCP connections, one :class:`PeerConnection` each."""

from __future__ import annotations

import asyncio
import logging

from . import base
from .connection import Node, PeerConnection, Role

logger = logging.getLogger("protocol.server")


class DiameterServer:
    """Listens for peers; :meth:`stop` disconnects them gracefully (RFC 6733 §5.4)."""

    def __init__(
        self, node: Node, host: str, port: int, connections: set[PeerConnection] | None = None
    ) -> None:
        self.node = node
        self.host = host
        self.port = port
        # the live connections; a caller may pass the set to share it (e.g. for routing)
        self.connections: set[PeerConnection] = set() if connections is None else connections
        self._server: asyncio.base_events.Server | None = None

    def _make_connection(self) -> PeerConnection:
        connection = PeerConnection(self.node, Role.RESPONDER)
        self.connections.add(connection)
        connection.closed.add_done_callback(lambda _: self.connections.discard(connection))
        return connection

    async def start(self) -> list[tuple[str, int]]:
        """Bind and listen; returns the bound (host, port) pairs (port 0 picks one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_connection, self.host, self.port, reuse_address=True
        )
        addresses = [sock.getsockname()[:2] for sock in self._server.sockets]
        self.port = addresses[0][1]
        return addresses

    async def stop(self, cause: int = base.REBOOTING) -> None:
        """Stop accepting, send DPR to open peers, finish in-flight answers, close."""
        if self._server is None:
            return
        self._server.close()
        connections = list(self.connections)
        if connections:
            timeout = self.node.timers.dpa_timeout * 2
            done, pending = await asyncio.wait(
                [asyncio.ensure_future(conn.disconnect(cause)) for conn in connections],
                timeout=timeout,
            )
            for task in pending:
                task.cancel()
            for connection in list(self.connections):
                connection.abort()
        await self._server.wait_closed()
        self._server = None
        logger.info("diameter_server_stopped peers=%d", len(connections))
