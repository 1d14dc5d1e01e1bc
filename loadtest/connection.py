"""Client connections for the load generator: ``protocol``'s PeerConnection over a
transport that coalesces writes.

Every ``transport.write`` on a TCP socket is a ``send`` system call, and on loopback
the sender's call also runs the receiver's side of the TCP stack; at thousands of
requests per second that cost dominates the generator. :class:`CorkedTransport`
collects what is written during one turn of the event loop and sends it in one
``write`` at the end of the turn (``call_soon``), so all requests that fall due at
one wakeup go out in one segment per connection. The peer connection itself is
``protocol.connection.PeerConnection`` unchanged: it gets the corked transport through
the ordinary ``asyncio.Protocol.connection_made``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from protocol.client import connect
from protocol.connection import Node, PeerConnection

__all__ = ["CorkedTransport", "connect_corked"]


class CorkedTransport:
    """Wraps an asyncio transport; ``write`` is flushed once per loop iteration."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []
        self.writes = 0  # system-level writes, for the curious
        self.messages = 0

    def write(self, data: bytes) -> None:
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(data)
        self.messages += 1

    def _flush(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        if not self._transport.is_closing():
            self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            self.writes += 1

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._chunks = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CorkedPeerConnection(PeerConnection):
    corked: CorkedTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.corked = CorkedTransport(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        super().connection_made(self.corked)  # type: ignore[arg-type]


async def connect_corked(node: Node, host: str, port: int, timeout: float = 5.0) -> PeerConnection:
    """``protocol.client.connect`` (TCP connect, CER/CEA, return once OPEN) with corked writes."""
    return await connect(node, host, port, timeout, connection_type=_CorkedPeerConnection)
