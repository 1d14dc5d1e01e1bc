"""A network element built from python-diameter's message classes over a raw TCP socket.

This is the independent reference peer: it shares no code with our codec or our
transport, so what it sends and what it reads back checks our server from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from diameter.message import Message
from diameter.message.avp import Avp
from diameter.message.commands import (
    CapabilitiesExchangeRequest,
    CreditControlRequest,
    DeviceWatchdogRequest,
    DisconnectPeerRequest,
)
from diameter.message.constants import (
    APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
    VENDOR_TGPP,
)

from tests.charging import messages

_ids = itertools.count(1000)


def next_id() -> int:
    return next(_ids)


def cer(
    origin_host: str = "pgw.test.net",
    origin_realm: str = "test.net",
    applications: tuple[int, ...] = (APP_DIAMETER_CREDIT_CONTROL_APPLICATION,),
) -> CapabilitiesExchangeRequest:
    message = CapabilitiesExchangeRequest()
    message.header.hop_by_hop_identifier = next_id()
    message.header.end_to_end_identifier = next_id()
    message.origin_host = origin_host.encode()
    message.origin_realm = origin_realm.encode()
    message.host_ip_address = ["127.0.0.1"]
    message.vendor_id = 0
    message.product_name = "reference-peer"
    message.supported_vendor_id = [VENDOR_TGPP]
    message.auth_application_id = list(applications)
    return message


def dwr(origin_host: str = "pgw.test.net") -> DeviceWatchdogRequest:
    message = DeviceWatchdogRequest()
    message.header.hop_by_hop_identifier = next_id()
    message.header.end_to_end_identifier = next_id()
    message.origin_host = origin_host.encode()
    message.origin_realm = b"test.net"
    return message


def dpr(origin_host: str = "pgw.test.net", cause: int = 0) -> DisconnectPeerRequest:
    message = DisconnectPeerRequest()
    message.header.hop_by_hop_identifier = next_id()
    message.header.end_to_end_identifier = next_id()
    message.origin_host = origin_host.encode()
    message.origin_realm = b"test.net"
    message.disconnect_cause = cause
    return message


def ccr(
    session_id: str = "pgw.test.net;1;1",
    request_number: int = 0,
    origin_host: str = "pgw.test.net",
    hop_by_hop: int | None = None,
) -> CreditControlRequest:
    """A minimal valid CCR-Initial (no subscriber, no MSCC) for base-protocol tests."""
    return messages.ccr(
        session_id,
        number=request_number,
        origin_host=origin_host,
        subscriptions=(),
        hop_by_hop=hop_by_hop,
    )


def avp(code: int, value, vendor: int = 0) -> Avp:
    return Avp.new(code, vendor, value=value)


class ReferencePeer:
    """Raw asyncio streams; frames answers by the Diameter length field."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> ReferencePeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, message: Message | bytes) -> None:
        data = message if isinstance(message, bytes) else message.as_bytes()
        self.writer.write(data)
        await self.writer.drain()

    async def recv_bytes(self, timeout: float = 5.0) -> bytes:
        header = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        length = int.from_bytes(header[1:4], "big")
        body = await asyncio.wait_for(self.reader.readexactly(length - 4), timeout)
        return header + body

    async def recv(self, timeout: float = 5.0) -> Message:
        return Message.from_bytes(await self.recv_bytes(timeout))

    async def request(self, message: Message | bytes, timeout: float = 5.0) -> Message:
        await self.send(message)
        return await self.recv(timeout)

    async def open(self, origin_host: str = "pgw.test.net") -> Message:
        """CER/CEA; returns the CEA."""
        return await self.request(cer(origin_host))

    async def wait_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (EOF) within ``timeout``."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except (ConnectionResetError, BrokenPipeError):
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await self.writer.wait_closed()
